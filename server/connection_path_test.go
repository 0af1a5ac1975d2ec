package server_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestConnectionIDInPath checks that connection ids with the characters the contract allows
// reach the handlers decoded, and that a bad one is invalid_uri_params.
func TestConnectionIDInPath(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		for _, id := range []string{"acme corp|1", "a@b.c", "x{y}", "q'r", `a"b`, "semi;colon=1+2~[3]$", `back\slash`} {
			t.Run(id, func(t *testing.T) {
				v := v.on(t)
				v.importOK(`{"provider_config_key":"github","connection_id":` + mustJSON(id) + `,"credentials":{"type":"OAUTH2","access_token":"tok-special-1234"}}`)
				res := v.getConn(id, "provider_config_key=github")
				if res.status != http.StatusOK || decodeObject(t, res.body)["connection_id"] != id {
					t.Fatalf("get: %d %s", res.status, res.body)
				}
				res = v.do(request{method: http.MethodDelete, path: "/connections/" + url.PathEscape(id) + "?provider_config_key=github"})
				if res.status != http.StatusOK {
					t.Fatalf("delete: %d %s", res.status, res.body)
				}
			})
		}
		t.Run("a character the contract refuses", func(t *testing.T) {
			e := wantError(t, v.on(t).getConn("a%b", "provider_config_key=github&x=1"), http.StatusBadRequest, "invalid_uri_params")
			checkErrorsAt(t, e.errors, "connectionId")
		})
	})
}
