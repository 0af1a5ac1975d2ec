package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// refreshEnv is an API whose integration "oauth" renews its tokens at a fake provider.
type refreshEnv struct {
	*env
	provider *providertest.Provider
	// readKey may read connections but not their credentials.
	readKey string
	// integration is the unique key the helpers import into and read from: "oauth" unless a
	// test says otherwise.
	integration string
}

func newRefreshEnv(t *testing.T, b storetest.Backend, cfg server.Config) refreshEnv {
	t.Helper()
	return newRefreshEnvOn(t, storetest.Open(t, b), cfg)
}

// newRefreshEnvOn is newRefreshEnv on an open store. When cfg has a clock, the store uses it too.
func newRefreshEnvOn(t *testing.T, db *store.DB, cfg server.Config) refreshEnv {
	t.Helper()
	if cfg.Now != nil {
		db.Now = cfg.Now
	}
	v := newEnvWith(t, db, cfg)
	p := providertest.New(t, "client-id-1", "client-secret-of-the-integration")
	v.secrets.add(p.ClientSecret)
	_, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
		Environment: "dev", UniqueKey: "oauth", Provider: "fake", AuthMode: "OAUTH2",
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, TokenURL: p.TokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.logTokens(t, p)
	return refreshEnv{env: v, provider: p, readKey: v.apiKey("dev", scopeRead), integration: "oauth"}
}

// logTokens makes every token p issued during t a secret the server must not log. Call it after
// the env is made: the cleanup then runs before the harness's log check.
func (v *env) logTokens(t *testing.T, p *providertest.Provider) {
	t.Cleanup(func() {
		for _, tok := range p.Issued() {
			v.secrets.add(tok)
		}
	})
}

// now is the server's clock.
func (v refreshEnv) now() time.Time {
	if v.db.Now != nil {
		return v.db.Now()
	}
	return time.Now()
}

// importExpiring imports connection id with a token that expired and a refresh token the
// provider accepts, and returns that refresh token.
func (v refreshEnv) importExpiring(id string) string {
	v.t.Helper()
	return v.importExpiringAt(id, v.now().Add(-time.Minute))
}

// importExpiringAt imports connection id of "oauth" with access token old-access-token-<id>
// expiring at exp and a refresh token the provider accepts, and returns that refresh token.
func (v refreshEnv) importExpiringAt(id string, exp time.Time) string {
	v.t.Helper()
	rt := v.provider.IssueRefreshToken()
	v.importOK(fmt.Sprintf(`{"provider_config_key":%q,"connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"old-access-token-%s","refresh_token":%q,"expires_at":%q}}`,
		v.integration, id, id, rt, exp.UTC().Format(time.RFC3339)))
	return rt
}

// read is GET /connections/{id} of integration "oauth" with the env's full-access key and the
// given extra query.
func (v refreshEnv) read(id, query string) response {
	v.t.Helper()
	q := "provider_config_key=" + v.integration
	if query != "" {
		q += "&" + query
	}
	return v.getConn(id, q)
}

// on is v reporting to t.
func (v refreshEnv) on(t *testing.T) refreshEnv {
	v.env = v.env.on(t)
	return v
}

// credentials requires res to be a 200 read and returns its credentials.
func credentials(t *testing.T, res response) map[string]any {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", res.status, res.body)
	}
	creds, ok := decodeObject(t, res.body)["credentials"].(map[string]any)
	if !ok {
		t.Fatalf("no credentials object: %s", res.body)
	}
	return creds
}

// connErrors is the errors list of a connection as a key without read_credentials sees it,
// which never refreshes.
func (v refreshEnv) connErrors(id string) string {
	v.t.Helper()
	c := v.env.on(v.t)
	c.key = v.readKey
	res := c.getConn(id, "provider_config_key="+v.integration)
	if res.status != http.StatusOK {
		v.t.Fatalf("read-only read of %s: status %d: %s", id, res.status, res.body)
	}
	return mustJSON(decodeObject(v.t, res.body)["errors"])
}

// wantCalls requires the provider to have received want calls.
func (v refreshEnv) wantCalls(t *testing.T, want int, when string) {
	t.Helper()
	if got := v.provider.Calls(); got != want {
		t.Errorf("%s: provider calls %d, want %d", when, got, want)
	}
}

// refreshMetric is credport_token_refreshes_total{trigger,outcome} as GET /metrics shows it.
func (v *env) refreshMetric(trigger, outcome string) float64 {
	v.t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")})
	if res.status != http.StatusOK {
		v.t.Fatalf("metrics: status %d", res.status)
	}
	prefix := fmt.Sprintf(`credport_token_refreshes_total{outcome=%q,trigger=%q} `, outcome, trigger)
	for _, line := range strings.Split(string(res.body), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				v.t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// metricValue is the value of a metric without labels as GET /metrics shows it, 0 if absent.
func (v *env) metricValue(name string) float64 {
	v.t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")})
	if res.status != http.StatusOK {
		v.t.Fatalf("metrics: status %d", res.status)
	}
	for _, line := range strings.Split(string(res.body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				v.t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// storedCredentials reads what the store holds for a connection of "oauth", without the API.
func (v refreshEnv) storedCredentials(id string) map[string]any {
	v.t.Helper()
	in, err := v.db.FindIntegration(context.Background(), v.envID(), v.integration)
	if err != nil {
		v.t.Fatal(err)
	}
	c, err := v.db.GetConnection(context.Background(), store.ReadConnection{
		EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id, WithCredentials: true})
	if err != nil {
		v.t.Fatal(err)
	}
	return decodeObject(v.t, c.Credentials)
}

func (v refreshEnv) envID() int64 {
	v.t.Helper()
	id, err := v.db.EnsureEnvironment(context.Background(), "dev")
	if err != nil {
		v.t.Fatal(err)
	}
	return id
}

// hasRefreshTokenKey tells whether a decoded JSON value names a refresh token anywhere.
func hasRefreshTokenKey(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if strings.EqualFold(strings.NewReplacer("_", "", "-", "").Replace(k), "refreshtoken") || hasRefreshTokenKey(child) {
				return true
			}
		}
	case []any:
		for _, child := range t {
			if hasRefreshTokenKey(child) {
				return true
			}
		}
	}
	return false
}

// TestRefreshOnRead: a read with read_credentials renews a token that expires within the window
// (15 minutes) or when forced, and leaves others alone.
func TestRefreshOnRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		expiresIn time.Duration
		query     string
		readOnly  bool // a key without read_credentials
		want      bool // a provider call and a new token
	}{
		{name: "expired", expiresIn: -time.Hour, want: true},
		{name: "expires within the window", expiresIn: 5 * time.Minute, want: true},
		{name: "expires at the end of the window", expiresIn: 14*time.Minute + 50*time.Second, want: true},
		{name: "expires after the window", expiresIn: 16 * time.Minute, want: false},
		{name: "fresh", expiresIn: 24 * time.Hour, want: false},
		{name: "fresh with force_refresh=false", expiresIn: 24 * time.Hour, query: "force_refresh=false", want: false},
		{name: "fresh with force_refresh=true", expiresIn: 24 * time.Hour, query: "force_refresh=true", want: true},
		{name: "expired, key without read_credentials", expiresIn: -time.Hour, readOnly: true, want: false},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{})
		renewed := 0
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := v.on(t)
				id := fmt.Sprintf("c%d", i)
				v.importExpiringAt(id, time.Now().Add(tt.expiresIn))
				before := v.provider.Calls()
				reader := v.env
				if tt.readOnly {
					reader = v.env.on(t)
					reader.key = v.readKey
				}
				res := reader.getConn(id, "provider_config_key=oauth&"+tt.query)
				creds := credentials(t, res)
				calls := v.provider.Calls() - before
				if !tt.want {
					if calls != 0 {
						t.Errorf("provider calls %d, want none", calls)
					}
					if at, ok := creds["access_token"]; ok && at != "old-access-token-"+id {
						t.Errorf("access_token %v, want the imported one", at)
					}
					return
				}
				renewed++
				if calls != 1 {
					t.Errorf("provider calls %d, want 1", calls)
				}
				at, _ := creds["access_token"].(string)
				if !strings.HasPrefix(at, "at-") {
					t.Fatalf("access_token %q, want one the provider issued: %s", at, res.body)
				}
				if exp := utcTime(t, "expires_at", creds["expires_at"]); exp.Before(time.Now().Add(59*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
					t.Errorf("expires_at %v, want the provider's hour from now", exp)
				}
				raw, _ := creds["raw"].(map[string]any)
				if raw["access_token"] != at || raw["token_type"] != "bearer" {
					t.Errorf("raw %s, want the provider's answer", mustJSON(raw))
				}
				if creds["type"] != "OAUTH2" {
					t.Errorf("type %v", creds["type"])
				}
				// The renewed token is what is stored now: a second read does not renew it again.
				again := credentials(t, v.read(id, ""))
				if again["access_token"] != at || v.provider.Calls()-before != 1 {
					t.Errorf("second read: access_token %v, provider calls %d; want %s and no new call",
						again["access_token"], v.provider.Calls()-before, at)
				}
				if got := v.connErrors(id); got != "[]" {
					t.Errorf("errors %s, want []", got)
				}
			})
		}
		if got := v.refreshMetric("read", "renewed"); got != float64(renewed) {
			t.Errorf(`credport_token_refreshes_total{trigger="read",outcome="renewed"} = %v, want %d`, got, renewed)
		}
		logs := v.logs.String()
		if got := strings.Count(logs, `"outcome":"refreshed"`); got != renewed {
			t.Errorf("want the access line of each read that renewed (%d) to say so, got %d:\n%s", renewed, got, logs)
		}
		if strings.Contains(logs, `"msg":"token refresh"`) {
			t.Errorf("a read's refresh logged a line besides its access line:\n%s", logs)
		}
	})
}

// TestRefreshTokenRotation: a rotated refresh token is stored and used next; one the provider
// keeps survives the refresh. Neither shows without refresh_token=true.
func TestRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{})
		for _, rotate := range []bool{true, false} {
			name := map[bool]string{true: "rotated", false: "kept"}[rotate]
			t.Run(name, func(t *testing.T) {
				v := v.on(t)
				v.provider.SetRotate(rotate)
				rt := v.importExpiring(name)
				before := v.provider.Calls()

				res := v.read(name, "")
				creds := credentials(t, res)
				if !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
					t.Fatalf("not refreshed: %s", res.body)
				}
				if hasRefreshTokenKey(decodeAny(string(res.body))) || strings.Contains(string(res.body), "rt-") {
					t.Errorf("default read after a refresh shows a refresh token: %s", res.body)
				}

				res = v.read(name, "refresh_token=true")
				creds = credentials(t, res)
				stored, _ := creds["refresh_token"].(string)
				raw, _ := creds["raw"].(map[string]any)
				if rotate {
					if stored == "" || stored == rt {
						t.Fatalf("refresh_token %q, want the rotated one, not %q", stored, rt)
					}
					if v.provider.Valid(rt) || !v.provider.Valid(stored) {
						t.Errorf("the provider holds the old token valid %v, the stored one valid %v; want false, true",
							v.provider.Valid(rt), v.provider.Valid(stored))
					}
					if raw["refresh_token"] != stored {
						t.Errorf("raw.refresh_token %v, want %s", raw["refresh_token"], stored)
					}
				} else {
					if stored != rt {
						t.Errorf("refresh_token %q, want the kept %q", stored, rt)
					}
					if _, ok := raw["refresh_token"]; ok {
						t.Errorf("raw %s: the provider sent no refresh token", mustJSON(raw))
					}
				}

				// The next refresh uses the stored token and succeeds.
				res = v.read(name, "force_refresh=true&refresh_token=true")
				next := credentials(t, res)
				if v.provider.Calls()-before != 2 {
					t.Errorf("provider calls %d, want 2", v.provider.Calls()-before)
				}
				if next["access_token"] == creds["access_token"] {
					t.Errorf("the forced refresh did not renew: %s", res.body)
				}
				if nextRT, _ := next["refresh_token"].(string); rotate == (nextRT == stored) || !v.provider.Valid(nextRT) {
					t.Errorf("after the second refresh refresh_token %q (before %q), valid %v", nextRT, stored, v.provider.Valid(nextRT))
				}
				if got := v.connErrors(name); got != "[]" {
					t.Errorf("errors %s, want []", got)
				}
			})
		}
	})
}

// readConcurrently sends n reads of path at once, spread over servers, and returns the answers,
// each checked against openapi.yaml.
func readConcurrently(t *testing.T, v *env, servers []*echo.Echo, n int, path string) []response {
	t.Helper()
	reqs := make([]*http.Request, n)
	out := make([]response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		reqs[i] = httptest.NewRequest(http.MethodGet, path, nil)
		reqs[i].Header.Set("Authorization", "Bearer "+v.key)
		wg.Go(func() {
			<-start
			rec := httptest.NewRecorder()
			servers[i%len(servers)].ServeHTTP(rec, reqs[i])
			out[i] = response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		})
	}
	close(start)
	wg.Wait()
	for i := range out {
		v.on(t).checkContract(reqs[i], out[i])
	}
	return out
}

// TestRefreshConcurrentReads: 50 reads of an expired token, all at once, make one provider call
// and all get the new token, within one server and across two servers on one PostgreSQL.
func TestRefreshConcurrentReads(t *testing.T) {
	t.Parallel()
	const n = 50
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		v := newRefreshEnvOn(t, storetest.OpenURL(t, dbURL), server.Config{})
		// The provider answers slowly, so that every read arrives while the refresh runs, and
		// rotates, so that a second refresh with the first token would be refused.
		v.provider.SetDelay(300 * time.Millisecond)
		v.provider.SetRotate(true)
		tests := []struct {
			name    string
			servers int
		}{{"one server", 1}, {"two servers", 2}}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.servers > 1 && b.Name != "postgres" {
					t.Skip("servers share a database only on PostgreSQL")
				}
				v := v.on(t)
				servers := []*echo.Echo{v.e}
				if tt.servers > 1 {
					other := newEnvWith(t, storetest.OpenURL(t, dbURL), server.Config{})
					other.secrets = v.secrets
					other.logTokens(t, v.provider)
					servers = append(servers, other.e)
				}
				id := strings.ReplaceAll(tt.name, " ", "-")
				rt := v.importExpiring(id)
				before := v.provider.Calls()
				responses := readConcurrently(t, v.env, servers, n, "/connections/"+id+"?provider_config_key=oauth")
				calls := v.provider.Calls() - before
				t.Logf("%d concurrent reads on %d server(s): %d provider call(s)", n, tt.servers, calls)
				if calls != 1 {
					t.Errorf("provider calls %d, want exactly 1", calls)
				}
				var token any
				for i, res := range responses {
					creds := credentials(t, res)
					if i == 0 {
						token = creds["access_token"]
					}
					if creds["access_token"] != token || creds["access_token"] == "old-access-token-"+id {
						t.Errorf("read %d: access_token %v, want the one new token %v", i, creds["access_token"], token)
					}
				}
				stored := v.storedCredentials(id)
				if stored["access_token"] != token || stored["refresh_token"] == rt || !v.provider.Valid(fmt.Sprint(stored["refresh_token"])) {
					t.Errorf("stored access_token %v refresh token valid %v; want %v and the valid rotated one",
						stored["access_token"], v.provider.Valid(fmt.Sprint(stored["refresh_token"])), token)
				}
			})
		}
	})
}

// TestRefreshRefused: a refusal answers 400 with the provider's reason and marks the connection;
// reads back off, forced ones do not, five refusals exhaust it, and a re-import clears it all.
func TestRefreshRefused(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
		v := newRefreshEnv(t, b, server.Config{Now: clk.Now, RefreshBackoff: 30 * time.Second})
		v.importExpiring("c")
		v.provider.SetMode(providertest.InvalidGrant)

		refused := func(t *testing.T, query string, wantCalls int) {
			t.Helper()
			e := wantError(t, v.on(t).read("c", query), http.StatusBadRequest, "invalid_credentials")
			if !strings.Contains(e.message, "invalid_grant") || !strings.Contains(e.message, "The refresh token is invalid or revoked") {
				t.Errorf("message %q, want the provider's error and error_description", e.message)
			}
			v.wantCalls(t, wantCalls, "refused read")
		}
		blocked := func(t *testing.T, query string, wantCalls int, wantMessage string) {
			t.Helper()
			e := wantError(t, v.on(t).read("c", query), http.StatusFailedDependency, "invalid_credentials")
			if !strings.Contains(e.message, wantMessage) {
				t.Errorf("message %q, want it to contain %q", e.message, wantMessage)
			}
			v.wantCalls(t, wantCalls, "blocked read")
		}

		refused(t, "", 1)
		errs := v.on(t).connErrors("c")
		var list []map[string]any
		if d := decodeAny(errs); d != nil {
			for _, e := range d.([]any) {
				list = append(list, e.(map[string]any))
			}
		}
		if len(list) != 1 || list[0]["type"] != "auth" || fmt.Sprint(list[0]["log_id"]) == "" {
			t.Fatalf("errors %s, want one auth error with a log_id", errs)
		}
		logID := fmt.Sprint(list[0]["log_id"])
		if !strings.Contains(v.logs.String(), logID) {
			t.Errorf("log_id %s is not in the server log", logID)
		}

		blocked(t, "", 1, "Backing off")
		clk.Add(29 * time.Second)
		blocked(t, "refresh_token=true", 1, "Backing off")
		refused(t, "force_refresh=true", 2) // force skips the backoff
		clk.Add(31 * time.Second)
		refused(t, "", 3) // the backoff is over
		refused(t, "force_refresh=true", 4)
		refused(t, "force_refresh=true", 5) // the fifth refusal exhausts the connection
		blocked(t, "", 5, "refresh limit")
		blocked(t, "force_refresh=true", 5, "refresh limit")
		clk.Add(time.Hour)
		blocked(t, "", 5, "refresh limit")
		blocked(t, "force_refresh=true", 5, "refresh limit")
		if got := v.on(t).connErrors("c"); !strings.Contains(got, `"type":"auth"`) {
			t.Errorf("errors %s, want the auth error", got)
		}
		if got := v.refreshMetric("read", "refused"); got != 5 {
			t.Errorf("refused metric %v, want 5", got)
		}
		if got := v.refreshMetric("read", "blocked"); got != 6 {
			t.Errorf("blocked metric %v, want 6", got)
		}

		// A re-import clears the error and the refusal count.
		v.provider.SetMode(providertest.OK)
		v.importExpiring("c")
		if got := v.on(t).connErrors("c"); got != "[]" {
			t.Errorf("errors after a re-import %s, want []", got)
		}
		creds := credentials(t, v.on(t).read("c", ""))
		if !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
			t.Errorf("access_token %v after a re-import, want a renewed one", creds["access_token"])
		}
		v.wantCalls(t, 6, "read after a re-import")
	})
}

// TestRefreshRefusedThenRenewed: a successful forced refresh clears a refusal.
func TestRefreshRefusedThenRenewed(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{})
		v.importExpiring("c")
		v.provider.SetMode(providertest.InvalidGrant)
		wantError(t, v.read("c", ""), http.StatusBadRequest, "invalid_credentials")
		wantError(t, v.read("c", ""), http.StatusFailedDependency, "invalid_credentials")
		v.provider.SetMode(providertest.OK)
		credentials(t, v.read("c", "force_refresh=true"))
		if got := v.connErrors("c"); got != "[]" {
			t.Errorf("errors after a successful refresh %s, want []", got)
		}
		v.wantCalls(t, 2, "after the renewal")
	})
}

// TestRefreshProviderUnavailable: a failing, hanging or unreachable provider answers 502, leaves
// the stored token as it was and counts nothing against the connection.
func TestRefreshProviderUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String() + "/token"
	ln.Close()
	tests := []struct {
		name string
		mode providertest.Mode
		// tokenURL replaces the fake's.
		tokenURL string
	}{
		{name: "500", mode: providertest.Fail},
		{name: "hang", mode: providertest.Hang},
		{name: "closed port", tokenURL: closedURL},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{ProviderTimeout: 200 * time.Millisecond})
		unavailable := 0
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := v.on(t)
				if tt.tokenURL != "" {
					v.integration = "unreachable"
					_, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
						Environment: "dev", UniqueKey: v.integration, Provider: "fake", AuthMode: "OAUTH2",
						ClientID: v.provider.ClientID, ClientSecret: v.provider.ClientSecret, TokenURL: tt.tokenURL,
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				v.provider.SetMode(tt.mode)
				id := strings.ReplaceAll(tt.name, " ", "-")
				rt := v.importExpiring(id)
				imported := v.storedCredentials(id)
				before := v.provider.Calls()
				// More failures than exhaust a connection by refusals: none of these counts.
				for i := range 6 {
					e := wantError(t, v.read(id, ""), http.StatusBadGateway, "provider_unavailable")
					if e.message == "" {
						t.Errorf("read %d: no message", i)
					}
					unavailable++
				}
				if tt.tokenURL == "" {
					v.wantCalls(t, before+6, "after six failures")
				}
				if got := v.connErrors(id); got != "[]" {
					t.Errorf("errors %s, want []", got)
				}
				if stored := v.storedCredentials(id); mustJSON(stored) != mustJSON(imported) || stored["refresh_token"] != rt {
					t.Errorf("stored credentials %s, want the imported %s", mustJSON(stored), mustJSON(imported))
				}
				if tt.tokenURL != "" {
					return
				}
				v.provider.SetMode(providertest.OK)
				creds := credentials(t, v.read(id, ""))
				if !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
					t.Errorf("access_token %v once the provider is back, want a renewed one", creds["access_token"])
				}
				v.wantCalls(t, before+7, "once the provider is back")
			})
		}
		if got := v.refreshMetric("read", "unavailable"); got != float64(unavailable) {
			t.Errorf("unavailable metric %v, want %d", got, unavailable)
		}
	})
}

// TestRefreshClientCredentials: an OAUTH2_CC token that is due is minted again with the
// connection's own client id and secret and the integration's scopes.
func TestRefreshClientCredentials(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnvWith(t, storetest.Open(t, b), server.Config{})
		p := providertest.New(t, "connection-client-id", "connection-client-secret")
		v.logTokens(t, p)
		v.secrets.add("integration-client-secret")
		_, err := v.db.CreateIntegration(context.Background(), store.NewIntegration{
			Environment: "dev", UniqueKey: "cc", Provider: "fake", AuthMode: "OAUTH2_CC",
			ClientID: "integration-client-id", ClientSecret: "integration-client-secret",
			TokenURL: p.TokenURL(), Scopes: "read:things write:things",
		})
		if err != nil {
			t.Fatal(err)
		}
		imp := func(id string, exp time.Time) {
			v.importOK(fmt.Sprintf(`{"provider_config_key":"cc","connection_id":%q,"credentials":{"type":"OAUTH2_CC","token":"old-cc-token-%s","client_id":"connection-client-id","client_secret":"connection-client-secret","expires_at":%q}}`,
				id, id, exp.UTC().Format(time.RFC3339)))
		}
		imp("due", time.Now().Add(time.Minute))
		imp("fresh", time.Now().Add(time.Hour))

		creds := credentials(t, v.getConn("fresh", "provider_config_key=cc"))
		if creds["token"] != "old-cc-token-fresh" || p.Calls() != 0 {
			t.Errorf("fresh token: token %v, provider calls %d; want it untouched", creds["token"], p.Calls())
		}
		res := v.getConn("due", "provider_config_key=cc")
		creds = credentials(t, res)
		if p.Calls() != 1 {
			t.Errorf("provider calls %d, want 1", p.Calls())
		}
		tok, _ := creds["token"].(string)
		if !strings.HasPrefix(tok, "at-") {
			t.Fatalf("token %q, want a new one: %s", tok, res.body)
		}
		if creds["type"] != "OAUTH2_CC" || creds["client_id"] != "connection-client-id" || creds["client_secret"] != "connection-client-secret" {
			t.Errorf("credentials %s, want type and the connection's client kept", mustJSON(creds))
		}
		raw, _ := creds["raw"].(map[string]any)
		if raw["scope"] != "read:things write:things" || raw["access_token"] != tok {
			t.Errorf("raw %s, want the grant's answer for the integration's scopes", mustJSON(raw))
		}
		if exp := utcTime(t, "expires_at", creds["expires_at"]); exp.Before(time.Now().Add(59 * time.Minute)) {
			t.Errorf("expires_at %v, want an hour from now", exp)
		}
		again := credentials(t, v.getConn("due", "provider_config_key=cc"))
		if again["token"] != tok || p.Calls() != 1 {
			t.Errorf("second read: token %v, provider calls %d; want %s and no new call", again["token"], p.Calls(), tok)
		}
		credentials(t, v.getConn("fresh", "provider_config_key=cc&force_refresh=true"))
		if p.Calls() != 2 {
			t.Errorf("forced: provider calls %d, want 2", p.Calls())
		}
	})
}

// TestRefreshWithoutExpiry: a token imported with a refresh token but no expiry is refreshed on
// its first read; when the provider gives no expiry either, never again.
func TestRefreshWithoutExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		expiresIn    int // of the provider's answer; 0: none
		refreshToken bool
		wantCalls    int
	}{
		{name: "provider gives an expiry", expiresIn: 3600, refreshToken: true, wantCalls: 1},
		{name: "provider gives none", expiresIn: 0, refreshToken: true, wantCalls: 1},
		{name: "no refresh token", expiresIn: 3600, refreshToken: false, wantCalls: 0},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{})
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := v.on(t)
				v.provider.SetExpiresIn(tt.expiresIn)
				id := strings.ReplaceAll(tt.name, " ", "-")
				rt := ""
				if tt.refreshToken {
					rt = fmt.Sprintf(`,"refresh_token":%q`, v.provider.IssueRefreshToken())
				}
				v.importOK(fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"old-access-token-%s"%s}}`, id, id, rt))
				before := v.provider.Calls()
				first := credentials(t, v.read(id, ""))
				for range 3 {
					again := credentials(t, v.read(id, ""))
					if again["access_token"] != first["access_token"] {
						t.Errorf("access_token changed from %v to %v", first["access_token"], again["access_token"])
					}
				}
				if got := v.provider.Calls() - before; got != tt.wantCalls {
					t.Errorf("provider calls %d over four reads, want %d", got, tt.wantCalls)
				}
				_, hasExpiry := first["expires_at"]
				if tt.wantCalls == 0 {
					if first["access_token"] != "old-access-token-"+id || hasExpiry {
						t.Errorf("credentials %s, want the imported ones", mustJSON(first))
					}
					return
				}
				if !strings.HasPrefix(fmt.Sprint(first["access_token"]), "at-") {
					t.Errorf("access_token %v, want a renewed one", first["access_token"])
				}
				if hasExpiry != (tt.expiresIn > 0) {
					t.Errorf("expires_at %v, want one only when the provider gave it", first["expires_at"])
				}
			})
		}
	})
}

// TestRefreshClientAuth: the client authenticates as the integration says (form body or HTTP
// Basic), with the connection's config_override when it has one; a form-encoded answer is kept
// as a JSON raw.
func TestRefreshClientAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		basic     bool
		form      bool
		override  bool // the connection's config_override names the provider's client
		wantRawEx any  // raw.expires_in
	}{
		{name: "body", wantRawEx: jsonNumber("3600")},
		{name: "basic", basic: true, wantRawEx: jsonNumber("3600")},
		{name: "form-encoded answer", form: true, wantRawEx: "3600"},
		{name: "config_override", override: true, wantRawEx: jsonNumber("3600")},
		{name: "config_override with basic", override: true, basic: true, wantRawEx: jsonNumber("3600")},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnvWith(t, storetest.Open(t, b), server.Config{})
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := v.on(t)
				clientID, secret := fmt.Sprintf("client-%d", i), fmt.Sprintf("client-secret-%d-%s", i, b.Name)
				p := providertest.New(t, clientID, secret)
				p.Basic = tt.basic
				p.SetForm(tt.form)
				p.SetRotate(true)
				v.logTokens(t, p)
				in := store.NewIntegration{
					Environment: "dev", UniqueKey: fmt.Sprintf("auth%d", i), Provider: "fake", AuthMode: "OAUTH2",
					ClientID: clientID, ClientSecret: secret, TokenURL: p.TokenURL(),
				}
				if tt.basic {
					in.TokenAuth = "basic"
				}
				override := ""
				if tt.override {
					in.ClientID, in.ClientSecret = "integration-client", "integration-secret-not-the-one"
					override = fmt.Sprintf(`,"config_override":{"client_id":%q,"client_secret":%q}`, clientID, secret)
				}
				v.secrets.add(in.ClientSecret)
				v.secrets.add(secret)
				if _, err := v.db.CreateIntegration(context.Background(), in); err != nil {
					t.Fatal(err)
				}
				rt := p.IssueRefreshToken()
				v.importOK(fmt.Sprintf(`{"provider_config_key":%q,"connection_id":"c","credentials":{"type":"OAUTH2","access_token":"old-access-token","refresh_token":%q,"expires_at":%q%s}}`,
					in.UniqueKey, rt, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), override))
				res := v.getConn("c", "provider_config_key="+in.UniqueKey+"&refresh_token=true")
				creds := credentials(t, res)
				if p.Calls() != 1 {
					t.Errorf("provider calls %d, want 1", p.Calls())
				}
				at, _ := creds["access_token"].(string)
				if !strings.HasPrefix(at, "at-") {
					t.Fatalf("access_token %q, want a renewed one: %s", at, res.body)
				}
				raw, _ := creds["raw"].(map[string]any)
				if raw["access_token"] != at || raw["refresh_token"] != creds["refresh_token"] || !jsonEqual(t, raw["expires_in"], mustJSON(tt.wantRawEx)) {
					t.Errorf("raw %s, want the provider's answer as a JSON object", mustJSON(raw))
				}
				if creds["refresh_token"] == rt || !p.Valid(fmt.Sprint(creds["refresh_token"])) {
					t.Errorf("refresh_token %v, want the rotated one", creds["refresh_token"])
				}
				if _, ok := creds["expires_at"]; !ok {
					t.Errorf("no expires_at: %s", mustJSON(creds))
				}
				if tt.override && !jsonEqual(t, creds["config_override"], fmt.Sprintf(`{"client_id":%q,"client_secret":%q}`, clientID, secret)) {
					t.Errorf("config_override %s, want it kept", mustJSON(creds["config_override"]))
				}
				// The stored override keeps working for the next refresh.
				credentials(t, v.getConn("c", "provider_config_key="+in.UniqueKey+"&force_refresh=true"))
				if p.Calls() != 2 {
					t.Errorf("provider calls %d after a forced refresh, want 2", p.Calls())
				}
			})
		}
	})
}

// manualTimer is a refresh timer that the test fires: each of the background loop's waits is
// handed to the test, which ends it when it likes.
type manualTimer struct {
	waits chan chan time.Time
}

func newManualTimer() *manualTimer {
	// The loop waits on one timer at a time, so one slot never blocks it.
	return &manualTimer{waits: make(chan chan time.Time, 1)}
}

func (m *manualTimer) after(time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	m.waits <- c
	return c
}

// round fires the loop's timer and returns once the round it starts is over, which is when the
// loop waits again.
func (m *manualTimer) round(t *testing.T) {
	t.Helper()
	select {
	case c := <-m.waits:
		c <- time.Now()
	case <-time.After(10 * time.Second):
		t.Fatal("the background loop never waited for its timer")
	}
	select {
	case c := <-m.waits:
		m.waits <- c // the next round's wait, for the next call
	case <-time.After(30 * time.Second):
		t.Fatal("the background round did not finish")
	}
}

type jsonNumber string

func (n jsonNumber) MarshalJSON() ([]byte, error) { return []byte(n), nil }

// TestRefreshBackground: the background refresh renews the due tokens nobody reads, and leaves
// alone those not due, backing off or exhausted.
func TestRefreshBackground(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		timer := newManualTimer()
		v := newRefreshEnv(t, b, server.Config{RefreshBackoff: time.Hour, After: timer.after})

		// Refusals first, while the background does not run.
		v.provider.SetMode(providertest.InvalidGrant)
		v.importExpiring("backing-off")
		wantError(t, v.read("backing-off", ""), http.StatusBadRequest, "invalid_credentials")
		v.importExpiring("exhausted")
		for range 5 {
			wantError(t, v.read("exhausted", "force_refresh=true"), http.StatusBadRequest, "invalid_credentials")
		}
		v.provider.SetMode(providertest.OK)
		v.wantCalls(t, 6, "refusals")

		v.importExpiringAt("due", time.Now().Add(5*time.Minute))
		v.importExpiringAt("fresh", time.Now().Add(2*time.Hour))
		v.importOK(fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":"no-expiry","credentials":{"type":"OAUTH2","access_token":"old-access-token-no-expiry","refresh_token":%q}}`,
			v.provider.IssueRefreshToken()))
		v.importOK(`{"provider_config_key":"oauth","connection_id":"no-refresh-token","credentials":{"type":"OAUTH2","access_token":"old-access-token-no-refresh-token","expires_at":"2020-01-01T00:00:00Z"}}`)
		updatedAt := func(id string) any {
			c := v.env.on(t)
			c.key = v.readKey
			return decodeObject(t, c.getConn(id, "provider_config_key=oauth").body)["updated_at"]
		}
		freshUpdated := updatedAt("fresh")

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			v.api.RunRefresh(ctx, 20*time.Millisecond)
		}()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)

		timer.round(t)
		if got := v.refreshMetric("background", "renewed"); got != 2 {
			t.Errorf("background renewed metric %v after the first round, want 2", got)
		}
		for range 3 { // more rounds find nothing more to do
			timer.round(t)
		}
		stop()
		if got := v.metricValue("credport_refresh_background_rounds_total"); got != 4 {
			t.Errorf("credport_refresh_background_rounds_total %v, want the 4 rounds fired", got)
		}
		v.wantCalls(t, 8, "background rounds")
		if got := v.refreshMetric("background", "renewed"); got != 2 {
			t.Errorf("background renewed metric %v, want 2", got)
		}
		if got := v.refreshMetric("background", "blocked"); got != 0 {
			t.Errorf("background blocked metric %v: it tried connections it must skip", got)
		}

		// Reading the renewed ones now makes no call: they are fresh.
		for _, id := range []string{"due", "no-expiry"} {
			creds := credentials(t, v.read(id, ""))
			if !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
				t.Errorf("%s: access_token %v, want the one renewed in the background", id, creds["access_token"])
			}
			if _, ok := creds["expires_at"]; !ok {
				t.Errorf("%s: no expires_at after the renewal", id)
			}
		}
		for _, id := range []string{"fresh", "no-refresh-token"} {
			if creds := credentials(t, v.read(id, "")); creds["access_token"] != "old-access-token-"+id {
				t.Errorf("%s: access_token %v, want it untouched", id, creds["access_token"])
			}
		}
		if got := updatedAt("fresh"); got != freshUpdated {
			t.Errorf("fresh: updated_at %v, want %v", got, freshUpdated)
		}
		for _, id := range []string{"backing-off", "exhausted"} {
			if got := v.connErrors(id); !strings.Contains(got, `"type":"auth"`) {
				t.Errorf("%s: errors %s, want the refusal still there", id, got)
			}
		}
		v.wantCalls(t, 8, "reads after the background")
	})
}

// TestRefreshSlowerThanRequestTimeout: the request timeout bounds a read's database work, not
// the provider's call: a provider slower than it but within the provider timeout renews the
// token, and one that hangs answers 502 at the provider timeout.
func TestRefreshSlowerThanRequestTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mode       providertest.Mode
		wantStatus int
	}{
		{name: "slow", mode: providertest.OK, wantStatus: http.StatusOK},
		{name: "hang", mode: providertest.Hang, wantStatus: http.StatusBadGateway},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newRefreshEnv(t, b, server.Config{RequestTimeout: 300 * time.Millisecond, ProviderTimeout: 800 * time.Millisecond})
		v.provider.SetDelay(500 * time.Millisecond)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				v := v.on(t)
				v.provider.SetMode(tt.mode)
				v.importExpiring(tt.name)
				res := v.read(tt.name, "")
				if res.status != tt.wantStatus {
					t.Fatalf("status %d, want %d: %s", res.status, tt.wantStatus, res.body)
				}
				if tt.wantStatus == http.StatusOK {
					if creds := credentials(t, res); !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
						t.Errorf("access_token %v, want a renewed one", creds["access_token"])
					}
				} else {
					wantError(t, res, tt.wantStatus, "provider_unavailable")
				}
			})
		}
	})
}
