package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store/storetest"
)

const (
	scopeRead            = "environment:connections:read"
	scopeReadCredentials = "environment:connections:read_credentials"
)

// oauth2WithRefresh is an OAUTH2 import whose refresh tokens sit in credentials, in raw and in
// connection_config.
const oauth2WithRefresh = `{"provider_config_key":"github","connection_id":"acme",
"credentials":{"type":"OAUTH2","access_token":"access-token-1234","refresh_token":"refresh-token-5678","expires_at":"2030-01-01T00:00:00Z"},
"connection_config":{"subdomain":"acme","refreshToken":"config-refresh-9012","nested":{"Refresh-Token":"nested-refresh-3456","keep":"yes"}},
"metadata":{"plan":"pro"}}`

// getConn is GET /connections/{id} with the given query (provider_config_key included).
func (v *env) getConn(id, query string) response {
	v.t.Helper()
	return v.do(request{method: http.MethodGet, path: "/connections/" + url.PathEscape(id) + "?" + query})
}

// TestGetConnectionLastFetchedAt checks that a read with credentials writes last_fetched_at only
// once it is a minute old, so that frequent reads of one connection do not each write the row.
func TestGetConnectionLastFetchedAt(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		v.importOK(oauth2WithRefresh)
		imported := clk.Now()
		for _, step := range []struct {
			name    string
			advance time.Duration
			want    time.Time
		}{
			{"under a minute after the import: the import's", 59 * time.Second, imported},
			{"a minute after: now", time.Second, imported.Add(time.Minute)},
			{"again under a minute after: unchanged", 59 * time.Second, imported.Add(time.Minute)},
			{"a minute after the last write: now", time.Second, imported.Add(2 * time.Minute)},
		} {
			t.Run(step.name, func(t *testing.T) {
				clk.Add(step.advance)
				res := v.on(t).getConn("acme", "provider_config_key=github")
				if res.status != http.StatusOK {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				if got := utcTime(t, "last_fetched_at", decodeObject(t, res.body)["last_fetched_at"]); !got.Equal(step.want) {
					t.Errorf("last_fetched_at %v, want %v", got, step.want)
				}
			})
		}
	})
}

func TestGetConnectionCredentialsByScope(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		imported := v.importOK(oauth2WithRefresh)
		clk.Add(time.Hour)

		reader := v.on(t)
		reader.key = v.apiKey("dev", scopeRead)
		credReader := v.on(t)
		credReader.key = v.apiKey("dev", scopeReadCredentials)
		wildcard := v.on(t)
		wildcard.key = v.apiKey("dev", "environment:connections:*")

		t.Run("read only: credentials {}, last_fetched_at untouched, config stripped", func(t *testing.T) {
			res := reader.on(t).getConn("acme", "provider_config_key=github")
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			got := decodeObject(t, res.body)
			if !jsonEqual(t, got["credentials"], `{}`) {
				t.Errorf("credentials %v, want {}", got["credentials"])
			}
			if got["last_fetched_at"] != imported["last_fetched_at"] {
				t.Errorf("last_fetched_at %v, want the import's %v", got["last_fetched_at"], imported["last_fetched_at"])
			}
			if !jsonEqual(t, got["connection_config"], `{"subdomain":"acme","nested":{"keep":"yes"}}`) {
				t.Errorf("connection_config %v", mustJSON(got["connection_config"]))
			}
			if !jsonEqual(t, got["metadata"], `{"plan":"pro"}`) || got["webhook_url_override"] != nil {
				t.Errorf("metadata %v webhook_url_override %v", got["metadata"], got["webhook_url_override"])
			}
			if strings.Contains(string(res.body), "token-") {
				t.Errorf("a token left through a key without read_credentials: %s", res.body)
			}
		})
		for _, flag := range []string{"refresh_token", "force_refresh", "refresh_github_app_jwt_token"} {
			for _, val := range []string{"true", "1", "YES", "on", "y", "Enabled"} {
				t.Run("read only with "+flag+"="+val, func(t *testing.T) {
					res := reader.on(t).getConn("acme", "provider_config_key=github&"+flag+"="+val)
					e := wantError(t, res, http.StatusForbidden, "forbidden")
					if e.message != "Credential and refresh options require the environment:connections:read_credentials scope" {
						t.Errorf("message %q", e.message)
					}
				})
			}
		}
		t.Run("read only with every flag false, as the SDK sends", func(t *testing.T) {
			res := reader.on(t).getConn("acme", "provider_config_key=github&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false")
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
		})
		for _, api := range []struct {
			name string
			v    *env
		}{{"read_credentials", credReader}, {"connections wildcard", wildcard}, {"full access", v}} {
			t.Run(api.name+": credentials without refresh tokens, last_fetched_at set", func(t *testing.T) {
				clk.Add(time.Minute)
				res := api.v.on(t).getConn("acme", "provider_config_key=github&refresh_token=false")
				if res.status != http.StatusOK {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				if cc := res.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
				got := decodeObject(t, res.body)
				want := `{"type":"OAUTH2","access_token":"access-token-1234","expires_at":"2030-01-01T00:00:00Z",
					"raw":{"type":"OAUTH2","access_token":"access-token-1234","expires_at":"2030-01-01T00:00:00Z"}}`
				if !jsonEqual(t, got["credentials"], want) {
					t.Errorf("credentials %s, want %s", mustJSON(got["credentials"]), want)
				}
				if !jsonEqual(t, got["connection_config"], `{"subdomain":"acme","nested":{"keep":"yes"}}`) {
					t.Errorf("connection_config %v", mustJSON(got["connection_config"]))
				}
				if !utcTime(t, "last_fetched_at", got["last_fetched_at"]).Equal(clk.Now()) {
					t.Errorf("last_fetched_at %v, want %v", got["last_fetched_at"], clk.Now())
				}
				if got["updated_at"] != imported["updated_at"] || got["created_at"] != imported["created_at"] || mustJSON(got["id"]) != mustJSON(imported["id"]) {
					t.Errorf("read changed the connection: %s", res.body)
				}
			})
		}
		t.Run("refresh_token=true keeps every refresh token", func(t *testing.T) {
			res := credReader.on(t).getConn("acme", "provider_config_key=github&refresh_token=TRUE")
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			for _, tok := range []string{"refresh-token-5678", "config-refresh-9012", "nested-refresh-3456"} {
				if c := strings.Count(string(res.body), tok); c == 0 {
					t.Errorf("%s missing: %s", tok, res.body)
				}
			}
			got := decodeObject(t, res.body)
			raw, _ := got["credentials"].(map[string]any)["raw"].(map[string]any)
			if raw["refresh_token"] != "refresh-token-5678" {
				t.Errorf("raw.refresh_token %v", raw["refresh_token"])
			}
		})
		t.Run("default is refresh_token=false", func(t *testing.T) {
			res := credReader.on(t).getConn("acme", "provider_config_key=github")
			if res.status != http.StatusOK || strings.Contains(string(res.body), "refresh-") {
				t.Errorf("status %d, body %s", res.status, res.body)
			}
		})
	})
}

func TestGetConnectionForceRefresh(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		for _, mode := range []string{"OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC", "NONE"} {
			v.integration("dev", strings.ToLower(mode), mode)
		}
		v.importOK(`{"provider_config_key":"oauth2","connection_id":"c","credentials":{"type":"OAUTH2","access_token":"access-token-aaaa"}}`)
		v.importOK(`{"provider_config_key":"oauth2_cc","connection_id":"c","credentials":{"type":"OAUTH2_CC","token":"cc-token-bbbbbb","client_id":"cid","client_secret":"client-secret-cccc"}}`)
		v.importOK(`{"provider_config_key":"api_key","connection_id":"c","credentials":{"type":"API_KEY","apiKey":"api-key-dddddd"}}`)
		v.importOK(`{"provider_config_key":"basic","connection_id":"c","credentials":{"type":"BASIC","username":"u","password":"password-eeee"}}`)
		v.importOK(`{"provider_config_key":"none","connection_id":"c","credentials":{"type":"NONE"}}`)
		for _, pck := range []string{"oauth2", "oauth2_cc"} {
			t.Run(pck+" answers 400 invalid_credentials", func(t *testing.T) {
				e := wantError(t, v.on(t).getConn("c", "provider_config_key="+pck+"&force_refresh=true"), http.StatusBadRequest, "invalid_credentials")
				if !strings.Contains(e.message, "token refresh is not configured for the integration") {
					t.Errorf("message %q", e.message)
				}
			})
		}
		for _, tt := range []struct{ pck, creds string }{
			{"api_key", `{"type":"API_KEY","apiKey":"api-key-dddddd"}`},
			{"basic", `{"type":"BASIC","username":"u","password":"password-eeee"}`},
			{"none", `{}`},
		} {
			t.Run(tt.pck+" changes nothing", func(t *testing.T) {
				res := v.on(t).getConn("c", "provider_config_key="+tt.pck+"&force_refresh=true")
				if res.status != http.StatusOK {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				if got := decodeObject(t, res.body)["credentials"]; !jsonEqual(t, got, tt.creds) {
					t.Errorf("credentials %s, want %s", mustJSON(got), tt.creds)
				}
			})
		}
	})
}

func TestGetConnectionErrors(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.integration("prod", "gitlab", "OAUTH2")
		v.importOK(oauth2WithRefresh)
		prod := v.on(t)
		prod.key = v.apiKey("prod", contract.FullAccess)
		createOnly := v.on(t)
		createOnly.key = v.apiKey("dev", "environment:connections:create", "environment:connections:list")

		t.Run("unknown integration", func(t *testing.T) {
			e := wantError(t, v.on(t).getConn("acme", "provider_config_key=nope"), http.StatusBadRequest, "unknown_provider_config")
			if e.message != "Provider does not exists" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("unknown connection", func(t *testing.T) {
			e := wantError(t, v.on(t).getConn("other", "provider_config_key=github"), http.StatusNotFound, "not_found")
			if e.message != "Failed to find connection" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("another environment's integration", func(t *testing.T) {
			wantError(t, prod.on(t).getConn("acme", "provider_config_key=github"), http.StatusBadRequest, "unknown_provider_config")
		})
		t.Run("key without read scopes", func(t *testing.T) {
			e := wantError(t, createOnly.on(t).getConn("acme", "provider_config_key=github"), http.StatusForbidden, "forbidden")
			if e.message != "Insufficient scope. Required one of: environment:connections:read or environment:connections:read_credentials" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("missing provider_config_key", func(t *testing.T) {
			wantError(t, v.on(t).getConn("acme", ""), http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("bad flag value", func(t *testing.T) {
			wantError(t, v.on(t).getConn("acme", "provider_config_key=github&refresh_token=maybe"), http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("unknown query parameter", func(t *testing.T) {
			wantError(t, v.on(t).getConn("acme", "provider_config_key=github&x=1"), http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("no key", func(t *testing.T) {
			res := v.on(t).do(request{method: http.MethodGet, path: "/connections/acme?provider_config_key=github", auth: strPtr("")})
			wantError(t, res, http.StatusUnauthorized, "missing_auth_header")
		})
		t.Run("the SDK's headers are accepted", func(t *testing.T) {
			res := v.on(t).do(request{method: http.MethodGet, header: sdkHeaders(),
				path: "/connections/acme?provider_config_key=github&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"})
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
		})
	})
}
