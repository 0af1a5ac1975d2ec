package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/store/storetest"
)

func TestPatchConnection(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		clk := &clock{now: mustTime(t, "2025-01-01T10:00:00Z")}
		v.db.Now = clk.Now
		v.integration("dev", "github", "OAUTH2")
		v.importOK(`{"provider_config_key":"github","connection_id":"acme","credentials":{"type":"OAUTH2","access_token":"patch-token-1234"},
			"tags":{"team":"core"},"metadata":{"plan":"pro"},"connection_config":{"org":"acme"}}`)
		updater := v.on(t)
		updater.key = v.apiKey("dev", "environment:connections:update")
		patch := func(api *env, id, pck, body string) response {
			return api.do(request{method: http.MethodPatch, path: "/connections/" + id + "?provider_config_key=" + pck, body: body, header: sdkHeaders()})
		}
		get := func(t *testing.T) map[string]any {
			res := v.on(t).getConn("acme", "provider_config_key=github")
			if res.status != http.StatusOK {
				t.Fatalf("get: %d %s", res.status, res.body)
			}
			return decodeObject(t, res.body)
		}
		ok := func(t *testing.T, body string) map[string]any {
			t.Helper()
			clk.Add(time.Minute)
			res := patch(updater.on(t), "acme", "github", body)
			if res.status != http.StatusOK || !jsonEqual(t, decodeObject(t, res.body), `{"success":true}`) {
				t.Fatalf("patch %s: %d %s", body, res.status, res.body)
			}
			return get(t)
		}
		t.Run("{} changes nothing", func(t *testing.T) {
			got := ok(t, `{}`)
			if !jsonEqual(t, got["tags"], `{"team":"core"}`) || got["webhook_url_override"] != nil {
				t.Errorf("%v", got)
			}
		})
		t.Run("tags are replaced", func(t *testing.T) {
			got := ok(t, `{"tags":{"Plan":"free"}}`)
			if !jsonEqual(t, got["tags"], `{"plan":"free"}`) {
				t.Errorf("tags %s", mustJSON(got["tags"]))
			}
			if !jsonEqual(t, got["metadata"], `{"plan":"pro"}`) || !jsonEqual(t, got["connection_config"], `{"org":"acme"}`) {
				t.Errorf("metadata or connection_config changed: %v", got)
			}
			if !utcTime(t, "updated_at", got["updated_at"]).Equal(clk.Now()) {
				t.Errorf("updated_at %v", got["updated_at"])
			}
		})
		t.Run("end_user replaces the end user and the tags, request tags win", func(t *testing.T) {
			got := ok(t, `{"end_user":{"id":"u-9","email":"eve@acme.test","tags":{"Role":"admin"}},"tags":{"role":"owner"}}`)
			if !jsonEqual(t, got["tags"], `{"end_user_id":"u-9","end_user_email":"eve@acme.test","role":"owner"}`) {
				t.Errorf("tags %s", mustJSON(got["tags"]))
			}
			eu, _ := got["end_user"].(map[string]any)
			if eu["id"] != "u-9" || eu["email"] != "eve@acme.test" {
				t.Errorf("end_user %v", got["end_user"])
			}
		})
		t.Run("tags {} clears them", func(t *testing.T) {
			if got := ok(t, `{"tags":{}}`); !jsonEqual(t, got["tags"], `{}`) {
				t.Errorf("tags %s", mustJSON(got["tags"]))
			}
		})
		t.Run("webhook_url_override set and cleared", func(t *testing.T) {
			if got := ok(t, `{"webhook_url_override":"https://hooks.acme.test/nango"}`); got["webhook_url_override"] != "https://hooks.acme.test/nango" {
				t.Errorf("webhook_url_override %v", got["webhook_url_override"])
			}
			if got := ok(t, `{"webhook_url_override":""}`); got["webhook_url_override"] != nil {
				t.Errorf("webhook_url_override %v, want null", got["webhook_url_override"])
			}
		})
		for _, tt := range []struct{ name, body, message string }{
			{"nango.dev", `{"webhook_url_override":"https://api.nango.dev/hook"}`, "Webhook URLs cannot point to Nango's domain (nango.dev)."},
			{"loopback", `{"webhook_url_override":"http://127.0.0.1:8080/hook"}`, "This webhook URL is not allowed."},
			{"private", `{"webhook_url_override":"http://10.1.2.3/hook"}`, "This webhook URL is not allowed."},
			{"localhost", `{"webhook_url_override":"http://localhost/hook"}`, "This webhook URL is not allowed."},
			{"not a URL", `{"webhook_url_override":"hooks"}`, ""},
		} {
			t.Run("webhook "+tt.name, func(t *testing.T) {
				e := wantError(t, patch(updater.on(t), "acme", "github", tt.body), http.StatusBadRequest, "invalid_body")
				checkErrorsAt(t, e.errors, "webhook_url_override")
				if tt.message != "" && e.errors[0].Message != tt.message {
					t.Errorf("message %q", e.errors[0].Message)
				}
			})
		}
		t.Run("metadata cannot be patched", func(t *testing.T) {
			e := wantError(t, patch(updater.on(t), "acme", "github", `{"metadata":{"a":1}}`), http.StatusBadRequest, "invalid_body")
			checkFieldErrors(t, e.errors, unknownKey("metadata"))
		})
		t.Run("bad tag key", func(t *testing.T) {
			wantError(t, patch(updater.on(t), "acme", "github", `{"tags":{"1x":"y"}}`), http.StatusBadRequest, "invalid_body")
		})
		t.Run("unknown integration", func(t *testing.T) {
			e := wantError(t, patch(updater.on(t), "acme", "nope", `{}`), http.StatusBadRequest, "unknown_provider_config")
			if e.message != "Provider does not exists" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("unknown connection", func(t *testing.T) {
			e := wantError(t, patch(updater.on(t), "other", "github", `{"tags":{"a":"b"}}`), http.StatusNotFound, "not_found")
			if e.message != "Failed to find connection" {
				t.Errorf("message %q", e.message)
			}
		})
		t.Run("without the update scope", func(t *testing.T) {
			reader := v.on(t)
			reader.key = v.apiKey("dev", scopeRead, "environment:connections:create")
			wantError(t, patch(reader, "acme", "github", `{}`), http.StatusForbidden, "forbidden")
		})
	})
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		for _, id := range []string{"a", "b"} {
			v.importOK(`{"provider_config_key":"github","connection_id":"` + id + `","credentials":{"type":"OAUTH2","access_token":"meta-token-` + id + `-1234"},"metadata":{"keep":true,"n":1}}`)
		}
		updater := v.on(t)
		updater.key = v.apiKey("dev", "environment:connections:update")
		send := func(api *env, method, body string) response {
			return api.do(request{method: method, path: "/connections/metadata", body: body, header: sdkHeaders()})
		}
		metadata := func(t *testing.T, id string) any {
			res := v.on(t).getConn(id, "provider_config_key=github")
			return decodeObject(t, res.body)["metadata"]
		}
		t.Run("PATCH merges shallowly, one id", func(t *testing.T) {
			body := `{"connection_id":"a","provider_config_key":"github","metadata":{"n":2,"nested":{"x":1}}}`
			res := send(updater.on(t), http.MethodPatch, body)
			if res.status != http.StatusOK || !jsonEqual(t, decodeObject(t, res.body), body) {
				t.Fatalf("%d %s", res.status, res.body)
			}
			if got := metadata(t, "a"); !jsonEqual(t, got, `{"keep":true,"n":2,"nested":{"x":1}}`) {
				t.Errorf("a: %s", mustJSON(got))
			}
			send(updater.on(t), http.MethodPatch, `{"connection_id":"a","provider_config_key":"github","metadata":{"nested":{"y":2},"z":null}}`)
			if got := metadata(t, "a"); !jsonEqual(t, got, `{"keep":true,"n":2,"nested":{"y":2},"z":null}`) {
				t.Errorf("a after second merge: %s", mustJSON(got))
			}
		})
		t.Run("POST replaces, a list of ids", func(t *testing.T) {
			body := `{"connection_id":["a","b"],"provider_config_key":"github","metadata":{"only":"this"}}`
			res := send(updater.on(t), http.MethodPost, body)
			if res.status != http.StatusCreated || !jsonEqual(t, decodeObject(t, res.body), body) {
				t.Fatalf("%d %s", res.status, res.body)
			}
			for _, id := range []string{"a", "b"} {
				if got := metadata(t, id); !jsonEqual(t, got, `{"only":"this"}`) {
					t.Errorf("%s: %s", id, mustJSON(got))
				}
			}
		})
		t.Run("a missing id: 404, nothing written", func(t *testing.T) {
			for _, method := range []string{http.MethodPost, http.MethodPatch} {
				res := send(updater.on(t), method, `{"connection_id":["a","missing","b"],"provider_config_key":"github","metadata":{"x":1}}`)
				e := wantError(t, res, http.StatusNotFound, "unknown_connection")
				want := "Connection with connection id missing and provider config key github not found. Import it with POST /connections (or credport import), or list the connections with GET /connections. No actions were taken on any of the connections as a result of this failure."
				if e.message != want {
					t.Errorf("message %q", e.message)
				}
				for _, id := range []string{"a", "b"} {
					if got := metadata(t, id); !jsonEqual(t, got, `{"only":"this"}`) {
						t.Errorf("%s %s: %s", method, id, mustJSON(got))
					}
				}
			}
			e := wantError(t, send(updater.on(t), http.MethodPost, `{"connection_id":"zz","provider_config_key":"github","metadata":{}}`), http.StatusNotFound, "unknown_connection")
			if strings.Contains(e.message, "No actions") {
				t.Errorf("one id, message %q", e.message)
			}
			wantError(t, send(updater.on(t), http.MethodPost, `{"connection_id":"a","provider_config_key":"gitlab","metadata":{}}`), http.StatusNotFound, "unknown_connection")
		})
		t.Run("POST {} clears", func(t *testing.T) {
			send(updater.on(t), http.MethodPost, `{"connection_id":"b","provider_config_key":"github","metadata":{}}`)
			if got := metadata(t, "b"); !jsonEqual(t, got, `{}`) {
				t.Errorf("b: %s", mustJSON(got))
			}
		})
		for _, tt := range []struct {
			name, body string
			at         fieldError
		}{
			{"empty connection_id", `{"connection_id":"","provider_config_key":"github","metadata":{}}`, at("connection_id")},
			{"missing metadata", `{"connection_id":"a","provider_config_key":"github"}`, at("metadata")},
			{"metadata not an object", `{"connection_id":"a","provider_config_key":"github","metadata":[1]}`, at("metadata")},
			{"unknown key", `{"connection_id":"a","provider_config_key":"github","metadata":{},"x":1}`, unknownKey("x")},
		} {
			t.Run("400 for "+tt.name, func(t *testing.T) {
				e := wantError(t, send(updater.on(t), http.MethodPost, tt.body), http.StatusBadRequest, "invalid_body")
				if len(e.errors) == 0 {
					t.Fatalf("no field errors")
				}
				found := false
				for _, d := range e.errors {
					found = found || tt.at.matches(d)
				}
				if !found {
					t.Errorf("no error %s in %s", tt.at, formatDetails(e.errors))
				}
			})
		}
		t.Run("any query parameter", func(t *testing.T) {
			res := updater.on(t).do(request{method: http.MethodPatch, path: "/connections/metadata?x=1", body: `{"connection_id":"a","provider_config_key":"github","metadata":{}}`})
			wantError(t, res, http.StatusBadRequest, "invalid_query_params")
		})
		t.Run("without the update scope", func(t *testing.T) {
			reader := v.on(t)
			reader.key = v.apiKey("dev", scopeRead)
			wantError(t, send(reader, http.MethodPost, `{"connection_id":"a","provider_config_key":"github","metadata":{}}`), http.StatusForbidden, "forbidden")
		})
	})
}

// TestMetadataConcurrentMerges checks that merges of one connection running together all land:
// each reads and writes the metadata under the row's lock.
func TestMetadataConcurrentMerges(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		v.importOK(`{"provider_config_key":"github","connection_id":"a","credentials":{"type":"OAUTH2","access_token":"merge-token-1234"}}`)
		const n = 16
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := v.do(request{method: http.MethodPatch, path: "/connections/metadata",
					body: fmt.Sprintf(`{"connection_id":"a","provider_config_key":"github","metadata":{"k%d":%d}}`, i, i)})
				statuses[i] = res.status
			}()
		}
		wg.Wait()
		for i, s := range statuses {
			if s != http.StatusOK {
				t.Errorf("merge %d: status %d", i, s)
			}
		}
		got := decodeObject(t, v.getConn("a", "provider_config_key=github").body)["metadata"].(map[string]any)
		if len(got) != n {
			t.Errorf("%d keys after %d merges: %v", len(got), n, got)
		}
	})
}
