package server_test

import (
	"net/http"
	"testing"

	"github.com/credport/credport/store/storetest"
)

const validImport = `{"provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":"tok"}}`

func TestImportAuth(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		readOnly := v.apiKey("dev", "environment:connections:read")
		wildcard := v.apiKey("dev", "environment:connections:*")
		exact := v.apiKey("dev", "environment:connections:create")
		tests := []struct {
			name       string
			auth       *string
			wantStatus int
			wantCode   string
		}{
			{"no header", strPtr(""), http.StatusUnauthorized, "missing_auth_header"},
			{"not bearer", strPtr("Basic abc"), http.StatusUnauthorized, "malformed_auth_header"},
			{"empty bearer", strPtr("Bearer "), http.StatusUnauthorized, "malformed_auth_header"},
			{"unknown secret", strPtr("Bearer cp_nope"), http.StatusUnauthorized, "unknown_account"},
			{"scope missing", strPtr("Bearer " + readOnly), http.StatusForbidden, "forbidden"},
			{"wildcard scope", strPtr("Bearer " + wildcard), http.StatusOK, ""},
			{"exact scope", strPtr("Bearer " + exact), http.StatusOK, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.do(request{body: validImport, auth: tt.auth})
				if res.status != tt.wantStatus {
					t.Fatalf("status %d, want %d: %s", res.status, tt.wantStatus, res.body)
				}
				if tt.wantCode != "" {
					if got := errorCode(t, res); got != tt.wantCode {
						t.Errorf("code %q, want %q", got, tt.wantCode)
					}
				}
			})
		}
	})
}
