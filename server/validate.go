package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/gen"
)

// validator checks every request against openapi.yaml before a handler sees it, once the guard
// has routed and authenticated it: parameters through openapi3filter, then the body against its
// schema. The router and the schemas are built once.
//
// Bodies are validated with kin-openapi's own schema validator rather than through
// openapi3filter, which for OpenAPI 3.1 documents compiles the whole schema again on every
// request; the built-in validator also honours the discriminator, so a credentials object is
// checked only against the variant its type names.
type validator struct {
	router     routers.Router
	schemaOpts []openapi3.SchemaValidationOption
	// budget bounds the request body bytes being read, parsed and handled at once.
	budget *bodyBudget
	// unsecured is each operation without its security requirements: the guard has checked
	// them, and openapi3filter reads the whole body before it checks any.
	unsecured map[*openapi3.Operation]*openapi3.Operation
}

func newValidator(spec *openapi3.T, router routers.Router, budget *bodyBudget) *validator {
	unsecured := map[*openapi3.Operation]*openapi3.Operation{}
	for _, item := range spec.Paths.Map() {
		for _, op := range item.Operations() {
			bare := *op
			bare.Security = &openapi3.SecurityRequirements{}
			unsecured[op] = &bare
		}
	}
	return &validator{router: router, schemaOpts: schemaOptions(), budget: budget, unsecured: unsecured}
}

// newRouter finds the operation of openapi.yaml that a request is for.
func newRouter(spec *openapi3.T) (routers.Router, error) {
	// openapi3filter validates the parameters of a route whose document says 3.1 by compiling
	// their schemas again on every request, which cost a read more CPU than the rest of it. The
	// router gets the document marked 3.0, so that parameters go through the built-in validator,
	// as bodies do; their schemas use nothing that only 3.1 has.
	asOpenAPI30 := *spec
	asOpenAPI30.OpenAPI = "3.0.3"
	router, err := gorillamux.NewRouter(&asOpenAPI30)
	if err != nil {
		return nil, fmt.Errorf("build request router: %w", err)
	}
	beneath, err := RouterBeneathExtensions(&asOpenAPI30)
	if err != nil {
		return nil, err
	}
	return contractRouter{main: router, beneath: beneath}, nil
}

// contractRouter routes as openapi.yaml declares, except that the methods a path credport adds
// beside a path template does not declare reach the template (GET /connections/batch is the
// connection named batch).
type contractRouter struct {
	main, beneath routers.Router
}

func (r contractRouter) FindRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := r.main.FindRoute(req)
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		if below, belowParams, belowErr := r.beneath.FindRoute(req); belowErr == nil {
			return below, belowParams, nil
		}
	}
	return route, params, err
}

// RouterBeneathExtensions routes doc without the paths credport adds beside a path template
// (POST /connections/batch), so that their other methods reach the template's operations.
func RouterBeneathExtensions(doc *openapi3.T) (routers.Router, error) {
	without := *doc
	without.Paths = openapi3.NewPaths()
	for path, item := range doc.Paths.Map() {
		if path != batchPath {
			without.Paths.Set(path, item)
		}
	}
	router, err := gorillamux.NewRouter(&without)
	if err != nil {
		return nil, fmt.Errorf("build request router: %w", err)
	}
	return router, nil
}

// schemaOptions are the options of every body validation: all errors, request direction, and
// email addresses as net/mail reads them.
func schemaOptions() []openapi3.SchemaValidationOption {
	return []openapi3.SchemaValidationOption{
		openapi3.MultiErrors(),
		openapi3.VisitAsRequest(),
		openapi3.WithStringFormatValidator("email", openapi3.NewCallbackValidator(validateEmail)),
	}
}

func validateEmail(s string) error {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s {
		return errors.New("not an email address")
	}
	return nil
}

func (v *validator) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		op, ok := c.Get(matchedOperationKey).(matchedOperation)
		if !ok {
			return errors.New("validate: request was not routed by the guard")
		}
		route, pathParams := op.route, op.params
		// The router hands path parameters over as they appear in the URL, still percent-encoded;
		// the contract's patterns are about the decoded value, which is what the handler gets.
		for name, value := range pathParams {
			if decoded, err := url.PathUnescape(value); err == nil {
				pathParams[name] = decoded
			}
		}
		bare := *route
		if op := v.unsecured[route.Operation]; op != nil {
			bare.Operation = op
		} else {
			return errors.New("validate: an operation openapi.yaml does not declare")
		}
		input := &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: pathParams,
			Route:      &bare,
			Options: &openapi3filter.Options{
				ExcludeRequestBody: true,
				MultiError:         true,
			},
		}
		if err := openapi3filter.ValidateRequest(req.Context(), input); err != nil {
			return requestError(err)
		}
		body := route.Operation.RequestBody
		if body != nil && body.Value != nil {
			if err := checkMediaType(req, body.Value); err != nil {
				return err
			}
		}
		if err := checkQueryKeys(route, req); err != nil {
			return err
		}
		if body != nil && body.Value != nil {
			lease, err := v.budget.acquire(req)
			if err != nil {
				return err
			}
			// The parsed body lives until the handler returns, so the budget is held as long; a
			// batch charges the values of its items to it as it decodes them.
			defer lease.release()
			req = req.WithContext(withLease(req.Context(), lease))
			c.SetRequest(req)
			check := v.checkBody
			if route.Path == batchPath {
				check = v.checkBatchEnvelope
			}
			if err := v.validateBody(req, body.Value, lease, check); err != nil {
				return err
			}
		}
		return next(c)
	}
}

// requestError turns what openapi3filter reports about parameters into the API's error.
func requestError(err error) error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	// The path is checked before the query, as the reference does: a bad connection id is
	// invalid_uri_params, whatever else is wrong.
	if pathErrs := pathParamErrors(err); len(pathErrs) > 0 {
		var details []gen.ErrorDetail
		for _, e := range pathErrs {
			for _, d := range schemaErrorDetails(e, nil) {
				if len(d.Path) == 0 {
					d.Path = []string{e.Parameter.Name}
				}
				details = append(details, d)
			}
		}
		return newError(http.StatusBadRequest, "invalid_uri_params", "Invalid URI parameters", details...)
	}
	details := schemaErrorDetails(err, nil)
	if len(details) == 0 {
		details = []gen.ErrorDetail{{Code: "invalid", Message: err.Error(), Path: []string{}}}
	}
	return newError(http.StatusBadRequest, "invalid_query_params", "Invalid query parameters", details...)
}

// declaredQuery is the query parameter name of the route, nil when it declares none.
func declaredQuery(route *routers.Route, name string) *openapi3.Parameter {
	if p := route.Operation.Parameters.GetByInAndName(openapi3.ParameterInQuery, name); p != nil {
		return p
	}
	return route.PathItem.Parameters.GetByInAndName(openapi3.ParameterInQuery, name)
}

// pathParamErrors are the errors of err about path parameters.
func pathParamErrors(err error) []*openapi3filter.RequestError {
	if reqErr, ok := err.(*openapi3filter.RequestError); ok {
		if reqErr.Parameter != nil && reqErr.Parameter.In == openapi3.ParameterInPath {
			return []*openapi3filter.RequestError{reqErr}
		}
		return nil
	}
	var out []*openapi3filter.RequestError
	if multi, ok := err.(openapi3.MultiError); ok {
		for _, e := range multi {
			out = append(out, pathParamErrors(e)...)
		}
	}
	return out
}

// checkQueryKeys rejects query parameters the operation does not declare.
func checkQueryKeys(route *routers.Route, req *http.Request) error {
	var details []gen.ErrorDetail
	for _, name := range slices.Sorted(maps.Keys(req.URL.Query())) {
		if declaredQuery(route, name) != nil {
			continue
		}
		// tags[key]=value is one key of the deepObject parameter tags.
		if base, _, ok := strings.Cut(name, "["); ok && strings.HasSuffix(name, "]") {
			if p := declaredQuery(route, base); p != nil && p.Style == openapi3.SerializationDeepObject {
				continue
			}
		}
		details = append(details, gen.ErrorDetail{
			Code:    "unrecognized_keys",
			Message: fmt.Sprintf("Unrecognized query parameter %q", name),
			Path:    []string{name},
		})
	}
	if len(details) > 0 {
		return newError(http.StatusBadRequest, "invalid_query_params", "Invalid query parameters", details...)
	}
	return nil
}

// checkMediaType answers 415 unless the body's media type is one the operation declares.
func checkMediaType(req *http.Request, body *openapi3.RequestBody) error {
	mediaType, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	if err != nil || body.Content.Get(mediaType) == nil {
		return newError(http.StatusUnsupportedMediaType, "invalid_content_type", "Content-Type must be application/json")
	}
	return nil
}

// validateBody parses the JSON body and validates it against the schema the operation declares,
// then leaves the body readable again for the handler. The values it decodes are charged to lease.
func (v *validator) validateBody(req *http.Request, body *openapi3.RequestBody, lease *bodyLease, check bodyCheck) error {
	mediaType, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	content := body.Content.Get(mediaType)
	data, err := io.ReadAll(req.Body)
	if err != nil {
		var tooLarge *echo.HTTPError
		if errors.As(err, &tooLarge) {
			return err // the body limit's 413
		}
		// The client stopped sending (a short body, a reset): its request, not our database.
		return newError(http.StatusBadRequest, "invalid_body", "Request body could not be read")
	}
	req.Body = io.NopCloser(bytes.NewReader(data))
	var schema *openapi3.Schema
	if content.Schema != nil {
		schema = content.Schema.Value
	}
	value, apiErr := check(schema, body.Required, data, lease.charge(req.Context()))
	if value != nil && schema != nil {
		notes(req.Context()).credentialType = discriminatorValue(schema, value)
	}
	if apiErr != nil {
		return apiErr
	}
	if value != nil && schema != nil {
		req.Body = validatedBody{Reader: bytes.NewReader(data), value: value}
	}
	return nil
}

// bodyCheck parses and validates a request body; charge, when set, is told how many values it
// holds before they are decoded.
type bodyCheck func(schema *openapi3.Schema, required bool, data []byte, charge func(values int) *Error) (any, *Error)

// checkBody parses a JSON body and validates it against schema (nil: any JSON). It returns the
// parsed value, when the body is JSON, and the API error for a body that breaks a rule. A body
// within the limits of jsonlimits.go is first charged for its values, when charge is set.
func (v *validator) checkBody(schema *openapi3.Schema, required bool, data []byte, charge func(values int) *Error) (any, *Error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if required {
			return nil, invalidBody("Request body is required")
		}
		return nil, nil
	}
	values, apiErr := checkJSONShape(data)
	if apiErr != nil {
		return nil, apiErr
	}
	if charge != nil {
		if apiErr := charge(values); apiErr != nil {
			return nil, apiErr
		}
	}
	value, err := decodeJSON(data)
	if err != nil {
		return nil, jsonError(err)
	}
	if details := unstorableValues(value, nil); len(details) > 0 {
		return value, invalidBody("Invalid request body", details...)
	}
	if schema == nil {
		return value, nil
	}
	if details := v.validateValue(schema, value, nil); len(details) > 0 {
		return value, invalidBody("Invalid request body", details...)
	}
	return value, nil
}

// validatedBody hands the parsed value to the generated handler, which binds it instead of
// decoding the body a second time.
type validatedBody struct {
	*bytes.Reader
	value any
}

func (validatedBody) Close() error          { return nil }
func (b validatedBody) ValidatedValue() any { return b.value }

// validateValue validates value against schema, reporting errors with paths prefixed by at.
func (v *validator) validateValue(schema *openapi3.Schema, value any, at []string) []gen.ErrorDetail {
	var details []gen.ErrorDetail
	if err := schema.VisitJSON(value, v.schemaOpts...); err != nil {
		details = schemaErrorDetails(err, at)
	}
	return append(details, v.checkPropertyNames(schema, value, at)...)
}

// unstorableValues finds strings and keys holding U+0000, which PostgreSQL cannot store in text or
// jsonb, and numbers beyond float64's range, which no client can read back; both are refused on
// every database alike.
func unstorableValues(value any, at []string) []gen.ErrorDetail {
	var out []gen.ErrorDetail
	switch v := value.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			out = append(out, detail("invalid_string", "must not contain the NUL character", at))
		}
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			out = append(out, detail("too_big", "number out of range", at))
		}
	case map[string]any:
		for k, child := range v {
			path := append(slices.Clone(at), k)
			if strings.ContainsRune(k, 0) {
				out = append(out, detail("invalid_key", "must not contain the NUL character", path))
				continue
			}
			out = append(out, unstorableValues(child, path)...)
		}
	case []any:
		for i, child := range v {
			out = append(out, unstorableValues(child, append(slices.Clone(at), strconv.Itoa(i)))...)
		}
	}
	return out
}
