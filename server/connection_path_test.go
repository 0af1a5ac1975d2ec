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

// TestConnectionNamedMetadata checks that GET and DELETE on /connections/metadata, a path of the
// contract with POST and PATCH only, answer 405 rather than reaching the connection handlers
// unvalidated.
func TestConnectionNamedMetadata(t *testing.T) {
	t.Parallel()
	v := newEnv(t, storetest.SQLite)
	v.integration("dev", "github", "OAUTH2")
	v.importOK(`{"provider_config_key":"github","connection_id":"metadata","credentials":{"type":"OAUTH2","access_token":"named-metadata-1234"}}`)
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		for _, path := range []string{"/connections/metadata", "/connection/metadata"} {
			c := serveTimed(v.e, method, path+"?provider_config_key=github", v.key, "")
			if c.res.status != http.StatusMethodNotAllowed || errorCode(t, c.res) != "method_not_allowed" {
				t.Errorf("%s %s: %d %s", method, path, c.res.status, c.res.body)
			}
		}
	}
	if got := v.listIDs("connectionId=metadata"); len(got) != 1 {
		t.Errorf("list: %q", got)
	}
}
