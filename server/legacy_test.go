package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestLegacyPaths checks that the paths older SDKs call answer as their /connections
// counterparts do.
func TestLegacyPaths(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.importOK(oauth2WithRefresh)
		v.importOK(`{"provider_config_key":"github","connection_id":"globex","credentials":{"type":"OAUTH2","access_token":"legacy-token-7777"}}`)
		reader := v.on(t)
		reader.key = v.apiKey("dev", scopeRead)
		call := func(api *env, method, path, body string) response {
			return api.do(request{method: method, path: path, body: body, header: sdkHeaders()})
		}

		t.Run("GET /connection/{id}", func(t *testing.T) {
			res := call(v.on(t), http.MethodGet, "/connection/acme?provider_config_key=github&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false", "")
			if res.status != http.StatusOK || res.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("%d %v %s", res.status, res.header, res.body)
			}
			got := decodeObject(t, res.body)
			creds, _ := got["credentials"].(map[string]any)
			if creds["access_token"] != "access-token-1234" || strings.Contains(string(res.body), "refresh-token-5678") {
				t.Errorf("credentials %s", mustJSON(creds))
			}
			wantError(t, call(reader.on(t), http.MethodGet, "/connection/acme?provider_config_key=github&refresh_token=true", ""), http.StatusForbidden, "forbidden")
			wantError(t, call(v.on(t), http.MethodGet, "/connection/nope?provider_config_key=github", ""), http.StatusNotFound, "not_found")
		})
		t.Run("GET /connection", func(t *testing.T) {
			got := v.on(t).listIDs("connectionId=globex")
			if strings.Join(got, " ") != "github/globex" {
				t.Errorf("%q", got)
			}
			res := call(v.on(t), http.MethodGet, "/connection?integrationId=github&limit=1", "")
			if res.status != http.StatusOK || strings.Contains(string(res.body), "token") {
				t.Fatalf("%d %s", res.status, res.body)
			}
			if n := len(decodeObject(t, res.body)["connections"].([]any)); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
		t.Run("POST and PATCH /connection/metadata", func(t *testing.T) {
			res := call(v.on(t), http.MethodPost, "/connection/metadata", `{"connection_id":["acme","globex"],"provider_config_key":"github","metadata":{"a":1}}`)
			if res.status != http.StatusCreated {
				t.Fatalf("%d %s", res.status, res.body)
			}
			res = call(v.on(t), http.MethodPatch, "/connection/metadata", `{"connection_id":"acme","provider_config_key":"github","metadata":{"b":2}}`)
			if res.status != http.StatusOK {
				t.Fatalf("%d %s", res.status, res.body)
			}
			got := decodeObject(t, v.on(t).getConn("acme", "provider_config_key=github").body)
			if !jsonEqual(t, got["metadata"], `{"a":1,"b":2}`) {
				t.Errorf("metadata %s", mustJSON(got["metadata"]))
			}
			wantError(t, call(v.on(t), http.MethodPatch, "/connection/metadata", `{"connection_id":"zz","provider_config_key":"github","metadata":{}}`), http.StatusNotFound, "unknown_connection")
		})
		t.Run("DELETE /connection/{id}", func(t *testing.T) {
			res := call(v.on(t), http.MethodDelete, "/connection/globex?provider_config_key=github", "")
			if res.status != http.StatusOK || !jsonEqual(t, decodeObject(t, res.body), `{"success":true}`) {
				t.Fatalf("%d %s", res.status, res.body)
			}
			wantError(t, call(v.on(t), http.MethodDelete, "/connection/globex?provider_config_key=github", ""), http.StatusBadRequest, "unknown_connection")
			wantError(t, v.on(t).getConn("globex", "provider_config_key=github"), http.StatusNotFound, "not_found")
		})
	})
}
