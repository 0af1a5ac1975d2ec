package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// readyBody is /ready's 200: on PostgreSQL it tells whether the primary has a synchronous
// standby, which a test server has not.
func readyBody(b storetest.Backend) string {
	if b.Name == storetest.Postgres.Name {
		return `{"result":"ok","synchronous_standby":false}`
	}
	return `{"result":"ok"}`
}

func TestOperationalEndpoints(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		tests := []struct {
			name       string
			path       string
			header     map[string]string
			wantStatus int
			wantBody   string
			wantType   string
		}{
			{name: "health", path: "/health", wantStatus: 200, wantBody: `{"result":"ok"}`, wantType: "application/json"},
			{name: "ready", path: "/ready", wantStatus: 200, wantBody: readyBody(b), wantType: "application/json"},
			{name: "metrics", path: "/metrics", wantStatus: 200, wantBody: "go_goroutines", wantType: "text/plain"},
			{name: "spec", path: "/openapi.yaml", wantStatus: 200, wantBody: "operationId: importConnection", wantType: "application/yaml"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.do(request{method: http.MethodGet, path: tt.path, auth: strPtr(""), contentType: strPtr("")})
				if res.status != tt.wantStatus {
					t.Fatalf("status %d, want %d: %s", res.status, tt.wantStatus, res.body)
				}
				if !strings.Contains(string(res.body), tt.wantBody) {
					t.Errorf("body %.200s does not contain %q", res.body, tt.wantBody)
				}
				if got := res.header.Get("Content-Type"); !strings.HasPrefix(got, tt.wantType) {
					t.Errorf("Content-Type %q, want %q", got, tt.wantType)
				}
			})
		}
	})
}

func TestRequestID(t *testing.T) {
	v := newEnv(t, storetest.SQLite)
	tests := []struct {
		name string
		sent string
		keep bool
	}{
		{"well-formed id kept", "req-1.a:b_c", true},
		{"too long replaced", strings.Repeat("a", 129), false},
		{"bad characters replaced", "a b/c", false},
		{"none generated", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/health", "/connections"} { // a success and an error
				method := http.MethodGet
				if path == "/connections" {
					method = http.MethodPost
				}
				req := httptest.NewRequest(method, path, nil)
				if tt.sent != "" {
					req.Header.Set("X-Request-Id", tt.sent)
				}
				rec := httptest.NewRecorder()
				v.e.ServeHTTP(rec, req)
				res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
				v.checkContract(req, res)
				got := res.header.Get("X-Request-Id")
				if tt.keep && got != tt.sent {
					t.Errorf("%s: X-Request-Id %q, want %q", path, got, tt.sent)
				}
				if !tt.keep && (got == "" || got == tt.sent) {
					t.Errorf("%s: X-Request-Id %q, want a generated id", path, got)
				}
			}
		})
	}
}

func TestMetricsFollowImports(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		body := `{"provider_config_key":"github","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"t"}}`
		for _, want := range []int{200, 200, 400} {
			b := body
			if want == 400 {
				b = `{"provider_config_key":"github","credentials":{"type":"OAUTH2"}}`
			}
			if res := v.do(request{body: b}); res.status != want {
				t.Fatalf("import: status %d, want %d: %s", res.status, want, res.body)
			}
		}
		res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")})
		for _, want := range []string{
			`credport_imports_total{outcome="created",type="OAUTH2"} 1`,
			`credport_imports_total{outcome="updated",type="OAUTH2"} 1`,
			`credport_imports_total{outcome="rejected",type="OAUTH2"} 1`,
			`credport_http_requests_total{method="POST",route="/connections",status="200"} 2`,
			`credport_http_requests_total{method="POST",route="/connections",status="400"} 1`,
		} {
			if !strings.Contains(string(res.body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
}

func TestMetricsElsewhere(t *testing.T) {
	db := storetest.Open(t, storetest.SQLite)
	e, err := server.New(server.Config{Store: db, MetricsElsewhere: true})
	if err != nil {
		t.Fatal(err)
	}
	v := newEnv(t, storetest.SQLite)
	v.e = e
	if res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")}); res.status != http.StatusNotFound {
		t.Fatalf("status %d, want 404", res.status)
	}
}

func TestReadyFollowsDatabase(t *testing.T) {
	b := storetest.Postgres // a server that can go away
	proxy, dbURL := storetest.NewProxy(t, b.NewURL(t))
	db := storetest.OpenURL(t, dbURL)
	v := newEnv(t, storetest.SQLite)
	e, err := server.New(server.Config{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	v.e = e
	ready := func() int {
		return v.do(request{method: http.MethodGet, path: "/ready", auth: strPtr(""), contentType: strPtr("")}).status
	}
	for _, step := range []struct {
		name   string
		act    func()
		status int
	}{
		{"up", func() {}, 200},
		{"database gone", proxy.Cut, 503},
		{"database back", proxy.Restore, 200},
	} {
		step.act()
		if got := ready(); got != step.status {
			t.Fatalf("%s: /ready answered %d, want %d", step.name, got, step.status)
		}
	}
}
