package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestErrorMessagesToActOn: a query parameter that fails its schema is named in the error's path,
// and a boolean or date-time that fails says what it must be, not the regular expression behind it.
func TestErrorMessagesToActOn(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.importOK(`{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		tests := []struct {
			name string
			req  request
			code string
			// path and message are what the single field error must carry.
			path    []string
			message string
		}{
			{name: "limit 0", req: request{method: http.MethodGet, path: "/connections?limit=0"}, code: "invalid_query_params", path: []string{"limit"}},
			{name: "negative page", req: request{method: http.MethodGet, path: "/connections?page=-1"}, code: "invalid_query_params", path: []string{"page"}},
			{name: "limit not a number", req: request{method: http.MethodGet, path: "/connections?limit=ten"}, code: "invalid_query_params", path: []string{"limit"}},
			{name: "force_refresh maybe", req: request{method: http.MethodGet, path: "/connections/acme?provider_config_key=github&force_refresh=maybe"},
				code: "invalid_query_params", path: []string{"force_refresh"}, message: "must be true or false"},
			{name: "expires_at not a date", req: request{body: `{"provider_config_key":"github","connection_id":"d","credentials":{"type":"OAUTH2","access_token":"t","expires_at":"tomorrow"}}`},
				code: "invalid_body", path: []string{"credentials", "expires_at"}, message: "must be an RFC 3339 date-time"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := wantError(t, v.on(t).do(tt.req), http.StatusBadRequest, tt.code)
				if len(got.errors) != 1 {
					t.Fatalf("errors %s, want one", formatDetails(got.errors))
				}
				d := got.errors[0]
				if !equalPath(d.Path, tt.path) {
					t.Errorf("path %q, want %q", d.Path, tt.path)
				}
				if tt.message != "" && !strings.Contains(d.Message, tt.message) {
					t.Errorf("message %q, want it to say %q", d.Message, tt.message)
				}
				if strings.Contains(d.Message, "regular expression") || strings.Contains(d.Message, "^") {
					t.Errorf("message %q shows a regular expression", d.Message)
				}
			})
		}
	})
}
