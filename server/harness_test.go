package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
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
	api    *server.API // e with its background work
	router routers.Router
	// beneath routes the methods a credport path refuses to the template beside it.
	beneath routers.Router
	// key is a full-access secret of environment "dev".
	key string
	// logs is everything the server logged; secrets is every secret the test sent it. When the
	// test ends, no secret may appear in the logs.
	logs    *lockedBuffer
	secrets *secretSet
}

func newEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	return newEnvOn(t, storetest.Open(t, b))
}

// newEnvOn is newEnv on an open store, e.g. one that another server also uses.
func newEnvOn(t *testing.T, db *store.DB) *env {
	t.Helper()
	return newEnvWith(t, db, server.Config{})
}

// newEnvWith is newEnvOn with a configuration of the test's own; its store and logger are set here.
func newEnvWith(t *testing.T, db *store.DB, cfg server.Config) *env {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Store == nil { // a test may wrap db
		cfg.Store = db
	}
	cfg.Logger = logger
	api, err := server.NewAPI(cfg)
	if err != nil {
		t.Fatalf("server.NewAPI: %v", err)
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
	beneath, err := contract.RouterBeneathExtensions(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := db.CreateAPIKey(context.Background(), "dev", "test", []string{contract.FullAccess})
	if err != nil {
		t.Fatal(err)
	}
	v := &env{t: t, db: db, e: api.Echo, api: api, router: router, beneath: beneath, key: key, logs: logs, secrets: &secretSet{}}
	v.secrets.add(key)
	t.Cleanup(func() { v.checkLogs(t) })
	return v
}

// checkLogs fails t when a secret the test sent appears in what the server logged.
func (v *env) checkLogs(t *testing.T) {
	logged := v.logs.String()
	if logged == "" {
		return
	}
	for _, secret := range v.secrets.list() {
		if strings.Contains(logged, secret) {
			t.Errorf("the server logged a secret the test sent (%d characters, starting %.3q)", len(secret), secret)
		}
	}
}

// lockedBuffer is a bytes.Buffer that concurrent requests may log into.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// secretSet collects the secrets a test sends: API key secrets and credential values long enough
// not to occur in a log line by chance.
type secretSet struct {
	mu     sync.Mutex
	values map[string]bool
}

func (s *secretSet) add(v string) {
	if len(v) < 8 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]bool{}
	}
	s.values[v] = true
}

func (s *secretSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.values))
	for v := range s.values {
		out = append(out, v)
	}
	return out
}

// addCredentials records the credential values of an import body.
func (s *secretSet) addCredentials(body string) {
	var b struct {
		Credentials map[string]any `json:"credentials"`
	}
	if json.Unmarshal([]byte(body), &b) != nil {
		return
	}
	for k, v := range b.Credentials {
		if str, ok := v.(string); ok && k != "type" {
			s.add(str)
		}
	}
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
	v.secrets.add(secret)
	return secret
}

// request is one HTTP call; zero values mean: the env's key, JSON content type.
type request struct {
	method      string
	path        string
	body        string
	auth        *string     // nil: Bearer <env key>; otherwise the exact header, "" for none
	contentType *string     // nil: application/json; "" for none
	header      http.Header // further headers, e.g. those Nango's SDK sends
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

// sdkHeaders are the headers Nango's Node SDK sends on every call, GET and DELETE included.
func sdkHeaders() http.Header {
	return http.Header{
		"Nango-Is-Sync":    {"false"},
		"Nango-Is-Script":  {"false"},
		"Nango-Is-Dry-Run": {"false"},
		"User-Agent":       {"nango-node-client/0.71.10 (linux/x64; node.js/22.0.0)"},
	}
}

// do sends req through the real Echo stack and validates the response against openapi.yaml,
// status included: a response the contract does not allow fails the test. A POST /connections
// answer is also validated against the seed's own schema (see checkSeedContract).
func (v *env) do(req request) response {
	v.t.Helper()
	if req.method == "" {
		req.method = http.MethodPost
	}
	if req.path == "" {
		req.path = "/connections"
	}
	v.secrets.addCredentials(req.body)
	if req.auth != nil {
		v.secrets.add(strings.TrimPrefix(*req.auth, "Bearer "))
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
	for name, values := range req.header {
		for _, val := range values {
			httpReq.Header.Add(name, val)
		}
	}
	rec := httptest.NewRecorder()
	v.e.ServeHTTP(rec, httpReq)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	v.checkContract(httpReq, res)
	if req.method == http.MethodPost && httpReq.URL.Path == "/connections" && len(res.body) > 0 {
		v.checkSeedContract(res)
	}
	return res
}

// checkContract validates a response with kin-openapi's response validation.
func (v *env) checkContract(req *http.Request, res response) {
	v.t.Helper()
	route, params, err := v.router.FindRoute(req)
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		// GET, PATCH and DELETE /connections/batch are the connection named batch.
		route, params, err = v.beneath.FindRoute(req)
	}
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
	return string(body.Error.Code)
}

// on is v reporting to t, for use inside subtests.
func (v *env) on(t *testing.T) *env {
	c := *v
	c.t = t
	return &c
}

// importOK posts body to /connections, requires 200 and returns the connection.
func (v *env) importOK(body string) map[string]any {
	v.t.Helper()
	res := v.do(request{body: body})
	if res.status != http.StatusOK {
		v.t.Fatalf("import: status %d, want 200: %s\nbody sent: %s", res.status, res.body, body)
	}
	return decodeObject(v.t, res.body)
}

// decodeObject decodes a JSON object, keeping numbers as sent.
func decodeObject(t *testing.T, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, data)
	}
	return m
}

// apiError is a decoded error body.
type apiError struct {
	code    string
	message string
	errors  []gen.ErrorDetail
}

// wantError requires res to be an error with the given status and code and returns it.
func wantError(t *testing.T, res response, status int, code string) apiError {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d: %s", res.status, status, res.body)
	}
	var body gen.StdError
	if err := json.Unmarshal(res.body, &body); err != nil {
		t.Fatalf("decode error body: %v: %s", err, res.body)
	}
	out := apiError{code: string(body.Error.Code)}
	if body.Error.Message != nil {
		out.message = *body.Error.Message
	}
	if body.Error.Errors != nil {
		out.errors = *body.Error.Errors
	}
	if out.code != code {
		t.Fatalf("error code %q, want %q: %s", out.code, code, res.body)
	}
	return out
}

// fieldError is an expected entry of error.errors.
type fieldError struct {
	path []string
	// key is set for an unrecognized key; path is then the object holding it, and the error may
	// point at the object or at the key.
	key  string
	code string
}

// at expects an error at path.
func at(path ...string) fieldError { return fieldError{path: path} }

// unknownKey expects an unrecognized_keys error for key in the object at path.
func unknownKey(key string, path ...string) fieldError {
	return fieldError{path: path, key: key, code: "unrecognized_keys"}
}

// withCode also requires the error's code.
func (f fieldError) withCode(code string) fieldError {
	f.code = code
	return f
}

func (f fieldError) String() string {
	if f.key != "" {
		return fmt.Sprintf("unknown key %q in %q", f.key, f.path)
	}
	return fmt.Sprintf("%q", f.path)
}

func (f fieldError) matches(d gen.ErrorDetail) bool {
	if f.code != "" && d.Code != f.code {
		return false
	}
	if f.key == "" {
		return equalPath(d.Path, f.path)
	}
	if equalPath(d.Path, append(append([]string{}, f.path...), f.key)) {
		return true
	}
	return equalPath(d.Path, f.path) && strings.Contains(d.Message, f.key)
}

func equalPath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkFieldErrors requires errs to be exactly want: one error per expectation, none besides,
// each with a code and a message.
func checkFieldErrors(t *testing.T, errs []gen.ErrorDetail, want ...fieldError) {
	t.Helper()
	used := make([]bool, len(errs))
	for _, w := range want {
		found := false
		for i, d := range errs {
			if !used[i] && w.matches(d) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("no error for %s in %s", w, formatDetails(errs))
		}
	}
	for i, d := range errs {
		if !used[i] {
			t.Errorf("unexpected error %s", formatDetails([]gen.ErrorDetail{d}))
		}
		if d.Code == "" || d.Message == "" {
			t.Errorf("error without code or message: %s", formatDetails([]gen.ErrorDetail{d}))
		}
	}
}

// checkErrorsAt requires errs to hold at least one error and only errors at path.
func checkErrorsAt(t *testing.T, errs []gen.ErrorDetail, path ...string) {
	t.Helper()
	if len(errs) == 0 {
		t.Errorf("no error, want one at %q", path)
	}
	for _, d := range errs {
		if !equalPath(d.Path, path) || d.Code == "" || d.Message == "" {
			t.Errorf("error %s, want errors at %q only", formatDetails([]gen.ErrorDetail{d}), path)
		}
	}
}

func formatDetails(errs []gen.ErrorDetail) string {
	parts := make([]string, len(errs))
	for i, d := range errs {
		parts[i] = fmt.Sprintf("{%s %q %q}", d.Code, d.Path, d.Message)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// utcTime requires s to be an RFC 3339 date-time in UTC and returns it.
func utcTime(t *testing.T, field string, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s is %T %v, want an RFC 3339 string", field, v, v)
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s %q is not RFC 3339: %v", field, s, err)
	}
	if !strings.HasSuffix(s, "Z") {
		t.Errorf("%s %q is not in UTC", field, s)
	}
	return ts
}

// jsonEqual tells whether got, decoded with decodeObject, equals the JSON text want.
func jsonEqual(t *testing.T, got any, want string) bool {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(want))
	dec.UseNumber()
	var w any
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("bad expected JSON %s: %v", want, err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(w)
	return bytes.Equal(a, b)
}

// mustJSON is v as JSON text.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// mustTime parses an RFC 3339 time.
func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// decodeAny decodes JSON text, keeping numbers as sent; it is nil for invalid JSON.
func decodeAny(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return v
}
