package contract_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/routers"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

// TestBodyValidator: the offline validator of an import body answers as the server would: the
// code, the message and each field error with its path.
func TestBodyValidator(t *testing.T) {
	t.Parallel()
	v, err := contract.NewImportValidator()
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a":`, 65) + `1` + strings.Repeat(`}`, 65)
	for _, tc := range []struct {
		name, body    string
		code, message string
		details       []gen.ErrorDetail // nil: not checked
	}{
		{name: "valid", body: `{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"API_KEY","apiKey":"k"}}`},
		{name: "empty", body: ` `, code: "invalid_body", message: "Request body is required"},
		{name: "not JSON", body: `{"provider_config_key":`, code: "invalid_json", message: "Request body is not valid JSON: unexpected EOF"},
		{name: "member twice", body: `{"connection_id":"a","connection_id":"b"}`, code: "invalid_json",
			message: `Request body is not valid JSON: member "connection_id" appears twice in one object`},
		{name: "lone surrogate", body: `{"provider_config_key":"github","credentials":{"type":"API_KEY","apiKey":"\ud800"}}`,
			code: "invalid_json", message: "Request body is not valid JSON: a string holds a lone UTF-16 surrogate escape",
			details: []gen.ErrorDetail{{Code: "invalid_string", Message: "must not hold a lone UTF-16 surrogate escape", Path: []string{"credentials", "apiKey"}}}},
		{name: "too deep", body: deep, code: "invalid_body", message: "Request body is too complex: nested deeper than 64 levels"},
		{name: "NUL", body: `{"provider_config_key":"git\u0000hub","credentials":{"type":"NONE"}}`, code: "invalid_body", message: "Invalid request body",
			details: []gen.ErrorDetail{{Code: "invalid_string", Message: "must not contain the NUL character", Path: []string{"provider_config_key"}}}},
		{name: "unknown credentials type", body: `{"provider_config_key":"github","credentials":{"type":"MAGIC"}}`, code: "invalid_body", message: "Invalid request body",
			details: []gen.ErrorDetail{{Code: "invalid_union_discriminator",
				Message: "Invalid discriminator value. Expected 'API_KEY' | 'APP' | 'BASIC' | 'NONE' | 'OAUTH1' | 'OAUTH2' | 'OAUTH2_CC' | 'TBA'",
				Path:    []string{"credentials", "type"}}}},
		{name: "bad tag key", body: `{"provider_config_key":"github","credentials":{"type":"NONE"},"tags":{"1plan":"pro"}}`, code: "invalid_body", message: "Invalid request body",
			details: []gen.ErrorDetail{{Code: "invalid_key", Message: "Invalid key in record", Path: []string{"tags", "1plan"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			value, e := v.Validate([]byte(tc.body))
			if tc.code == "" {
				if e != nil {
					t.Fatalf("refused: %v %v", e, e.Details)
				}
				if _, ok := value.(map[string]any); !ok {
					t.Errorf("value %T, want the parsed object", value)
				}
				return
			}
			if e == nil {
				t.Fatalf("accepted, want %s", tc.code)
			}
			wantContractError(t, e, tc.code, tc.message, tc.details)
		})
	}
}

// TestCheckRequest: what comes before the body, routed as the server routes it. A flag says in
// words what it must be, from StringBool's own words.
func TestCheckRequest(t *testing.T) {
	t.Parallel()
	router, v := routed(t)
	for _, tc := range []struct {
		name, method, target, contentType string
		code                              string
		details                           []gen.ErrorDetail
	}{
		{name: "a read", method: http.MethodGet, target: "/connections/acme?provider_config_key=github&force_refresh=YES"},
		{name: "a flag that is no boolean", method: http.MethodGet, target: "/connections/acme?provider_config_key=github&force_refresh=maybe",
			code: "invalid_query_params", details: []gen.ErrorDetail{{Code: "invalid_string", Path: []string{"force_refresh"},
				Message: "must be true or false (also accepted: 1 or 0, yes or no, on or off, y or n, enabled or disabled)"}}},
		{name: "an undeclared parameter", method: http.MethodGet, target: "/connections?userId=u",
			code: "invalid_query_params", details: []gen.ErrorDetail{{Code: "unrecognized_keys", Message: `Unrecognized query parameter "userId"`, Path: []string{"userId"}}}},
		{name: "a tag filter", method: http.MethodGet, target: "/connections?tags[plan]=pro"},
		{name: "a connection id too long", method: http.MethodGet, target: "/connections/" + strings.Repeat("a", 300) + "?provider_config_key=github",
			code: "invalid_uri_params"},
		{name: "a body that is not JSON", method: http.MethodPost, target: "/connections", contentType: "text/plain", code: "invalid_content_type"},
		{name: "a JSON body", method: http.MethodPost, target: "/connections", contentType: "application/json; charset=utf-8"},
		{name: "GET /connections/batch is the connection named batch", method: http.MethodGet, target: "/connections/batch?provider_config_key=github"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatal(err)
			}
			err = v.CheckRequest(req, route, params)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e, ok := err.(*contract.Error)
			if !ok {
				t.Fatalf("error %v, want %s", err, tc.code)
			}
			wantContractError(t, e, tc.code, "", tc.details)
		})
	}
}

// TestCheckBodyBatch: the envelope of a batch is checked, its items are left as raw JSON for the
// handler, however broken; a charge that refuses stops the check with its own error.
func TestCheckBodyBatch(t *testing.T) {
	t.Parallel()
	router, v := routed(t)
	route := func(method, target string) *routers.Route {
		r, _, err := router.FindRoute(httptest.NewRequest(method, target, nil))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := route(http.MethodPost, "/connections/batch")
	value, _, err := v.CheckBody(r, "application/json", []byte(`{"connections":[{"a":1,"a":2},"\u0000"]}`), nil)
	if err != nil {
		t.Fatalf("envelope refused: %v", err)
	}
	items := value.(map[string]any)["connections"].([]any)
	if first, ok := items[0].(json.RawMessage); len(items) != 2 || !ok || string(first) != `{"a":1,"a":2}` {
		t.Errorf("items %q, want them raw", items)
	}
	_, _, err = v.CheckBody(r, "application/json", []byte(`{"connections":[],"more":1}`), nil)
	if e, ok := err.(*contract.Error); !ok || e.Code != "invalid_body" {
		t.Errorf("an envelope with an unknown member: %v, want invalid_body", err)
	}

	r = route(http.MethodPost, "/connections")
	refused := &contract.Error{Code: "overloaded"}
	var charged int
	_, typ, err := v.CheckBody(r, "application/json", []byte(`{"provider_config_key":"github","credentials":{"type":"BASIC"}}`),
		func(values int) error { charged = values; return refused })
	if err != refused || charged != 4 || typ != "" {
		t.Errorf("charge: error %v, %d values, type %q; want its own error, 4 values, no type", err, charged, typ)
	}
	_, typ, err = v.CheckBody(r, "application/json", []byte(`{"provider_config_key":"github","credentials":{"type":"BASIC"}}`), nil)
	if typ != "BASIC" || err == nil {
		t.Errorf("type %q, error %v; want BASIC and the missing username", typ, err)
	}
}

// routed is the router and the validator of the embedded openapi.yaml, as the server builds them.
func routed(t *testing.T) (routers.Router, *contract.Validator) {
	t.Helper()
	doc, err := contract.Load()
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	router, err := contract.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router, contract.NewValidator(doc)
}

// wantContractError requires e to have code, message (unless "") and details (unless nil).
func wantContractError(t *testing.T, e *contract.Error, code, message string, details []gen.ErrorDetail) {
	t.Helper()
	if string(e.Code) != code || (message != "" && e.Message != message) {
		t.Errorf("%s %q, want %s %q", e.Code, e.Message, code, message)
	}
	if details != nil && !equalDetails(e.Details, details) {
		t.Errorf("details %+v, want %+v", e.Details, details)
	}
}

func equalDetails(got, want []gen.ErrorDetail) bool {
	return slices.EqualFunc(got, want, func(a, b gen.ErrorDetail) bool {
		return a.Code == b.Code && a.Message == b.Message && slices.Equal(a.Path, b.Path)
	})
}
