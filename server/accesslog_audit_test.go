package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestAccessLineAudit: a request logs one line, its access line, which carries what the request
// changed: a batch the counts of its items' outcomes, a delete the connection it removed.
func TestAccessLineAudit(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "stripe", "API_KEY")
		item := func(id string) string {
			return `{"provider_config_key":"stripe","connection_id":"` + id + `","credentials":{"type":"API_KEY","apiKey":"sk-audit-1234"}}`
		}
		v.importOK(item("existing"))
		steps := []struct {
			name string
			req  request
			want map[string]any // attributes of the access line
		}{
			{name: "batch", req: request{path: "/connections/batch", body: batchBody([]string{item("a"), item("existing"), item("b"),
				`{"provider_config_key":"nope","connection_id":"c","credentials":{"type":"API_KEY","apiKey":"sk-audit-1234"}}`})},
				want: map[string]any{"route": "/connections/batch", "items": 4.0, "created": 2.0, "updated": 1.0, "rejected": 1.0, "failed": 0.0}},
			{name: "delete", req: request{method: http.MethodDelete, path: "/connections/a?provider_config_key=stripe", header: sdkHeaders()},
				want: map[string]any{"method": "DELETE", "integration": "stripe", "connection_id": "a", "outcome": "deleted"}},
			{name: "import", req: request{path: "/connections", body: item("d")},
				want: map[string]any{"integration": "stripe", "connection_id": "d", "type": "API_KEY", "outcome": "created"}},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				v := v.on(t)
				before := len(v.logs.String())
				if res := v.do(st.req); res.status != http.StatusOK {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				lines := strings.Split(strings.TrimSpace(v.logs.String()[before:]), "\n")
				if len(lines) != 1 {
					t.Fatalf("%d lines for one request, want the access line alone:\n%s", len(lines), strings.Join(lines, "\n"))
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
					t.Fatal(err)
				}
				if rec["msg"] != "request" || rec["key_id"] == nil || rec["environment"] != "dev" {
					t.Errorf("line %v, want the access line with the key and environment", rec)
				}
				for k, want := range st.want {
					if rec[k] != want {
						t.Errorf("%s = %v, want %v (%v)", k, rec[k], want, rec)
					}
				}
			})
		}
	})
}
