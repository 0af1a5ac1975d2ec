package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestPathsOutsideTheContract: paths that Echo's router would hand to a handler but openapi.yaml
// does not declare (a trailing slash, a dot segment, an empty segment, a segment too many) never
// reach one: without a key they answer 401 or 404, with one 404 (405 for a declared path and
// another method), in the documented error shape, never a 5xx, and nothing is logged at ERROR.
// A DELETE through such a path leaves the connection in place.
func TestPathsOutsideTheContract(t *testing.T) {
	paths := []string{
		"/connections/user-1/",
		"/connections/./user-1",
		"/connections/../connections/user-1",
		"/connections//user-1",
		"/connections/user-1/extra",
		"/connections/metadata/",
		"/connection/user-1/",
		"/connection/./user-1",
		"/connection/metadata/",
		"/connections/user-1/?provider_config_key=github",
		"/connection/user-1/?provider_config_key=github",
		"/health/",
		"/nowhere",
	}
	methods := []string{http.MethodGet, http.MethodDelete, http.MethodPatch, http.MethodPost, http.MethodPut, "PROPFIND"}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.importOK(`{"provider_config_key":"github","connection_id":"user-1","credentials":{"type":"OAUTH2","access_token":"tok"}}`)
		for _, path := range paths {
			for _, method := range methods {
				for _, auth := range []struct {
					name, header string
					want         []int
				}{
					{"no key", "", []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed}},
					{"key", "Bearer " + v.key, []int{http.StatusNotFound, http.StatusMethodNotAllowed}},
				} {
					t.Run(method+" "+path+" "+auth.name, func(t *testing.T) {
						var body *strings.Reader
						req := newRawRequest(method, path, auth.header, nil)
						if method == http.MethodPost || method == http.MethodPatch {
							body = strings.NewReader(`{"tags":{}}`)
							req = newRawRequest(method, path, auth.header, body)
						}
						res := v.on(t).sendRaw(req)
						if !containsInt(auth.want, res.status) {
							t.Fatalf("status %d, want one of %v: %s", res.status, auth.want, res.body)
						}
					})
				}
			}
		}
		res := v.do(request{method: http.MethodGet, path: "/connections/user-1?provider_config_key=github"})
		if res.status != http.StatusOK {
			t.Fatalf("the connection is gone after DELETEs outside the contract: status %d: %s", res.status, res.body)
		}
		if lines := v.errorLines(); len(lines) > 0 {
			t.Fatalf("%d requests logged at ERROR, e.g. %s", len(lines), lines[0])
		}
	})
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}
