package contract

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

	"github.com/credport/credport/gen"
)

// Validator checks a request against openapi.yaml before a handler sees it, once it has been
// routed and authenticated: parameters through openapi3filter, then the body against its
// schema. The schemas are compiled once.
//
// Bodies are validated with kin-openapi's own schema validator rather than through
// openapi3filter, which for OpenAPI 3.1 documents compiles the whole schema again on every
// request; the built-in validator also honours the discriminator, so a credentials object is
// checked only against the variant its type names.
type Validator struct {
	schemaOpts []openapi3.SchemaValidationOption
	// unsecured is each operation without its security requirements: the server has checked
	// them, and openapi3filter reads the whole body before it checks any.
	unsecured map[*openapi3.Operation]*openapi3.Operation
}

// NewValidator is the validator of the requests of doc.
func NewValidator(doc *openapi3.T) *Validator {
	unsecured := map[*openapi3.Operation]*openapi3.Operation{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			bare := *op
			bare.Security = &openapi3.SecurityRequirements{}
			unsecured[op] = &bare
		}
	}
	return &Validator{schemaOpts: schemaOptions(), unsecured: unsecured}
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

// CheckRequest checks what comes before the body of req, routed to route with pathParams as
// the router found them: the parameters, the body's media type, and that the query names no
// parameter the operation does not declare. It returns an *Error for a request that breaks a
// rule.
func (v *Validator) CheckRequest(req *http.Request, route *routers.Route, pathParams map[string]string) error {
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
	if body := requestBody(route); body != nil {
		if err := checkMediaType(req, body); err != nil {
			return err
		}
	}
	return checkQueryKeys(route, req)
}

// HasBody tells whether the operation of route declares a request body.
func HasBody(route *routers.Route) bool { return requestBody(route) != nil }

func requestBody(route *routers.Route) *openapi3.RequestBody {
	if body := route.Operation.RequestBody; body != nil && body.Value != nil {
		return body.Value
	}
	return nil
}

// Charge is told how many JSON values a body holds before they are decoded; an error it returns
// refuses the body as is.
type Charge func(values int) error

// CheckBody parses data, the body of a request to route sent as contentType, and validates it
// against the schema the operation declares. It returns the parsed value whenever the body is
// JSON, the value of the first discriminator under the schema's properties (for an import,
// credentials.type; "" when it names no declared one), and an *Error for a body that breaks a
// rule, or what charge returned. The items of POST /connections/batch are left as raw JSON, for
// the handler to check each on its own.
func (v *Validator) CheckBody(route *routers.Route, contentType string, data []byte, charge Charge) (value any, discriminator string, err error) {
	body := requestBody(route)
	if body == nil {
		return nil, "", nil
	}
	mediaType, _, _ := mime.ParseMediaType(contentType)
	content := body.Content.Get(mediaType)
	var schema *openapi3.Schema
	if content != nil && content.Schema != nil {
		schema = content.Schema.Value
	}
	check := v.CheckJSON
	if route.Path == BatchPath {
		check = v.checkBatchEnvelope
	}
	value, err = check(schema, body.Required, data, charge)
	if value != nil && schema != nil {
		discriminator = DiscriminatorValue(schema, value)
	}
	return value, discriminator, err
}

// requestError turns what openapi3filter reports about parameters into the contract's error.
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
		return NewError(gen.ErrorCodeInvalidUriParams, "Invalid URI parameters", details...)
	}
	details := schemaErrorDetails(err, nil)
	if len(details) == 0 {
		details = []gen.ErrorDetail{{Code: "invalid", Message: err.Error(), Path: []string{}}}
	}
	return NewError(gen.ErrorCodeInvalidQueryParams, "Invalid query parameters", details...)
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
		return NewError(gen.ErrorCodeInvalidQueryParams, "Invalid query parameters", details...)
	}
	return nil
}

// checkMediaType refuses a body whose media type is not one the operation declares.
func checkMediaType(req *http.Request, body *openapi3.RequestBody) error {
	mediaType, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || body.Content.Get(mediaType) == nil {
		return NewError(gen.ErrorCodeInvalidContentType, "Content-Type must be application/json")
	}
	return nil
}

// CheckJSON parses a JSON body and validates it against schema (nil: any JSON). It returns the
// parsed value, when the body is JSON, and the *Error of a body that breaks a rule. A body
// within the limits of jsonlimits.go is first charged for its values, when charge is set; what
// charge returns is returned as is.
func (v *Validator) CheckJSON(schema *openapi3.Schema, required bool, data []byte, charge Charge) (any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if required {
			return nil, InvalidBody("Request body is required")
		}
		return nil, nil
	}
	values, apiErr := checkJSONShape(data)
	if apiErr != nil {
		return nil, apiErr
	}
	if charge != nil {
		if err := charge(values); err != nil {
			return nil, err
		}
	}
	value, ok := decodeCounted(data, values)
	if !ok {
		var err error
		if value, err = decodeJSON(data); err != nil {
			return nil, jsonError(err)
		}
	}
	if details := unstorableValues(value, nil); len(details) > 0 {
		return value, InvalidBody("Invalid request body", details...)
	}
	if schema == nil {
		return value, nil
	}
	if details := v.ValidateValue(schema, value, nil); len(details) > 0 {
		return value, InvalidBody("Invalid request body", details...)
	}
	return value, nil
}

// ValidatedBody is a request body that holds data, already parsed into value: the generated
// handler binds value instead of decoding the body a second time.
func ValidatedBody(data []byte, value any) io.ReadCloser {
	return validatedBody{Reader: bytes.NewReader(data), value: value}
}

type validatedBody struct {
	*bytes.Reader
	value any
}

func (validatedBody) Close() error          { return nil }
func (b validatedBody) ValidatedValue() any { return b.value }

// ValidateValue validates value against schema, reporting errors with paths prefixed by at.
func (v *Validator) ValidateValue(schema *openapi3.Schema, value any, at []string) []gen.ErrorDetail {
	var details []gen.ErrorDetail
	if err := schema.VisitJSON(value, v.schemaOpts...); err != nil {
		details = schemaErrorDetails(err, at)
	}
	return append(details, v.CheckPropertyNames(schema, value, at)...)
}

// unstorableValues finds strings and keys holding U+0000, which PostgreSQL cannot store in text or
// jsonb, and numbers beyond float64's range, which no client can read back; both are refused on
// every database alike.
func unstorableValues(value any, at []string) []gen.ErrorDetail {
	return appendUnstorable(nil, value, slices.Clip(at))
}

// appendUnstorable appends the details of unstorableValues to out. Children extend at in place,
// which at was clipped for; a detail takes a copy of its path.
func appendUnstorable(out []gen.ErrorDetail, value any, at []string) []gen.ErrorDetail {
	switch v := value.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			out = append(out, Detail("invalid_string", "must not contain the NUL character", slices.Clone(at)))
		}
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			out = append(out, Detail("too_big", "number out of range", slices.Clone(at)))
		}
	case map[string]any:
		for k, child := range v {
			path := append(at, k)
			if strings.ContainsRune(k, 0) {
				out = append(out, Detail("invalid_key", "must not contain the NUL character", slices.Clone(path)))
				continue
			}
			out = appendUnstorable(out, child, path)
		}
	case []any:
		for i, child := range v {
			out = appendUnstorable(out, child, append(at, strconv.Itoa(i)))
		}
	}
	return out
}
