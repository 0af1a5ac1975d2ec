package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

func TestImportContentType(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		tests := []struct {
			name        string
			contentType *string
			auth        *string
			wantStatus  int
			wantCode    string
		}{
			{name: "missing", contentType: strPtr(""), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "text/plain", contentType: strPtr("text/plain"), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "form", contentType: strPtr("application/x-www-form-urlencoded"), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "multipart", contentType: strPtr("multipart/form-data; boundary=x"), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "json suffix type", contentType: strPtr("application/vnd.api+json"), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "unparsable", contentType: strPtr("application/json;;"), wantStatus: http.StatusUnsupportedMediaType, wantCode: "invalid_content_type"},
			{name: "authentication comes first", contentType: strPtr("text/plain"), auth: strPtr(""), wantStatus: http.StatusUnauthorized, wantCode: "missing_auth_header"},
			{name: "application/json", contentType: strPtr("application/json"), wantStatus: http.StatusOK},
			{name: "with charset", contentType: strPtr("application/json; charset=utf-8"), wantStatus: http.StatusOK},
			{name: "upper case", contentType: strPtr("Application/JSON"), wantStatus: http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{body: validImport, contentType: tt.contentType, auth: tt.auth})
				if tt.wantCode == "" {
					if res.status != tt.wantStatus {
						t.Fatalf("status %d, want %d: %s", res.status, tt.wantStatus, res.body)
					}
					return
				}
				wantError(t, res, tt.wantStatus, tt.wantCode)
			})
		}
	})
}

func TestImportMalformedBody(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		tests := []struct {
			name     string
			body     string
			wantCode string
		}{
			{"truncated", `{"provider_config_key":"github","credentials":`, "invalid_json"},
			{"trailing garbage", validImport + ` x`, "invalid_json"},
			{"trailing comma", `{"provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":"t"},}`, "invalid_json"},
			{"two values", validImport + validImport, "invalid_json"},
			{"single quotes", `{'provider_config_key':'github'}`, "invalid_json"},
			{"not json at all", `provider_config_key=github`, "invalid_json"},
			{"member twice", `{"provider_config_key":"github","provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":"t"}}`, "invalid_json"},
			{"invalid UTF-8", "{\"provider_config_key\":\"git\xffhub\",\"credentials\":{\"type\":\"OAUTH2\",\"access_token\":\"t\"}}", "invalid_json"},
			{"nested too deep", `{"provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":"t"},"metadata":` +
				strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`, "invalid_body"},
			{"empty", ``, "invalid_body"},
			{"only whitespace", " \n\t ", "invalid_body"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantError(t, v.on(t).do(request{body: tt.body}), http.StatusBadRequest, tt.wantCode)
			})
		}
	})
}

func TestImportQueryParameters(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		tests := []struct {
			name  string
			query string
			body  string
			want  []fieldError
		}{
			{name: "unknown parameter", query: "foo=bar", want: []fieldError{unknownKey("foo")}},
			{name: "body field as parameter", query: "provider_config_key=github", want: []fieldError{unknownKey("provider_config_key")}},
			{name: "parameter without value", query: "force", want: []fieldError{unknownKey("force")}},
			{name: "two parameters", query: "a=1&b=2", want: []fieldError{unknownKey("a"), unknownKey("b")}},
			{name: "before body errors", query: "foo=bar", body: `{"credentials":{}}`, want: []fieldError{unknownKey("foo")}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := tt.body
				if body == "" {
					body = validImport
				}
				res := v.on(t).do(request{path: "/connections?" + tt.query, body: body})
				got := wantError(t, res, http.StatusBadRequest, "invalid_query_params")
				checkFieldErrors(t, got.errors, tt.want...)
			})
		}
		t.Run("empty query string", func(t *testing.T) {
			if res := v.on(t).do(request{path: "/connections?", body: validImport}); res.status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", res.status, res.body)
			}
		})
	})
}

func TestImportBodyShape(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		const creds = `"credentials":{"type":"OAUTH2","access_token":"t"}`
		tests := []struct {
			name string
			body string
			want []fieldError
		}{
			{"not an object", `[]`, []fieldError{at()}},
			{"a string", `"github"`, []fieldError{at()}},
			{"empty object", `{}`, []fieldError{at("provider_config_key"), at("credentials")}},
			{"no provider_config_key", `{` + creds + `}`, []fieldError{at("provider_config_key")}},
			{"no credentials", `{"provider_config_key":"github"}`, []fieldError{at("credentials")}},
			{"unknown top-level key", `{"provider_config_key":"github",` + creds + `,"foo":1}`, []fieldError{unknownKey("foo")}},
			{"camelCase key", `{"providerConfigKey":"github","provider_config_key":"github",` + creds + `}`, []fieldError{unknownKey("providerConfigKey")}},
			{"unknown key and missing field", `{"provider_config_key":"github","credentials":{"type":"OAUTH2"},"foo":1}`,
				[]fieldError{unknownKey("foo"), at("credentials", "access_token")}},
			{"provider_config_key a number", `{"provider_config_key":1,` + creds + `}`, []fieldError{at("provider_config_key")}},
			{"provider_config_key null", `{"provider_config_key":null,` + creds + `}`, []fieldError{at("provider_config_key")}},
			{"connection_id a number", `{"provider_config_key":"github","connection_id":7,` + creds + `}`, []fieldError{at("connection_id")}},
			{"metadata a string", `{"provider_config_key":"github","metadata":"x",` + creds + `}`, []fieldError{at("metadata")}},
			{"metadata an array", `{"provider_config_key":"github","metadata":[],` + creds + `}`, []fieldError{at("metadata")}},
			{"connection_config a string", `{"provider_config_key":"github","connection_config":"x",` + creds + `}`, []fieldError{at("connection_config")}},
			{"tags an array", `{"provider_config_key":"github","tags":[],` + creds + `}`, []fieldError{at("tags")}},
			{"end_user a string", `{"provider_config_key":"github","end_user":"u",` + creds + `}`, []fieldError{at("end_user")}},
			{"NUL in a string", `{"provider_config_key":"github","metadata":{"a":"x\u0000y"},` + creds + `}`, []fieldError{at("metadata", "a")}},
			{"number out of range", `{"provider_config_key":"github","metadata":{"a":[1e400]},` + creds + `}`, []fieldError{at("metadata", "a", "0")}},
			{"metadata over 1000 members", `{"provider_config_key":"github","metadata":` + manyMembers(1001) + `,` + creds + `}`, []fieldError{at("metadata")}},
			{"connection_config over 1000 members", `{"provider_config_key":"github","connection_config":` + manyMembers(1001) + `,` + creds + `}`, []fieldError{at("connection_config")}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := wantError(t, v.on(t).do(request{body: tt.body}), http.StatusBadRequest, "invalid_body")
				checkFieldErrors(t, got.errors, tt.want...)
			})
		}
	})
}

// manyMembers is a JSON object with n members.
func manyMembers(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"m%d":%d`, i, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestImportIdentifierLimits(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		const oddKey = "my int~:.@_-1"
		v.integration("dev", oddKey, "OAUTH2")
		const creds = `"credentials":{"type":"OAUTH2","access_token":"t"}`
		body := func(pck string, connID *string) string {
			s := `{"provider_config_key":` + mustJSON(pck)
			if connID != nil {
				s += `,"connection_id":` + mustJSON(*connID)
			}
			return s + "," + creds + "}"
		}
		oddConnectionID := `a,.;:=+~[]|@${}"'\/_ -Z9`
		tests := []struct {
			name       string
			pck        string
			connID     *string
			wantStatus int
			wantPath   []string
		}{
			{name: "provider_config_key empty", pck: "", wantStatus: 400, wantPath: []string{"provider_config_key"}},
			{name: "provider_config_key 256 characters", pck: strings.Repeat("k", 256), wantStatus: 400, wantPath: []string{"provider_config_key"}},
			{name: "provider_config_key with slash", pck: "git/hub", wantStatus: 400, wantPath: []string{"provider_config_key"}},
			{name: "provider_config_key with hash", pck: "git#hub", wantStatus: 400, wantPath: []string{"provider_config_key"}},
			{name: "provider_config_key non-ASCII", pck: "gïthub", wantStatus: 400, wantPath: []string{"provider_config_key"}},
			{name: "provider_config_key 255 characters passes validation", pck: strings.Repeat("k", 255), wantStatus: 404},
			{name: "provider_config_key with every allowed character", pck: oddKey, wantStatus: 200},
			{name: "connection_id empty", pck: "github", connID: strPtr(""), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id 256 characters", pck: "github", connID: strPtr(strings.Repeat("c", 256)), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id with hash", pck: "github", connID: strPtr("a#b"), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id with question mark", pck: "github", connID: strPtr("a?b"), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id with newline", pck: "github", connID: strPtr("a\nb"), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id with angle brackets", pck: "github", connID: strPtr("<a>"), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id non-ASCII", pck: "github", connID: strPtr("é"), wantStatus: 400, wantPath: []string{"connection_id"}},
			{name: "connection_id 255 characters", pck: "github", connID: strPtr(strings.Repeat("c", 255)), wantStatus: 200},
			{name: "connection_id with every allowed character", pck: "github", connID: strPtr(oddConnectionID), wantStatus: 200},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{body: body(tt.pck, tt.connID)})
				switch tt.wantStatus {
				case 200:
					if res.status != 200 {
						t.Fatalf("status %d, want 200: %s", res.status, res.body)
					}
					conn := decodeObject(t, res.body)
					if conn["provider_config_key"] != tt.pck {
						t.Errorf("provider_config_key %q, want %q", conn["provider_config_key"], tt.pck)
					}
					if tt.connID != nil && conn["connection_id"] != *tt.connID {
						t.Errorf("connection_id %q, want %q", conn["connection_id"], *tt.connID)
					}
				case 404:
					wantError(t, res, http.StatusNotFound, "not_found")
				default:
					got := wantError(t, res, http.StatusBadRequest, "invalid_body")
					checkErrorsAt(t, got.errors, tt.wantPath...)
				}
			})
		}
	})
}

func TestImportResponseShape(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		clk := &clock{now: mustTime(t, "2024-03-04T05:06:07.123456+05:00")}
		v.db.Now = clk.Now
		conn := v.importOK(`{"provider_config_key":"github","connection_id":"shape","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		tests := []struct {
			name  string
			field string
			want  string
		}{
			{"errors is empty", "errors", `[]`},
			{"metadata defaults to {}", "metadata", `{}`},
			{"connection_config defaults to {}", "connection_config", `{}`},
			{"tags default to {}", "tags", `{}`},
			{"connection_id as sent", "connection_id", `"shape"`},
			{"provider_config_key as sent", "provider_config_key", `"github"`},
			{"provider of the integration", "provider", `"github"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if !jsonEqual(t, conn[tt.field], tt.want) {
					t.Errorf("%s = %s, want %s", tt.field, mustJSON(conn[tt.field]), tt.want)
				}
			})
		}
		for _, field := range []string{"created_at", "updated_at", "last_fetched_at"} {
			t.Run(field+" is RFC 3339 UTC", func(t *testing.T) {
				got := utcTime(t, field, conn[field])
				if want := clk.Now(); !got.Equal(want) {
					t.Errorf("%s %s, want %s", field, got, want.UTC())
				}
			})
		}
		t.Run("no end_user when none was sent", func(t *testing.T) {
			if eu, ok := conn["end_user"]; ok && eu != nil {
				t.Errorf("end_user = %s, want absent or null", mustJSON(eu))
			}
		})
		t.Run("id is a positive integer", func(t *testing.T) {
			if s := mustJSON(conn["id"]); strings.ContainsAny(s, `."-`) || s == "0" {
				t.Errorf("id = %s, want a positive integer", s)
			}
		})
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		tests := []struct {
			name string
			auth *string
		}{
			{"without auth", strPtr("")},
			{"with an unknown key", strPtr("Bearer cp_unknown")},
			{"with a malformed header", strPtr("Basic x")},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{method: http.MethodGet, path: "/health", auth: tt.auth, contentType: strPtr("")})
				if res.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", res.status, res.body)
				}
				if !jsonEqual(t, decodeObject(t, res.body), `{"result":"ok"}`) {
					t.Errorf("body %s, want {\"result\":\"ok\"}", res.body)
				}
			})
		}
	})
}
