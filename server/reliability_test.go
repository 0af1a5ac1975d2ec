package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// lostDatabaseDeadline is how soon a request must be answered while the database is gone.
const lostDatabaseDeadline = 5 * time.Second

// outage is a way for the database to go away and come back.
type outage struct {
	name string
	// open makes a fresh PostgreSQL database reachable only through a proxy and returns the URL
	// through the proxy, the direct URL, the proxy, and the functions that take the database
	// away and bring it back.
	open func(t *testing.T) (proxied, direct string, p *storetest.Proxy, down, up func())
}

func outages() []outage {
	pg := storetest.Postgres
	return []outage{
		{name: "connections refused", open: func(t *testing.T) (string, string, *storetest.Proxy, func(), func()) {
			direct := pg.NewURL(t)
			p, proxied := storetest.NewProxy(t, direct)
			return proxied, direct, p, p.Cut, p.Restore
		}},
		{name: "network stalled", open: func(t *testing.T) (string, string, *storetest.Proxy, func(), func()) {
			direct := pg.NewURL(t)
			p, proxied := storetest.NewProxy(t, direct)
			return proxied, direct, p, p.Stall, p.Restore
		}},
	}
}

// timedCall is one request served by an Echo instance, with how long the answer took.
type timedCall struct {
	method, path, body string
	res                response
	took               time.Duration
}

// serveTimed serves one request and times it; unlike env.do it may run on any goroutine. The
// caller checks the response against the contract afterwards with checkCall.
func serveTimed(e *echo.Echo, method, path, key, body string) timedCall {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	start := time.Now()
	e.ServeHTTP(rec, req)
	took := time.Since(start)
	return timedCall{method: method, path: path, body: body, took: took,
		res: response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}}
}

// checkCall validates a served call against openapi.yaml, on the test goroutine.
func (v *env) checkCall(c timedCall) {
	v.t.Helper()
	v.checkContract(httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)), c.res)
}

func importBody(connID, token string) string {
	return fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":%q}}`, connID, token)
}

func randomToken(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestDatabaseLostWhileServing takes PostgreSQL away from a running server and brings it back:
// while it is gone, imports answer 503 database_unavailable within 5 s whether or not the API key
// is cached, /ready answers 503 and /health keeps answering; once it is back, the same server
// answers 200 again without being restarted.
func TestDatabaseLostWhileServing(t *testing.T) {
	for _, o := range outages() {
		t.Run(o.name, func(t *testing.T) {
			proxied, _, _, down, up := o.open(t)
			host := mustHost(t, proxied)
			v := newEnvOn(t, storetest.OpenURL(t, proxied))
			v.integration("dev", "github", "OAUTH2")
			uncached := v.apiKey("dev", "environment:connections:create")
			v.importOK(importBody("before", randomToken("tok-"))) // v.key is now cached

			down()
			type probe struct {
				name       string
				method     string
				path       string
				key        string
				body       string
				wantStatus int
				wantCode   string
			}
			probes := []probe{
				{name: "import, key cached", method: http.MethodPost, path: "/connections", key: v.key,
					body: importBody("during-cached", randomToken("tok-")), wantStatus: 503, wantCode: "database_unavailable"},
				{name: "import, key looked up", method: http.MethodPost, path: "/connections", key: uncached,
					body: importBody("during-lookup", randomToken("tok-")), wantStatus: 503, wantCode: "database_unavailable"},
				{name: "ready", method: http.MethodGet, path: "/ready", wantStatus: 503, wantCode: "database_unavailable"},
				{name: "health", method: http.MethodGet, path: "/health", wantStatus: 200},
			}
			calls := make([]timedCall, len(probes))
			var wg sync.WaitGroup
			for i, p := range probes {
				wg.Go(func() { calls[i] = serveTimed(v.e, p.method, p.path, p.key, p.body) })
			}
			answered := make(chan struct{})
			go func() {
				wg.Wait()
				close(answered)
			}()
			select {
			case <-answered:
			case <-time.After(2 * lostDatabaseDeadline):
				t.Fatalf("database gone: requests still unanswered after %v", 2*lostDatabaseDeadline)
			}
			for i, p := range probes {
				c := calls[i]
				v.checkCall(c)
				if c.res.status != p.wantStatus {
					t.Errorf("database gone: %s: status %d, want %d: %s", p.name, c.res.status, p.wantStatus, c.res.body)
					continue
				}
				if c.took >= lostDatabaseDeadline {
					t.Errorf("database gone: %s answered after %v, want within %v", p.name, c.took.Round(time.Millisecond), lostDatabaseDeadline)
				}
				if p.wantCode != "" {
					if got := errorCode(t, c.res); got != p.wantCode {
						t.Errorf("database gone: %s: code %q, want %q", p.name, got, p.wantCode)
					}
					if ra, err := strconv.Atoi(c.res.header.Get("Retry-After")); err != nil || ra < 1 {
						t.Errorf("database gone: %s: Retry-After %q, want seconds", p.name, c.res.header.Get("Retry-After"))
					}
					if strings.Contains(string(c.res.body), host) {
						t.Errorf("database gone: %s: the body names the database address: %s", p.name, c.res.body)
					}
				}
				t.Logf("database gone: %s answered %d in %v", p.name, c.res.status, c.took.Round(time.Millisecond))
			}

			up()
			for _, step := range []struct {
				name string
				key  string
				path string
				body string
			}{
				{name: "import, key cached", key: v.key, path: "/connections", body: importBody("after-cached", randomToken("tok-"))},
				{name: "import, key looked up", key: uncached, path: "/connections", body: importBody("after-lookup", randomToken("tok-"))},
				{name: "ready", path: "/ready"},
			} {
				method := http.MethodPost
				if step.body == "" {
					method = http.MethodGet
				}
				c := serveTimed(v.e, method, step.path, step.key, step.body)
				v.checkCall(c)
				if c.res.status != http.StatusOK {
					t.Errorf("database back: %s: status %d, want 200 from the same server: %s", step.name, c.res.status, c.res.body)
				}
				// A test database has no standby: /ready says so, and is ready all the same.
				if step.path == "/ready" && !strings.Contains(string(c.res.body), `"synchronous_standby":false`) {
					t.Errorf("database back: ready: %s, want synchronous_standby false", c.res.body)
				}
			}
		})
	}
}

// TestNoAcknowledgedImportLost imports distinct connections from concurrent clients while the
// database goes away and comes back several times. Every import is answered 200 or 503, and every
// connection that was answered 200 is in the database afterwards with the credentials it was sent.
func TestNoAcknowledgedImportLost(t *testing.T) {
	for _, o := range outages() {
		t.Run(o.name, func(t *testing.T) {
			proxied, direct, proxy, down, up := o.open(t)
			v := newEnvOn(t, storetest.OpenURL(t, proxied))
			v.integration("dev", "github", "OAUTH2")

			type result struct {
				connID, token string
				call          timedCall
				// afterOutages is set for requests sent once the database was back for good.
				afterOutages bool
			}
			const workers = 8
			results := make([][]result, workers)
			stop := make(chan struct{})
			var settled sync.Mutex // held by the test while the outages last
			outagesOver := false
			// What the workers have been answered so far, which drives the outages.
			var answeredOK, okAfterOutages atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						settled.Lock()
						after := outagesOver
						settled.Unlock()
						r := result{connID: fmt.Sprintf("w%d-%d", w, i), token: randomToken("tok-"), afterOutages: after}
						r.call = serveTimed(v.e, http.MethodPost, "/connections", v.key, importBody(r.connID, r.token))
						results[w] = append(results[w], r)
						switch r.call.res.status {
						case http.StatusOK:
							answeredOK.Add(1)
							if after {
								okAfterOutages.Add(1)
							}
						}
					}
				})
			}
			// Each phase lasts until it had an effect: an outage until it kept an import's traffic
			// from the database, the database back until one more import answered 200.
			grew := func(what string, counter *atomic.Int64) {
				t.Helper()
				before := counter.Load()
				waitUntil(t, 30*time.Second, what, func() bool { return counter.Load() > before })
			}
			grew("an import answered 200 before the outages", &answeredOK)
			for range 3 {
				blocked := proxy.Blocked()
				down()
				waitUntil(t, 30*time.Second, "the outage to reach the imports", func() bool { return proxy.Blocked() > blocked })
				up()
				grew("an import answered 200 after the outage", &answeredOK)
			}
			settled.Lock()
			outagesOver = true
			settled.Unlock()
			grew("an import sent after the outages answered 200", &okAfterOutages)
			close(stop)
			wg.Wait()

			// Read back on a store of its own that does not go through the proxy.
			reader := storetest.OpenURL(t, direct)
			ctx := context.Background()
			key, err := reader.FindAPIKeyBySecretHash(ctx, store.HashSecret(v.key))
			if err != nil {
				t.Fatal(err)
			}
			statuses := map[int]int{}
			checked := map[int]bool{}
			var acknowledged, lost, okAfter int
			for _, rs := range results {
				for _, r := range rs {
					status := r.call.res.status
					statuses[status]++
					if !checked[status] {
						checked[status] = true
						v.checkCall(r.call)
					}
					switch status {
					case http.StatusOK:
					case http.StatusServiceUnavailable:
						if code := errorCode(t, r.call.res); code != "database_unavailable" {
							t.Errorf("%s: 503 with code %q", r.connID, code)
						}
						continue
					default:
						t.Errorf("%s: status %d, want 200 or 503: %s", r.connID, status, r.call.res.body)
						continue
					}
					acknowledged++
					if r.afterOutages {
						okAfter++
					}
					creds, err := reader.ConnectionCredentials(ctx, key.EnvironmentID, "github", r.connID)
					if err != nil {
						lost++
						t.Errorf("%s was answered 200 but is not in the database: %v", r.connID, err)
						continue
					}
					var got struct {
						AccessToken string `json:"access_token"`
					}
					if err := json.Unmarshal(creds, &got); err != nil || got.AccessToken != r.token {
						t.Errorf("%s: stored credentials %s, want the access token it was sent", r.connID, creds)
					}
				}
			}
			t.Logf("statuses %v; %d acknowledged imports checked, %d lost", statuses, acknowledged, lost)
			if statuses[http.StatusServiceUnavailable] == 0 {
				t.Errorf("no import answered 503: the outages did not reach the server")
			}
			if okAfter == 0 {
				t.Errorf("no import answered 200 once the database was back for good")
			}
		})
	}
}

// waitUntil waits until cond holds, failing t if it does not within d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustHost(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
