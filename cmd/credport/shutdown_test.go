package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/credport/credport/store/storetest"
)

// serveProc is `credport serve` running through run() in the background.
type serveProc struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
}

// startServe runs `credport serve` on a free address with c's environment.
func startServe(t *testing.T, c *cli, args ...string) *serveProc {
	t.Helper()
	s := &serveProc{addr: freeAddr(t), done: make(chan error, 1), stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	t.Cleanup(cancel)
	getenv := c.getenv()
	env := func(name string) string {
		if name == "CREDPORT_LISTEN" {
			return s.addr
		}
		return getenv(name)
	}
	go func() {
		err := run(ctx, append([]string{"serve"}, args...), env, io.Discard, s.stderr)
		s.done <- err
	}()
	return s
}

// wait waits for run to return and returns its error.
func (s *serveProc) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(within):
		t.Fatalf("serve did not return within %v\n%s", within, s.stderr)
		return nil
	}
}

// importer sends imports to a running server, each on a connection of its own so that every
// request is either refused at connect or handled by the server.
type importer struct {
	url    string
	key    string
	client *http.Client
	// answered counts the imports load got 200 for; refused is closed at load's first refusal at
	// connect.
	answered    atomic.Int64
	refused     chan struct{}
	refusedOnce sync.Once
}

func newImporter(addr, key string) *importer {
	return &importer{
		refused: make(chan struct{}),
		url:     "http://" + addr + "/connections",
		key:     key,
		client: &http.Client{
			Timeout:   15 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
}

// outcome is what became of one import.
type outcome struct {
	requestID string
	connID    string
	started   time.Time
	ended     time.Time
	status    int
	body      string
	err       error
}

// send posts body as an import; header holds extra header names and values, in pairs.
func (im *importer) send(ctx context.Context, requestID, connID string, body io.Reader, header ...string) outcome {
	o := outcome{requestID: requestID, connID: connID, started: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, im.url, body)
	if err != nil {
		o.err = err
		return o
	}
	req.Header.Set("Authorization", "Bearer "+im.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", requestID)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := im.client.Do(req)
	if err == nil {
		var data []byte
		data, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		o.status, o.body = resp.StatusCode, string(data)
	}
	o.ended, o.err = time.Now(), err
	return o
}

func importJSON(connID string) string {
	return fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":%q}}`,
		connID, randomString("tok-"))
}

// load runs workers goroutines that import distinct connections until stop is closed or the
// server refuses connections.
func (im *importer) load(workers int, prefix string, stop <-chan struct{}) func() []outcome {
	results := make([][]outcome, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				o := im.send(context.Background(), id, id, strings.NewReader(importJSON(id)))
				results[w] = append(results[w], o)
				if o.err == nil && o.status == http.StatusOK {
					im.answered.Add(1)
				}
				if errors.Is(o.err, syscall.ECONNREFUSED) {
					im.refusedOnce.Do(func() { close(im.refused) })
					return // nothing listens any more
				}
			}
		})
	}
	return func() []outcome {
		wg.Wait()
		var all []outcome
		for _, r := range results {
			all = append(all, r...)
		}
		return all
	}
}

// loggedStatuses are the statuses of the server's request log lines, by request id.
func loggedStatuses(t *testing.T, stderr string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, rec := range logRecords(t, stderr) {
		if rec["msg"] != "request" {
			continue
		}
		id, _ := rec["request_id"].(string)
		status, _ := rec["status"].(float64)
		out[id] = int(status)
	}
	return out
}

// listenQueueGrace is how long before shutdown began a request may have been sent and still
// meet a closed listener: its dial, or its connection waiting in the listen queue, races the
// close.
const listenQueueGrace = 100 * time.Millisecond

// logIndex is the index of the first log record with message msg (and request id requestID when
// not empty), or -1.
func logIndex(t *testing.T, stderr, msg, requestID string) int {
	t.Helper()
	for i, rec := range logRecords(t, stderr) {
		if rec["msg"] == msg && (requestID == "" || rec["request_id"] == requestID) {
			return i
		}
	}
	return -1
}

// TestServeShutdownFinishesInFlightImports cancels run's context, which is what SIGTERM does
// through signal.NotifyContext in main, while concurrent imports are in flight. run returns nil;
// every request the server took finished with 200, a slow one included that was still sending
// its body when shutdown began; requests sent after shutdown began are refused at connect.
func TestServeShutdownFinishesInFlightImports(t *testing.T) {
	c := newCLI(t, storetest.SQLite)
	key := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "load"))
	c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")
	s := startServe(t, c, "--shutdown-timeout", "10s")
	im := newImporter(s.addr, key)
	waitReady(t, im.client, s.addr, s.done, s.stderr)

	const workers = 8
	stop := make(chan struct{})
	defer close(stop)
	collect := im.load(workers, "load", stop)
	waitFor(t, 60*time.Second, "50 imports answered 200", func() bool { return im.answered.Load() >= 50 })

	// A request whose body is still arriving when shutdown begins. It asks for 100 Continue, which
	// the server sends once its handler reads the body: from then on the server has taken it.
	bodyReader, bodyWriter := io.Pipe()
	slowBody := importJSON("slow")
	bodyRead := make(chan struct{})
	slowDone := make(chan outcome, 1)
	go func() {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			Got100Continue: func() { close(bodyRead) },
		})
		slow := &importer{url: im.url, key: im.key, client: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: time.Minute},
		}}
		slowDone <- slow.send(ctx, "slow", "slow", bodyReader, "Expect", "100-continue")
	}()
	select {
	case <-bodyRead:
	case o := <-slowDone:
		t.Fatalf("the slow request ended before its body was sent: %v %d %s", o.err, o.status, o.body)
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not start reading the slow request's body")
	}
	_, _ = io.WriteString(bodyWriter, slowBody[:len(slowBody)/2])

	shutdownBegan := time.Now()
	s.cancel()
	// The rest of the body arrives once the listener is closed, which a refused import shows.
	select {
	case <-im.refused:
	case <-time.After(30 * time.Second):
		t.Fatal("no import was refused at connect after shutdown began")
	}
	_, _ = io.WriteString(bodyWriter, slowBody[len(slowBody)/2:])
	_ = bodyWriter.Close()

	if err := s.wait(t, 30*time.Second); err != nil {
		t.Fatalf("serve after its context was cancelled: %v, want nil\n%s", err, s.stderr)
	}
	// Every worker stops at its first refusal at connect.
	outcomes := collect()
	slow := <-slowDone
	if slow.err != nil || slow.status != http.StatusOK {
		t.Errorf("the request in flight when shutdown began: %v, status %d %s, want 200", slow.err, slow.status, slow.body)
	}
	if slowAt, stoppedAt := logIndex(t, s.stderr.String(), "request", "slow"), logIndex(t, s.stderr.String(), "stopped", ""); slowAt < 0 || stoppedAt < slowAt {
		t.Errorf("the server logged the slow request at line %d and stopped at line %d, want the request first", slowAt, stoppedAt)
	}
	outcomes = append(outcomes, slow)

	logged := loggedStatuses(t, s.stderr.String())
	var ok, inFlight, refused, notTaken int
	acknowledged := map[string]bool{}
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			if o.status != http.StatusOK {
				t.Errorf("%s: status %d, want 200: %s", o.requestID, o.status, o.body)
				continue
			}
			ok++
			acknowledged[o.connID] = true
			if o.started.Before(shutdownBegan) && o.ended.After(shutdownBegan) {
				inFlight++
			}
		default:
			// A request fails only once shutdown closes the listener: refused at connect, or
			// reset while its connection still waited in the listen queue, never taken by the
			// server.
			_, taken := logged[o.requestID]
			if taken || o.started.Before(shutdownBegan.Add(-listenQueueGrace)) {
				t.Errorf("%s (sent %v after shutdown began, taken by the server: %v): %v",
					o.requestID, o.started.Sub(shutdownBegan).Round(time.Microsecond), taken, o.err)
				continue
			}
			if errors.Is(o.err, syscall.ECONNREFUSED) {
				refused++
			} else {
				notTaken++
			}
		}
	}
	for id, status := range logged {
		if status != http.StatusOK {
			t.Errorf("the server logged %s with status %d", id, status)
		}
	}
	t.Logf("%d imports: %d answered 200 (%d of them in flight when shutdown began), %d refused at connect, %d reset before the server took them",
		len(outcomes), ok, inFlight, refused, notTaken)
	if ok < 50 {
		t.Errorf("only %d imports answered 200: the load did not run", ok)
	}
	if inFlight < 1 {
		t.Errorf("no request was in flight when shutdown began, want at least the slow one")
	}
	if notTaken > workers {
		t.Errorf("%d requests were reset before the server took them, want at most one per client", notTaken)
	}
	if refused == 0 {
		t.Errorf("no request was refused after shutdown: the load did not outlast the server")
	}
	if listening(s.addr) {
		t.Errorf("%s still accepts connections after serve returned", s.addr)
	}

	// Every import answered 200 is stored.
	stored := map[string]bool{}
	for _, id := range c.query("SELECT connection_id FROM connections") {
		stored[id] = true
	}
	for id := range acknowledged {
		if !stored[id] {
			t.Errorf("%s was answered 200 but is not stored", id)
		}
	}
}

// waitFor waits until cond holds, failing t if it does not within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCLIBesideBusySQLiteServer runs `keys create` and `integrations create` through run() again
// and again on the SQLite file that a server is importing into concurrently: no command fails
// with the database locked and no import answers anything but 200.
func TestCLIBesideBusySQLiteServer(t *testing.T) {
	c := newCLI(t, storetest.SQLite)
	key := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "load"))
	c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")
	s := startServe(t, c)
	im := newImporter(s.addr, key)
	waitReady(t, im.client, s.addr, s.done, s.stderr)

	stop := make(chan struct{})
	collect := im.load(8, "busy", stop)
	waitFor(t, 60*time.Second, "a first import answered 200", func() bool { return im.answered.Load() >= 1 })

	const rounds = 20
	commands := []struct {
		name string
		args func(i int) []string
	}{
		{"keys create", func(i int) []string {
			return []string{"keys", "create", "--env", "dev", "--name", fmt.Sprintf("cli-%d", i)}
		}},
		{"integrations create", func(i int) []string {
			return []string{"integrations", "create", "--env", "dev", "--unique-key", fmt.Sprintf("svc-%d", i),
				"--provider", "svc", "--auth-mode", "API_KEY"}
		}},
	}
	var newKeys []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, cmd := range commands {
		wg.Go(func() {
			for i := range rounds {
				var out, stderr strings.Builder
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := run(ctx, cmd.args(i), c.getenv(), &out, &stderr)
				cancel()
				if err != nil {
					t.Errorf("%s, round %d: %v\n%s", cmd.name, i, err, stderr.String())
					continue
				}
				if cmd.name == "keys create" {
					mu.Lock()
					newKeys = append(newKeys, strings.TrimSpace(out.String()))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	outcomes := collect()

	statuses := map[int]int{}
	for _, o := range outcomes {
		if o.err != nil {
			t.Errorf("%s: %v", o.requestID, o.err)
			continue
		}
		statuses[o.status]++
		if o.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200: %s", o.requestID, o.status, o.body)
		}
	}
	t.Logf("imports beside the CLI: %v", statuses)
	if statuses[http.StatusOK] < 20 {
		t.Errorf("only %d imports answered 200: the server was not busy", statuses[http.StatusOK])
	}

	// What the CLI made is there and in use at once: each new key imports into a new integration.
	if got := c.countKeys(); got != 1+rounds {
		t.Errorf("%d API keys, want %d", got, 1+rounds)
	}
	for i, k := range newKeys {
		im := newImporter(s.addr, k)
		body := fmt.Sprintf(`{"provider_config_key":"svc-%d","connection_id":"after","credentials":{"type":"API_KEY","apiKey":%q}}`,
			i, randomString("api-key-"))
		if o := im.send(context.Background(), fmt.Sprintf("after-%d", i), "after", strings.NewReader(body)); o.err != nil || o.status != http.StatusOK {
			t.Errorf("import with key %d into svc-%d: %v %d %s", i, i, o.err, o.status, o.body)
		}
	}
	s.cancel()
	if err := s.wait(t, 15*time.Second); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.stderr)
	}
}

// TestServeWaitsForDatabase starts serve while PostgreSQL is unreachable: it does not serve and
// keeps retrying, logging "database unreachable, retrying"; once the database is back it serves
// without being restarted; stopped while it waits, it returns.
func TestServeWaitsForDatabase(t *testing.T) {
	pg := storetest.Postgres
	tests := []struct {
		name string
		// databaseBack restores the database after the retries; otherwise serve is stopped.
		databaseBack bool
	}{
		{name: "database comes back", databaseBack: true},
		{name: "stopped while waiting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(t, pg)
			proxy, proxied := storetest.NewProxy(t, c.dbURL)
			proxy.Cut()
			c.env["CREDPORT_DATABASE_URL"] = proxied
			s := startServe(t, c)

			const wantRetries = 3
			deadline := time.Now().Add(10 * time.Second)
			for retries(t, s.stderr.String()) < wantRetries {
				select {
				case err := <-s.done:
					t.Fatalf("serve returned while the database was unreachable: %v\n%s", err, s.stderr)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("fewer than %d retries logged in 10 s:\n%s", wantRetries, s.stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if listening(s.addr) {
				t.Fatalf("serve listens on %s before it has a database", s.addr)
			}

			if !tt.databaseBack {
				s.cancel()
				start := time.Now()
				err := s.wait(t, 5*time.Second)
				if err == nil || !strings.Contains(err.Error(), "waiting for the database") {
					t.Fatalf("serve stopped while waiting: %v, want an error about waiting for the database", err)
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("serve took %v to return after being stopped", took)
				}
				return
			}

			proxy.Restore()
			client := &http.Client{Timeout: 5 * time.Second}
			defer client.CloseIdleConnections()
			waitReady(t, client, s.addr, s.done, s.stderr)
			key := strings.TrimSpace(c.must("keys", "create", "--env", "dev"))
			c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")
			resp, err := client.Get("http://" + s.addr + "/ready")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /ready once the database is back: %d, want 200", resp.StatusCode)
			}
			im := newImporter(s.addr, key)
			if o := im.send(context.Background(), "first", "first", strings.NewReader(importJSON("first"))); o.err != nil || o.status != http.StatusOK {
				t.Errorf("import once the database is back: %v %d %s", o.err, o.status, o.body)
			}
			s.cancel()
			if err := s.wait(t, 15*time.Second); err != nil {
				t.Fatalf("serve: %v\n%s", err, s.stderr)
			}
		})
	}
}

// retries counts the "database unreachable, retrying" warnings in a JSON log.
func retries(t *testing.T, stderr string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "database unreachable, retrying") {
			continue
		}
		recs := logRecords(t, line)
		if len(recs) == 1 && recs[0]["level"] == "WARN" && recs[0]["msg"] == "database unreachable, retrying" {
			n++
		}
	}
	return n
}
