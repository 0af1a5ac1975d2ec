package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/store/storetest"
)

// serveProcessEnv marks the environment of a test binary started to be `credport serve`.
const serveProcessEnv = "CREDPORT_TEST_SERVE_PROCESS"

// TestServeProcess is no test of its own: started by startServeProcess, the test binary runs
// `credport` with the arguments after "--", as main does, in a process of its own.
func TestServeProcess(t *testing.T) {
	if os.Getenv(serveProcessEnv) != "1" {
		t.Skip("the child process of the tests that run credport serve as processes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, flag.Args(), os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "credport:", err)
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

// serveProcess is `credport serve` in a process of its own.
type serveProcess struct {
	addr           string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

// startServeProcess starts `credport serve args...` as a process with c's environment (and none
// of the test's CREDPORT_ variables), on a free address, and waits until it answers /health.
func startServeProcess(t *testing.T, c *cli, client *http.Client, args ...string) *serveProcess {
	t.Helper()
	s := &serveProcess{addr: freeAddr(t), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(os.Args[0], append([]string{"-test.run=^TestServeProcess$", "--", "serve"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDPORT_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	for k, v := range c.env {
		s.cmd.Env = append(s.cmd.Env, k+"="+v)
	}
	s.cmd.Env = append(s.cmd.Env, serveProcessEnv+"=1", "CREDPORT_LISTEN="+s.addr, "CREDPORT_LOG_FORMAT=json")
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			t.Fatalf("serve exited before serving: %v\n%s", err, s.stderr)
		default:
		}
		if resp, err := client.Get("http://" + s.addr + "/health"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on %s did not answer /health in time\n%s", s.addr, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM, as a deployment does, and checks it stopped cleanly.
func (s *serveProcess) stop(t *testing.T) {
	t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve on %s exited with %v\n%s", s.addr, err, s.stderr)
		}
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("serve on %s did not stop within 20 s of SIGTERM", s.addr)
	}
	if strings.Contains(s.stderr.String(), "DATA RACE") {
		t.Errorf("serve on %s had a data race:\n%s", s.addr, s.stderr)
	}
}

// backgroundRounds is credport_refresh_background_rounds_total as the server's /metrics shows it.
func (s *serveProcess) backgroundRounds(t *testing.T, client *http.Client) int {
	t.Helper()
	resp, err := client.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "credport_refresh_background_rounds_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("credport_refresh_background_rounds_total %q: %v", v, err)
			}
			return int(n)
		}
	}
	t.Fatalf("GET /metrics shows no credport_refresh_background_rounds_total:\n%s", data)
	return 0
}

// refreshLines are the serve log's "token refresh" lines, which background refreshes write.
func (s *serveProcess) refreshLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, rec := range logRecords(t, s.stderr.String()) {
		if rec["msg"] == "token refresh" {
			lines = append(lines, rec)
		}
	}
	return lines
}

// readConn is what GET /connections/{id} answered.
type readConn struct {
	status int
	body   string
	creds  map[string]any
}

func getConnection(client *http.Client, addr, key, connID, query string) readConn {
	u := "http://" + addr + "/connections/" + url.PathEscape(connID) + "?provider_config_key=oauth"
	if query != "" {
		u += "&" + query
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return readConn{body: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return readConn{body: err.Error()}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := readConn{status: resp.StatusCode, body: string(data)}
	var conn struct {
		Credentials map[string]any `json:"credentials"`
	}
	if json.Unmarshal(data, &conn) == nil {
		out.creds = conn.Credentials
	}
	return out
}

// TestRefreshAcrossServerProcesses runs two `credport serve` processes on one PostgreSQL
// database. 50 concurrent reads of an expired token, spread over both, make one provider call and
// all get the new token; a third server's background refresh renews the tokens nobody reads; no
// token reaches any server's output.
func TestRefreshAcrossServerProcesses(t *testing.T) {
	var pg storetest.Backend
	for _, b := range storetest.Backends() {
		if b.Name == "postgres" {
			pg = b
		}
	}
	c := newCLI(t, pg)
	clientSecret := randomString("client-secret-")
	p := providertest.New(t, "client-id-"+randomString(""), clientSecret)
	p.SetRotate(true)
	// Slow enough that the refreshes of both servers overlap: a missing lock would show as more
	// than one call (and, with rotation, as refusals).
	p.SetDelay(300 * time.Millisecond)

	c.must("integrations", "create", "--env", "dev", "--unique-key", "oauth", "--provider", "fake", "--auth-mode", "OAUTH2",
		"--client-id", p.ClientID, "--client-secret", clientSecret, "--token-url", p.TokenURL())
	adminKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "admin"))
	readerKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "reader",
		"--scope", "environment:connections:read_credentials"))
	secrets := map[string]string{"client secret": clientSecret, "admin key": adminKey, "reader key": readerKey}
	var secretsMu sync.Mutex
	addSecret := func(name string, v any) {
		s, _ := v.(string)
		if s == "" {
			t.Errorf("%s: none", name)
			return
		}
		secretsMu.Lock()
		secrets[name] = s
		secretsMu.Unlock()
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	// Reads only: no background refresh on these two.
	servers := []*serveProcess{
		startServeProcess(t, c, client, "--refresh-interval", "0"),
		startServeProcess(t, c, client, "--refresh-interval", "0"),
	}
	importToken := func(connID, expiresAt string) (accessToken, refreshToken string) {
		t.Helper()
		accessToken, refreshToken = randomString("old-access-"), p.IssueRefreshToken()
		addSecret(connID+" imported access token", accessToken)
		addSecret(connID+" imported refresh token", refreshToken)
		expiry := ""
		if expiresAt != "" {
			expiry = fmt.Sprintf(`,"expires_at":%q`, expiresAt)
		}
		status, body := postConnection(t, client, servers[0].addr, adminKey, fmt.Sprintf(
			`{"provider_config_key":"oauth","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":%q,"refresh_token":%q%s}}`,
			connID, accessToken, refreshToken, expiry))
		if status != http.StatusOK {
			t.Fatalf("import %s: %d %s", connID, status, body)
		}
		return accessToken, refreshToken
	}

	t.Run("50 readers on two servers, one provider call", func(t *testing.T) {
		oldAccess, oldRefresh := importToken("expired", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
		const readers = 50
		results := make([]readConn, readers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range readers {
			wg.Go(func() {
				<-start
				results[i] = getConnection(client, servers[i%2].addr, readerKey, "expired", "")
			})
		}
		close(start)
		wg.Wait()
		calls := p.Calls()
		t.Logf("50 concurrent reads of an expired token on two server processes: %d provider call(s)", calls)
		if calls != 1 {
			t.Errorf("the provider got %d calls, want exactly 1", calls)
		}
		newAccess := ""
		for i, r := range results {
			if r.status != http.StatusOK {
				t.Errorf("read %d (server %d): %d %s", i, i%2, r.status, r.body)
				continue
			}
			got, _ := r.creds["access_token"].(string)
			if newAccess == "" {
				newAccess = got
			}
			if got != newAccess || got == oldAccess || got == "" {
				t.Errorf("read %d (server %d): access token %q, want the one new token %q", i, i%2, got, newAccess)
			}
			if strings.Contains(r.body, oldRefresh) || strings.Contains(strings.ToLower(r.body), "refresh_token") {
				t.Errorf("read %d shows a refresh token: %s", i, r.body)
			}
		}
		addSecret("renewed access token", newAccess)
		// The rotated refresh token is stored: a read that asks for it gets it, on either server.
		for i, s := range servers {
			r := getConnection(client, s.addr, readerKey, "expired", "refresh_token=true")
			rt, _ := r.creds["refresh_token"].(string)
			if r.status != http.StatusOK || rt == oldRefresh || !p.Valid(rt) || r.creds["access_token"] != newAccess {
				t.Errorf("server %d: read with refresh_token=true: %d, refresh token valid at the provider %v, %s", i, r.status, p.Valid(rt), r.body)
			}
			addSecret(fmt.Sprintf("rotated refresh token (server %d)", i), rt)
		}
		if p.Valid(oldRefresh) {
			t.Error("the provider still takes the imported refresh token: it was not rotated")
		}
		if calls := p.Calls(); calls != 1 {
			t.Errorf("after the reads of a fresh token the provider got %d calls, want still 1", calls)
		}
		// A read's refresh is told on its access line only; the provider call above is the one.
		var refreshed int
		for _, s := range servers {
			for _, rec := range logRecords(t, s.stderr.String()) {
				if rec["msg"] == "token refresh" && rec["trigger"] == "read" {
					t.Errorf("a read's refresh logged a line besides its access line: %v", rec)
				}
				if rec["msg"] == "request" && rec["outcome"] == "refreshed" && rec["connection_id"] == "expired" {
					refreshed++
				}
			}
		}
		if refreshed == 0 {
			t.Error("no access line says that a read of the expired token refreshed it")
		}
	})

	t.Run("background refresh renews tokens nobody reads", func(t *testing.T) {
		before := p.Calls()
		// Due within the window (15 min), and imported without an expiry: both renewed unread.
		dueAccess, _ := importToken("due-soon", time.Now().Add(5*time.Minute).UTC().Format(time.RFC3339))
		noExpiryAccess, _ := importToken("no-expiry", "")
		bg := startServeProcess(t, c, client, "--refresh-interval", "200ms")
		servers = append(servers, bg)
		waitFor(t, 30*time.Second, "the background refresh to renew both tokens", func() bool { return p.Calls() >= before+2 })
		// A few more rounds, counted by the server itself: renewed tokens are not due again.
		rounds := bg.backgroundRounds(t, client)
		waitFor(t, 30*time.Second, "three more background rounds", func() bool { return bg.backgroundRounds(t, client) >= rounds+3 })
		if calls := p.Calls() - before; calls != 2 {
			t.Fatalf("the background refresh made %d provider calls, want 2 (one per due connection)\n%s", calls, bg.stderr)
		}
		for connID, old := range map[string]string{"due-soon": dueAccess, "no-expiry": noExpiryAccess} {
			r := getConnection(client, servers[0].addr, readerKey, connID, "")
			got, _ := r.creds["access_token"].(string)
			if r.status != http.StatusOK || got == old || got == "" {
				t.Errorf("%s after the background refresh: %d, access token %q (imported %q)", connID, r.status, got, old)
				continue
			}
			addSecret(connID+" renewed access token", got)
			exp, _ := r.creds["expires_at"].(string)
			if at, err := time.Parse(time.RFC3339Nano, exp); err != nil || at.Before(time.Now().Add(50*time.Minute)) {
				t.Errorf("%s: expires_at %q, want about an hour from now", connID, exp)
			}
		}
		if calls := p.Calls() - before; calls != 2 {
			t.Errorf("reading the renewed tokens made %d provider calls in all, want still 2", calls)
		}
		var background int
		for _, line := range bg.refreshLines(t) {
			if line["trigger"] == "background" && line["outcome"] == "renewed" {
				background++
			}
		}
		if background != 2 {
			t.Errorf("%d background renewals in the log, want 2", background)
		}
	})

	for _, s := range servers {
		s.stop(t)
	}
	for i, s := range servers {
		where := fmt.Sprintf("server %d's output", i)
		assertNoLeak(t, where, s.stdout.String()+s.stderr.String(), secrets)
		if !strings.Contains(s.stderr.String(), `"msg":"serving"`) {
			t.Errorf("%s lacks its serving line: the scan does not read its log\n%s", where, s.stderr)
		}
	}
	assertNoLeak(t, "the database", c.stored(), secrets)
}
