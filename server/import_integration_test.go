package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

func TestImportUnknownIntegration(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.integration("prod", "salesforce", "OAUTH2")
		tests := []struct {
			name string
			body string
		}{
			{"no such integration", `{"provider_config_key":"gitlab","credentials":{"type":"OAUTH2","access_token":"t"}}`},
			{"integration of another environment", `{"provider_config_key":"salesforce","credentials":{"type":"OAUTH2","access_token":"t"}}`},
			{"key differs in case", `{"provider_config_key":"GitHub","credentials":{"type":"OAUTH2","access_token":"t"}}`},
			{"key with a trailing space", `{"provider_config_key":"github ","credentials":{"type":"OAUTH2","access_token":"t"}}`},
			{"checked before the auth mode", `{"provider_config_key":"gitlab","credentials":{"type":"API_KEY","apiKey":"k"}}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := wantError(t, v.on(t).do(request{body: tt.body}), http.StatusNotFound, "not_found")
				if got.message != "Integration does not exist" {
					t.Errorf("message %q, want %q", got.message, "Integration does not exist")
				}
			})
		}
		t.Run("body validated before the integration is looked up", func(t *testing.T) {
			res := v.on(t).do(request{body: `{"provider_config_key":"gitlab","credentials":{"type":"OAUTH2"}}`})
			got := wantError(t, res, http.StatusBadRequest, "invalid_body")
			checkFieldErrors(t, got.errors, at("credentials", "access_token"))
		})
	})
}

func TestImportAuthModeMismatch(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		modeIntegrations(v)
		tests := []struct {
			pck   string
			creds string
			want  string
		}{
			{"oauth2", `{"type":"API_KEY","apiKey":"k"}`, "Provider OAUTH2 does not support API_KEY auth"},
			{"api_key", `{"type":"OAUTH2","access_token":"t"}`, "Provider API_KEY does not support OAUTH2 auth"},
			{"oauth1", `{"type":"OAUTH2","access_token":"t"}`, "Provider OAUTH1 does not support OAUTH2 auth"},
			{"oauth2", `{"type":"OAUTH2_CC","token":"t","client_id":"i","client_secret":"s"}`, "Provider OAUTH2 does not support OAUTH2_CC auth"},
			{"basic", `{"type":"NONE"}`, "Provider BASIC does not support NONE auth"},
			{"none", `{"type":"BASIC","username":"u","password":"p"}`, "Provider NONE does not support BASIC auth"},
			{"tba", `{"type":"API_KEY","apiKey":"k"}`, "Provider TBA does not support API_KEY auth"},
			{"app", `{"type":"OAUTH2","access_token":"t"}`, "Provider APP does not support OAUTH2 auth"},
		}
		for _, tt := range tests {
			t.Run(tt.want, func(t *testing.T) {
				body := `{"provider_config_key":"` + tt.pck + `","credentials":` + tt.creds + `}`
				got := wantError(t, v.on(t).do(request{body: body}), http.StatusBadRequest, "invalid_body")
				if got.message != tt.want {
					t.Errorf("message %q, want %q", got.message, tt.want)
				}
			})
		}
	})
}

func TestImportTBAAccountID(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "netsuite", "TBA")
		const creds = `"credentials":{"type":"TBA","token_id":"ti","token_secret":"ts"}`
		tests := []struct {
			name       string
			config     string // connection_config member, "" for none
			wantStatus int
		}{
			{"no connection_config", ``, http.StatusBadRequest},
			{"empty connection_config", `"connection_config":{}`, http.StatusBadRequest},
			{"other keys only", `"connection_config":{"account_id":"1"}`, http.StatusBadRequest},
			{"empty accountId", `"connection_config":{"accountId":""}`, http.StatusBadRequest},
			{"accountId null", `"connection_config":{"accountId":null}`, http.StatusBadRequest},
			{"accountId set", `"connection_config":{"accountId":"1234567_SB1","extra":true}`, http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := `{"provider_config_key":"netsuite",` + creds
				if tt.config != "" {
					body += "," + tt.config
				}
				body += "}"
				res := v.on(t).do(request{body: body})
				if tt.wantStatus == http.StatusOK {
					if res.status != http.StatusOK {
						t.Fatalf("status %d, want 200: %s", res.status, res.body)
					}
					conn := decodeObject(t, res.body)
					if want := `{"accountId":"1234567_SB1","extra":true}`; !jsonEqual(t, conn["connection_config"], want) {
						t.Errorf("connection_config = %s, want %s", mustJSON(conn["connection_config"]), want)
					}
					return
				}
				got := wantError(t, res, tt.wantStatus, "invalid_body")
				checkFieldErrors(t, got.errors, at("connection_config", "accountId"))
			})
		}
	})
}

func TestImportGitHubApp(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github-app", "APP")
		tests := []struct {
			name string
			body string
		}{
			{"with a connection id", `{"provider_config_key":"github-app","connection_id":"app-1","credentials":{"type":"APP","app_id":"123","installation_id":"456"}}`},
			{"without a connection id", `{"provider_config_key":"github-app","credentials":{"type":"APP","app_id":"1","installation_id":"2"}}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := tt.body
				got := wantError(t, v.on(t).do(request{body: body}), http.StatusBadRequest, "invalid_body")
				if !strings.Contains(got.message, "GitHub App") || !strings.Contains(got.message, "configured") {
					t.Errorf("message %q, want one saying no GitHub App is configured", got.message)
				}
			})
		}
	})
}
