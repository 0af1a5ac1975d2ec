package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// env is one API under test: the real Echo stack on a fresh database.
type env struct {
	t      *testing.T
	db     *store.DB
	e      *echo.Echo
	router routers.Router
	// key is a full-access secret of environment "dev".
	key string
}

func newEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	db := storetest.Open(t, b)
	e, err := server.New(server.Config{Store: db})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	spec, err := gen.GetSpec()
	if err != nil {
		t.Fatal(err)
	}
	spec.Servers = nil
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := db.CreateAPIKey(context.Background(), "dev", "test", []string{server.FullAccess})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, e: e, router: router, key: key}
}

// integration creates an integration in environment envName.
func (v *env) integration(envName, uniqueKey, authMode string) {
	v.t.Helper()
	_, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
		Environment: envName, UniqueKey: uniqueKey, Provider: strings.ToLower(uniqueKey), AuthMode: authMode,
	})
	if err != nil {
		v.t.Fatalf("create integration: %v", err)
	}
}

// apiKey creates a key in envName with the given scopes and returns its secret.
func (v *env) apiKey(envName string, scopes ...string) string {
	v.t.Helper()
	_, secret, err := v.db.CreateAPIKey(context.Background(), envName, "test", scopes)
	if err != nil {
		v.t.Fatal(err)
	}
	return secret
}

// request is one HTTP call; zero values mean: the env's key, JSON content type.
type request struct {
	method      string
	path        string
	body        string
	auth        *string // nil: Bearer <env key>; otherwise the exact header, "" for none
	contentType *string // nil: application/json; "" for none
}

// response is what the API answered, already checked against openapi.yaml.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func strPtr(s string) *string { return &s }

// do sends req through the real Echo stack and validates the response against openapi.yaml,
// status included: a response the contract does not allow fails the test.
func (v *env) do(req request) response {
	v.t.Helper()
	if req.method == "" {
		req.method = http.MethodPost
	}
	if req.path == "" {
		req.path = "/connections"
	}
	httpReq := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
	switch {
	case req.auth == nil:
		httpReq.Header.Set("Authorization", "Bearer "+v.key)
	case *req.auth != "":
		httpReq.Header.Set("Authorization", *req.auth)
	}
	switch {
	case req.contentType == nil:
		httpReq.Header.Set("Content-Type", "application/json")
	case *req.contentType != "":
		httpReq.Header.Set("Content-Type", *req.contentType)
	}
	rec := httptest.NewRecorder()
	v.e.ServeHTTP(rec, httpReq)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	v.checkContract(httpReq, res)
	return res
}

// checkContract validates a response with kin-openapi's response validation.
func (v *env) checkContract(req *http.Request, res response) {
	v.t.Helper()
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		v.t.Fatalf("%s %s is not an operation of openapi.yaml: %v", req.Method, req.URL.Path, err)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.status,
		Header: res.header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	input.SetBodyBytes(res.body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		v.t.Fatalf("%s %s answered %d %s, which openapi.yaml does not allow: %v",
			req.Method, req.URL.Path, res.status, res.body, err)
	}
}

// errorCode is the error.code of an error body.
func errorCode(t *testing.T, res response) string {
	t.Helper()
	var body gen.StdError
	if err := json.NewDecoder(bytes.NewReader(res.body)).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v: %s", err, res.body)
	}
	return body.Error.Code
}

var _ = io.EOF
var _ = openapi3.MultiError{}
