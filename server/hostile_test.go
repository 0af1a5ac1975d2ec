package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestHostileBodies sends every body of testdata/hostile and expects the status and error code its
// file name starts with ("400-invalid_json-..."), on both databases, never a 5xx.
func TestHostileBodies(t *testing.T) {
	files, err := filepath.Glob("testdata/hostile/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no hostile corpus: %v", err)
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(name, func(t *testing.T) {
				parts := strings.SplitN(name, "-", 3)
				wantStatus, err := strconv.Atoi(parts[0])
				if err != nil || len(parts) < 3 {
					t.Fatalf("corpus file %s is not named <status>-<code>-<what>", name)
				}
				body, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				res := v.on(t).do(request{body: string(body)})
				if res.status != wantStatus {
					t.Fatalf("status %d, want %d: %.300s", res.status, wantStatus, res.body)
				}
				if got := errorCode(t, res); got != parts[1] {
					t.Errorf("code %q, want %q: %.300s", got, parts[1], res.body)
				}
			})
		}
		t.Run("body over the limit", func(t *testing.T) {
			body := `{"provider_config_key":"github","metadata":{"pad":"` + strings.Repeat("x", 2<<20) + `"},"credentials":{"type":"NONE"}}`
			res := v.on(t).do(request{body: body})
			if res.status != http.StatusRequestEntityTooLarge || errorCode(t, res) != "payload_too_large" {
				t.Fatalf("status %d %s, want 413 payload_too_large", res.status, res.body)
			}
		})
	})
}

// FuzzImport drives arbitrary bodies through the whole request path. Whatever it is sent, the
// API answers without a 5xx or a panic, and with a response that openapi.yaml allows.
func FuzzImport(f *testing.F) {
	files, _ := filepath.Glob("testdata/hostile/*")
	for _, file := range files {
		// Large seeds make the fuzzer spend its time minimizing; the corpus test covers them.
		if data, err := os.ReadFile(file); err == nil && len(data) <= 4096 {
			f.Add(data)
		}
	}
	for _, seed := range []string{
		validImport,
		`{"provider_config_key":"github","connection_id":"c","credentials":{"type":"OAUTH2","access_token":"a","refresh_token":"r","expires_at":"2030-01-01T00:00:00Z"},"metadata":{"a":[1,{"b":null}]},"tags":{"Env":"x"},"end_user":{"id":"u","email":"a@b.co","tags":{"k":"v"}}}`,
		`{"provider_config_key":"github","credentials":{"type":"TBA","token_id":"a","token_secret":"b"},"connection_config":{"accountId":"1"}}`,
		`{"provider_config_key":"github","credentials":{"type":"BASIC","username":"","password":""}}`,
	} {
		f.Add([]byte(seed))
	}
	db := storetest.Open(f, storetest.SQLite)
	e, err := server.New(server.Config{Store: db})
	if err != nil {
		f.Fatal(err)
	}
	spec, err := gen.GetSpec()
	if err != nil {
		f.Fatal(err)
	}
	spec.Servers = nil
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		f.Fatal(err)
	}
	_, key, err := db.CreateAPIKey(context.Background(), "dev", "fuzz", []string{contract.FullAccess})
	if err != nil {
		f.Fatal(err)
	}
	for key, mode := range map[string]string{"github": "OAUTH2", "basic": "BASIC", "tba": "TBA"} {
		in := store.NewIntegration{Environment: "dev", UniqueKey: key, Provider: key, AuthMode: mode}
		if _, err := db.CreateIntegration(context.Background(), in); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v := &env{t: t, db: db, e: e, router: router, key: key}
		req := httptest.NewRequest(http.MethodPost, "/connections", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.Bytes())
		}
		v.checkContract(req, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()})
	})
}
