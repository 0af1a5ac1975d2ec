package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// brokenStore authenticates one secret and fails every other call with err.
type brokenStore struct {
	noProviderCalls
	secret string
	err    error
}

func (s brokenStore) FindAPIKeyBySecretHash(_ context.Context, hash string) (store.APIKey, error) {
	if hash != store.HashSecret(s.secret) {
		return store.APIKey{}, store.ErrNotFound
	}
	return store.APIKey{ID: 1, EnvironmentID: 1, Environment: "dev", Name: "broken",
		Scopes: []string{contract.FullAccess}, SecretHash: hash}, nil
}

func (s brokenStore) FindIntegration(context.Context, int64, string) (store.Integration, error) {
	return store.Integration{}, s.err
}

func (s brokenStore) UpsertConnection(context.Context, store.UpsertConnection) (store.Connection, error) {
	return store.Connection{}, s.err
}

func (s brokenStore) Ping(context.Context) error { return s.err }

func (s brokenStore) GetConnection(context.Context, store.ReadConnection) (store.Connection, error) {
	return store.Connection{}, s.err
}

func (s brokenStore) DeleteConnection(context.Context, int64, string, string) error { return s.err }

func (s brokenStore) ListConnections(context.Context, store.ListConnections, func(store.ListedConnection) error) error {
	return s.err
}

// driverDetail is what a failing database says; it must never reach a client.
const driverDetail = "ERROR: relation \"api_keys\" does not exist (SQLSTATE 42P01) at 10.0.0.7:5432"

// TestSecurityHeaders checks the headers every response carries, success and error alike, and
// that the import's 200, whose body holds credentials, is never cached.
func TestSecurityHeaders(t *testing.T) {
	v := newEnv(t, storetest.SQLite)
	v.integration("dev", "github", "OAUTH2")
	readOnly := v.apiKey("dev", "environment:connections:read")

	limitedKey := v.apiKey("dev", contract.FullAccess)
	frozen := &clock{now: time.Now()} // the limiter refills only when the test says so
	limited, err := server.New(server.Config{Store: v.db, RateLimit: 1, Now: frozen.Now})
	if err != nil {
		t.Fatal(err)
	}
	const brokenSecret = "cp_broken-store-secret"
	newBroken := func(err error) *echo.Echo {
		e, nerr := server.New(server.Config{Store: brokenStore{secret: brokenSecret, err: err}})
		if nerr != nil {
			t.Fatal(nerr)
		}
		return e
	}
	unavailable := newBroken(fmt.Errorf("find integration: %w", store.ErrUnavailable))
	failing := newBroken(errors.New(driverDetail))

	get := func(path string) request {
		return request{method: http.MethodGet, path: path, auth: strPtr(""), contentType: strPtr("")}
	}
	bearer := func(s string) *string { return strPtr("Bearer " + s) }
	tests := []struct {
		name string
		e    *echo.Echo // nil: the env's server
		req  request
		// notInContract marks a request to no operation of openapi.yaml: its response is not
		// checked against the contract.
		notInContract bool
		wantStatus    int
		wantNoStore   bool
	}{
		{name: "import creates", req: request{body: importBody("headers", "tok-headers-1")}, wantStatus: 200, wantNoStore: true},
		{name: "import updates", req: request{body: importBody("headers", "tok-headers-2")}, wantStatus: 200, wantNoStore: true},
		{name: "get connection", req: request{method: http.MethodGet, path: "/connections/headers?provider_config_key=github"}, wantStatus: 200, wantNoStore: true},
		{name: "list connections", req: request{method: http.MethodGet, path: "/connections?limit=5"}, wantStatus: 200},
		{name: "get connection, server error", e: failing, req: request{method: http.MethodGet, path: "/connections/x?provider_config_key=github", auth: bearer(brokenSecret)}, wantStatus: 500},
		{name: "list, database unavailable", e: unavailable, req: request{method: http.MethodGet, path: "/connections", auth: bearer(brokenSecret)}, wantStatus: 503},
		{name: "health", req: get("/health"), wantStatus: 200},
		{name: "ready", req: get("/ready"), wantStatus: 200},
		{name: "metrics", req: get("/metrics"), wantStatus: 200},
		{name: "spec", req: get("/openapi.yaml"), wantStatus: 200},
		{name: "invalid body", req: request{body: `{"provider_config_key":"github","credentials":{"type":"OAUTH2"}}`}, wantStatus: 400},
		{name: "invalid json", req: request{body: `{"provider_config_key":`}, wantStatus: 400},
		{name: "query parameter", req: request{path: "/connections?x=1", body: validImport}, wantStatus: 400},
		{name: "no auth header", req: request{body: validImport, auth: strPtr("")}, wantStatus: 401},
		{name: "unknown key", req: request{body: validImport, auth: bearer("cp_unknown")}, wantStatus: 401},
		{name: "missing scope", req: request{body: validImport, auth: bearer(readOnly)}, wantStatus: 403},
		{name: "unknown integration", req: request{body: `{"provider_config_key":"nope","credentials":{"type":"OAUTH2","access_token":"t"}}`}, wantStatus: 404},
		{name: "body too large", req: request{body: `{"metadata":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}`}, wantStatus: 413},
		{name: "wrong content type", req: request{body: validImport, contentType: strPtr("text/plain")}, wantStatus: 415},
		{name: "rate limited", e: limited, req: request{body: validImport, auth: bearer(limitedKey)}, wantStatus: 429},
		{name: "server error", e: failing, req: request{body: validImport, auth: bearer(brokenSecret)}, wantStatus: 500},
		{name: "database unavailable", e: unavailable, req: request{body: validImport, auth: bearer(brokenSecret)}, wantStatus: 503},
		{name: "not ready", e: unavailable, req: get("/ready"), wantStatus: 503},
		{name: "unknown route", req: get("/nowhere"), notInContract: true, wantStatus: 404},
		{name: "method not allowed", req: request{method: http.MethodPut, path: "/health"}, notInContract: true, wantStatus: 405},
	}
	// Use up the limited key's burst of one, so that its case in the table is over the limit.
	if c := serveTimed(limited, http.MethodPost, "/connections", limitedKey, validImport); c.res.status != http.StatusOK {
		t.Fatalf("first request of the limited key: status %d: %s", c.res.status, c.res.body)
	}
	seen := map[int]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := v.on(t)
			if tt.e != nil {
				w.e = tt.e
			}
			var res response
			if tt.notInContract {
				c := serveTimed(w.e, tt.req.method, tt.req.path, "", "")
				res = c.res
			} else {
				res = w.do(tt.req)
			}
			if res.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %.300s", res.status, tt.wantStatus, res.body)
			}
			seen[res.status] = true
			for name, want := range map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "strict-origin",
			} {
				if got := res.header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("%s %q, want %q", name, got, want)
				}
			}
			if tt.wantNoStore {
				if got := res.header.Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", got)
				}
			}
			if res.status >= 500 && strings.Contains(string(res.body), "relation") {
				t.Errorf("a %d carries the driver's message: %s", res.status, res.body)
			}
		})
	}
	for _, status := range []int{200, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503} {
		if !seen[status] {
			t.Errorf("no response with status %d was checked", status)
		}
	}
}

// TestRateLimitPerKey: with RateLimit 2 each key may send a burst of 2; the next request is a 429
// too_many_requests with Retry-After, which openapi.yaml allows, while another key of the same
// environment and unauthenticated requests go on; after Retry-After the key may send again.
func TestRateLimitPerKey(t *testing.T) {
	v := newEnv(t, storetest.SQLite)
	v.integration("dev", "github", "OAUTH2")
	clk := &clock{now: time.Now()}
	e, err := server.New(server.Config{Store: v.db, RateLimit: 2, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	v.e = e
	first := v.apiKey("dev", contract.FullAccess)
	second := v.apiKey("dev", contract.FullAccess)
	steps := []struct {
		name       string
		key        string
		wantStatus int
	}{
		{"first key, 1", first, 200},
		{"first key, 2", first, 200},
		{"first key over its burst", first, 429},
		{"second key unaffected, 1", second, 200},
		{"second key unaffected, 2", second, 200},
		{"second key over its burst", second, 429},
		{"first key still limited", first, 429},
	}
	start := time.Now()
	retryAfter := 0
	for i, step := range steps {
		res := v.do(request{body: importBody(fmt.Sprintf("limit-%d", i), "tok"), auth: strPtr("Bearer " + step.key)})
		if res.status != step.wantStatus {
			t.Fatalf("%s (after %v): status %d, want %d: %s", step.name, time.Since(start).Round(time.Millisecond), res.status, step.wantStatus, res.body)
		}
		if res.status != http.StatusTooManyRequests {
			if ra := res.header.Get("Retry-After"); ra != "" {
				t.Errorf("%s: Retry-After %q on a %d", step.name, ra, res.status)
			}
			continue
		}
		wantError(t, res, http.StatusTooManyRequests, "too_many_requests")
		n, err := strconv.Atoi(res.header.Get("Retry-After"))
		if err != nil || n < 1 {
			t.Fatalf("%s: Retry-After %q, want a number of seconds ≥ 1", step.name, res.header.Get("Retry-After"))
		}
		retryAfter = n
	}
	for i := range 5 {
		if res := v.do(request{method: http.MethodGet, path: "/health", auth: strPtr(""), contentType: strPtr("")}); res.status != http.StatusOK {
			t.Fatalf("unauthenticated request %d: status %d, want 200", i, res.status)
		}
	}
	clk.Add(time.Duration(retryAfter) * time.Second)
	if res := v.do(request{body: importBody("limit-again", "tok"), auth: strPtr("Bearer " + first)}); res.status != http.StatusOK {
		t.Fatalf("first key after Retry-After: status %d, want 200: %s", res.status, res.body)
	}
}

// TestAuthFailuresIndistinguishable: a secret that never existed and one that was revoked get the
// same answer, byte for byte, so that a caller learns nothing about which secrets exist.
func TestAuthFailuresIndistinguishable(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		const ttl = 20 * time.Millisecond
		clk := &clock{now: time.Now()}
		e, err := server.New(server.Config{Store: v.db, KeyCacheTTL: ttl, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		v.e = e
		newKey := func() (store.APIKey, string) {
			key, secret, err := v.db.CreateAPIKey(ctx, "dev", "soon revoked", []string{contract.FullAccess})
			if err != nil {
				t.Fatal(err)
			}
			v.secrets.add(secret)
			return key, secret
		}
		revokedUnused, revokedUnusedSecret := newKey()
		if err := v.db.RevokeAPIKey(ctx, "dev", revokedUnused.ID); err != nil {
			t.Fatal(err)
		}
		revokedUsed, revokedUsedSecret := newKey()
		if res := v.do(request{body: validImport, auth: strPtr("Bearer " + revokedUsedSecret)}); res.status != http.StatusOK {
			t.Fatalf("key before revocation: status %d", res.status)
		}
		if err := v.db.RevokeAPIKey(ctx, "dev", revokedUsed.ID); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * ttl) // the cached keys expire

		lookalike := "cp_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		tests := []struct {
			name   string
			secret string
		}{
			{"secret that never existed", lookalike},
			{"secret without the cp_ prefix", strings.TrimPrefix(lookalike, "cp_")},
			{"key revoked before use", revokedUnusedSecret},
			{"key revoked after use", revokedUsedSecret},
		}
		var refBody []byte
		var refHeader http.Header
		for _, tt := range tests {
			res := v.on(t).do(request{body: validImport, auth: strPtr("Bearer " + tt.secret)})
			wantError(t, res, http.StatusUnauthorized, "unknown_account")
			if refBody == nil {
				refBody, refHeader = res.body, res.header
				continue
			}
			if !bytes.Equal(res.body, refBody) {
				t.Errorf("%s: body %s, want %s as for %s", tt.name, res.body, refBody, tests[0].name)
			}
			if got, want := headerShape(res.header), headerShape(refHeader); got != want {
				t.Errorf("%s: headers %s, want %s as for %s", tt.name, got, want, tests[0].name)
			}
		}
	})
}

// headerShape is a response's headers without the per-request id.
func headerShape(h http.Header) string {
	var parts []string
	for name, values := range h {
		if name == echo.HeaderXRequestID {
			continue
		}
		parts = append(parts, name+"="+strings.Join(values, ","))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// TestAPIKeySecretFormat: secrets start with cp_ so that leak scanners recognise them, carry 32
// random bytes, are all different, and only their hash is kept.
func TestAPIKeySecretFormat(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		seen := map[string]bool{}
		for i := range 16 {
			key, secret, err := db.CreateAPIKey(ctx, fmt.Sprintf("env-%d", i%2), "k", []string{contract.FullAccess})
			if err != nil {
				t.Fatal(err)
			}
			rest, ok := strings.CutPrefix(secret, "cp_")
			if !ok {
				t.Fatalf("secret %.6q… does not start with cp_", secret)
			}
			if raw, err := base64.RawURLEncoding.DecodeString(rest); err != nil || len(raw) != 32 {
				t.Errorf("secret after cp_ is not 32 bytes in unpadded base64url (%d characters)", len(rest))
			}
			if seen[secret] {
				t.Fatalf("secret %d repeats an earlier one", i)
			}
			seen[secret] = true
			if key.SecretHash != store.HashSecret(secret) || strings.Contains(key.SecretHash, rest) {
				t.Errorf("key %d keeps %q, want only the hash of its secret", key.ID, key.SecretHash)
			}
			found, err := db.FindAPIKeyBySecretHash(ctx, store.HashSecret(secret))
			if err != nil || found.ID != key.ID {
				t.Errorf("key %d is not found by the hash of its secret: %v", key.ID, err)
			}
		}
	})
}

// logCapture collects what a JSON slog handler writes, for concurrent writers.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records parses every line as a JSON object.
func (l *logCapture) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.text()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, rec)
	}
	return out
}

// TestImportAuditLine: each import logs one line, its access line, which names the key,
// environment, integration, connection, credentials type and outcome of an import that succeeds,
// and the type and outcome "rejected" of one refused; and nothing logged, on success or failure,
// holds an API key secret or a credential value that was sent.
func TestImportAuditLine(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		db := storetest.Open(t, b)
		if _, err := db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2"}); err != nil {
			t.Fatal(err)
		}
		key, secret, err := db.CreateAPIKey(ctx, "dev", "audited", []string{contract.FullAccess})
		if err != nil {
			t.Fatal(err)
		}
		_, readOnlySecret, err := db.CreateAPIKey(ctx, "dev", "read only", []string{"environment:connections:read"})
		if err != nil {
			t.Fatal(err)
		}
		logs := &logCapture{}
		logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		e, err := server.New(server.Config{Store: db, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		v := newEnvOn(t, db)
		v.e = e

		secrets := map[string]string{"API key secret": secret, "read-only key secret": readOnlySecret}
		token := func(name string) string {
			s := randomToken("tok-")
			secrets[fmt.Sprintf("%s (%d)", name, len(secrets))] = s
			return s
		}
		unknownSecret := "cp_" + randomToken("")
		secrets["unknown key secret"] = unknownSecret
		oauth := func(connID string) string {
			id := ""
			if connID != "" {
				id = fmt.Sprintf(`"connection_id":%q,`, connID)
			}
			return fmt.Sprintf(`{"provider_config_key":"github",%s"credentials":{"type":"OAUTH2","access_token":%q,"refresh_token":%q}}`,
				id, token("access token"), token("refresh token"))
		}
		requests := []struct {
			name       string
			auth       string
			body       string
			wantStatus int
			// wantOutcome is the audit line's outcome; "" for none.
			wantOutcome string
			connID      string
		}{
			{name: "create", auth: secret, body: oauth("audit-1"), wantStatus: 200, wantOutcome: "created", connID: "audit-1"},
			{name: "update", auth: secret, body: oauth("audit-1"), wantStatus: 200, wantOutcome: "updated", connID: "audit-1"},
			{name: "create with a generated id", auth: secret, body: oauth(""), wantStatus: 200, wantOutcome: "created"},
			{name: "invalid body", auth: secret, wantStatus: 400,
				body: fmt.Sprintf(`{"provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":%q,"bogus":%q}}`, token("rejected token"), token("rejected extra"))},
			{name: "auth mode mismatch", auth: secret, wantStatus: 400,
				body: fmt.Sprintf(`{"provider_config_key":"github","credentials":{"type":"API_KEY","apiKey":%q}}`, token("mismatched api key"))},
			{name: "unknown integration", auth: secret, wantStatus: 404,
				body: fmt.Sprintf(`{"provider_config_key":"gitlab","credentials":{"type":"OAUTH2","access_token":%q}}`, token("unknown integration token"))},
			{name: "unknown key", auth: unknownSecret, body: oauth("audit-unknown-key"), wantStatus: 401},
			{name: "missing scope", auth: readOnlySecret, body: oauth("audit-read-only"), wantStatus: 403},
		}
		type audit struct{ connID, outcome string }
		var want []audit
		for _, r := range requests {
			res := v.on(t).do(request{body: r.body, auth: strPtr("Bearer " + r.auth)})
			if res.status != r.wantStatus {
				t.Fatalf("%s: status %d, want %d: %s", r.name, res.status, r.wantStatus, res.body)
			}
			if r.wantOutcome == "" {
				continue
			}
			connID := r.connID
			if connID == "" {
				connID, _ = res.json(t)["connection_id"].(string)
			}
			want = append(want, audit{connID, r.wantOutcome})
		}

		var got []audit
		requestLines := 0
		for _, rec := range logs.records(t) {
			if rec["msg"] != "request" {
				t.Errorf("a line besides the access line: %v", rec)
				continue
			}
			requestLines++
			outcome, _ := rec["outcome"].(string)
			if status, _ := rec["status"].(float64); status >= 400 {
				if outcome != "rejected" || rec["type"] == nil {
					t.Errorf("access line %v of a refused import, want outcome rejected and the type", rec)
				}
				continue
			}
			connID, _ := rec["connection_id"].(string)
			got = append(got, audit{connID, outcome})
			if rec["level"] != "INFO" || rec["key_id"] != float64(key.ID) || rec["environment"] != "dev" ||
				rec["integration"] != "github" || rec["type"] != "OAUTH2" {
				t.Errorf("access line %v, want level INFO, key_id %d, environment dev, integration github, type OAUTH2", rec, key.ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("audit lines %v, want %v", got, want)
		}
		if requestLines != len(requests) {
			t.Errorf("%d request lines for %d requests: the scan below does not see every request", requestLines, len(requests))
		}
		logged := logs.text()
		for name, s := range secrets {
			if strings.Contains(logged, s) {
				t.Errorf("the log holds the %s", name)
			}
		}
		if strings.Contains(logged, "Bearer") {
			t.Errorf("the log holds an Authorization header")
		}
	})
}

func (s brokenStore) PatchConnection(context.Context, store.PatchConnection) error { return s.err }

func (s brokenStore) SetMetadata(context.Context, int64, string, []string, json.RawMessage, bool) error {
	return s.err
}
