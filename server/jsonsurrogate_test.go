package server_test

import (
	"net/http"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestLoneSurrogateRefused checks that a \u escape of a lone UTF-16 surrogate anywhere in a body
// is refused with 400 invalid_json and its path, rather than stored as U+FFFD, which would change
// a secret; a surrogate pair is kept as the character it spells.
func TestLoneSurrogateRefused(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "API_KEY")
		importBody := func(apiKey, extra string) string {
			return `{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"API_KEY","apiKey":"` + apiKey + `"}` + extra + `}`
		}
		for _, c := range []struct {
			name string
			path string
			body string
			at   []string
		}{
			{"high surrogate in a credential", "/connections", importBody(`secret-\ud800-key`, ""), []string{"credentials", "apiKey"}},
			{"low surrogate alone", "/connections", importBody(`secret-\uDC00`, ""), []string{"credentials", "apiKey"}},
			{"two high surrogates", "/connections", importBody(`\ud83d\ud83d`, ""), []string{"credentials", "apiKey"}},
			{"high surrogate at the end", "/connections", importBody(`secret\ud83d`, ""), []string{"credentials", "apiKey"}},
			{"in an array of metadata", "/connections", importBody("secret-key-1", `,"metadata":{"list":["ok","\\",{"x":"\udfff"}]}`), []string{"metadata", "list", "2", "x"}},
			{"in a member name", "/connections", importBody("secret-key-1", `,"metadata":{"a\ud800":1}`), []string{"metadata", "a\ufffd"}},
			{"in a metadata request", "/connections/metadata", `{"connection_id":"acme","provider_config_key":"github","metadata":{"k":"\ud800"}}`, []string{"metadata", "k"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				u := v.on(t)
				e := wantError(t, u.do(request{path: c.path, body: c.body}), http.StatusBadRequest, "invalid_json")
				checkFieldErrors(t, e.errors, at(c.at...).withCode("invalid_string"))
				wantError(t, u.getConn("acme", "provider_config_key=github"), http.StatusNotFound, "not_found")
			})
		}
		t.Run("a surrogate pair is the character it spells", func(t *testing.T) {
			u := v.on(t)
			got := u.importOK(importBody(`key-\ud83d\ude00-\\ud800`, `,"metadata":{"note":"\"\ud83d\ude00\""}`))
			creds, _ := got["credentials"].(map[string]any)
			if creds["apiKey"] != `key-😀-\ud800` {
				t.Errorf("apiKey %q, want %q", creds["apiKey"], `key-😀-\ud800`)
			}
			if !jsonEqual(t, got["metadata"], `{"note":"\"😀\""}`) {
				t.Errorf("metadata %s", mustJSON(got["metadata"]))
			}
		})
	})
}
