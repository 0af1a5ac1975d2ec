package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store/storetest"
)

// testKeyBase64 is the key material of storetest.TestKey, without its id.
var testKeyBase64 = storetest.TestKey[strings.Index(storetest.TestKey, ":")+1:]

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitReady waits until the server at addr answers GET /health, failing if serve returns first.
func waitReady(t *testing.T, client *http.Client, addr string, done <-chan error, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve returned before serving: %v\n%s", err, stderr)
		default:
		}
		resp, err := client.Get("http://" + addr + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server on %s did not answer /health in time\n%s", addr, stderr)
}

func TestServeEndToEnd(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		addr := freeAddr(t)
		c.env["CREDPORT_LISTEN"] = addr
		c.env["CREDPORT_LOG_LEVEL"] = "debug"
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var serverOut, serverErr syncBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"serve"}, c.getenv(), &serverOut, &serverErr) }()
		waitReady(t, client, addr, done, &serverErr)

		// Secrets, each unique to this run so that a scan cannot find them by chance.
		apiKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "e2e"))
		clientSecret := randomString("client-secret-")
		accessToken := randomString("gho_")
		refreshToken := randomString("ghr_")
		refusedToken := randomString("refused-token-")
		unknownKey := randomString("cp_unknown")
		secrets := map[string]string{
			"API key secret": apiKey, "client secret": clientSecret, "access token": accessToken,
			"refresh token": refreshToken, "token of a refused request": refusedToken, "unknown API key": unknownKey,
			"encryption key": testKeyBase64,
		}
		out, stderr, err := c.run("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github",
			"--auth-mode", "OAUTH2", "--client-id", "e2e-client-id", "--client-secret", clientSecret)
		if err != nil {
			t.Fatalf("integrations create: %v\n%s", err, stderr)
		}
		assertNoLeak(t, "integrations create output", out+stderr, secrets)
		connectionID := randomString("connection-")

		post := func(key, body string) (int, []byte) {
			t.Helper()
			return postConnection(t, client, addr, key, body)
		}
		importBody := fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,`+
			`"credentials":{"type":"OAUTH2","access_token":%q,"refresh_token":%q,"expires_at":"2030-01-02T03:04:05Z"}}`,
			connectionID, accessToken, refreshToken)
		requests := []struct {
			name       string
			key        string
			body       string
			wantStatus int
		}{
			{name: "import", key: apiKey, body: importBody, wantStatus: http.StatusOK},
			{name: "import again (update)", key: apiKey, body: importBody, wantStatus: http.StatusOK},
			{name: "unknown key", key: unknownKey, body: importBody, wantStatus: http.StatusUnauthorized},
			{name: "invalid body", key: apiKey, wantStatus: http.StatusBadRequest,
				body: fmt.Sprintf(`{"provider_config_key":"github","credentials":{"type":"OAUTH2","access_token":%q,"bogus":1}}`, refusedToken)},
			{name: "unknown integration", key: apiKey, wantStatus: http.StatusNotFound,
				body: fmt.Sprintf(`{"provider_config_key":"gitlab","credentials":{"type":"OAUTH2","access_token":%q}}`, refusedToken)},
		}
		var firstID any
		for _, r := range requests {
			status, data := post(r.key, r.body)
			if status != r.wantStatus {
				t.Fatalf("%s: status %d, want %d: %s", r.name, status, r.wantStatus, data)
			}
			if status != http.StatusOK {
				continue
			}
			var conn map[string]any
			if err := json.Unmarshal(data, &conn); err != nil {
				t.Fatalf("%s: response %s: %v", r.name, data, err)
			}
			if conn["connection_id"] != connectionID || conn["provider_config_key"] != "github" || conn["provider"] != "github" {
				t.Errorf("%s: response %s does not describe connection %s of github", r.name, data, connectionID)
			}
			if firstID == nil {
				firstID = conn["id"]
			} else if conn["id"] != firstID {
				t.Errorf("%s: id %v, want the id of the first import, %v", r.name, conn["id"], firstID)
			}
		}

		// While the server runs (on SQLite the rows may still be in the -wal file).
		checkStored := func(when string) {
			t.Helper()
			dump := c.stored()
			if !strings.Contains(dump, connectionID) {
				t.Fatalf("%s: the database scan does not find connection %s: it does not read what is stored", when, connectionID)
			}
			assertNoLeak(t, "the database "+when, dump, secrets)
		}
		checkStored("while serving")

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve after cancel: %v, want nil\n%s", err, serverErr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("serve did not return within 15 s of cancel\n%s", serverErr.String())
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("%s still accepts connections after serve returned", addr)
		}

		logs := serverErr.String()
		var served, stopped bool
		statuses := map[float64]int{}
		for _, rec := range logRecords(t, logs) {
			switch rec["msg"] {
			case "request":
				if rec["route"] == "/connections" {
					status, _ := rec["status"].(float64)
					statuses[status]++
				}
			case "serving":
				served = rec["address"] == addr
			case "stopped":
				stopped = true
			}
		}
		if !served || !stopped {
			t.Errorf("server log lacks serving on %s (%v) or stopped (%v):\n%s", addr, served, stopped, logs)
		}
		if statuses[200] != 2 || statuses[401] != 1 || statuses[400] != 1 || statuses[404] != 1 {
			t.Errorf("request log statuses %v, want 2×200, 401, 400, 404: the scan does not see the request log", statuses)
		}
		if s := serverOut.String(); s != "" {
			t.Errorf("serve wrote to stdout: %q", s)
		}
		assertNoLeak(t, "the server log", logs, secrets)
		checkStored("after shutdown")
	})
}

// listening tells whether something accepts connections on addr.
func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

func TestServeListeners(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		const free = "FREE" // stands for a free address of the case's own
		cases := []struct {
			name                string
			listen, metrics     string
			wantErr             string
			wantMetricsOnItsOwn bool
		}{
			{name: "API address in use", listen: busy.Addr().String(), metrics: free, wantErr: "address already in use"},
			{name: "metrics address in use", listen: free, metrics: busy.Addr().String(), wantErr: "address already in use"},
			{name: "API address malformed", listen: "127.0.0.1:port", wantErr: "listen"},
			{name: "metrics address malformed", listen: free, metrics: "127.0.0.1:port", wantErr: "listen"},
			{name: "metrics on their own address", listen: free, metrics: free, wantMetricsOnItsOwn: true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				listen, metrics := tc.listen, tc.metrics
				if listen == free {
					listen = freeAddr(t)
				}
				if metrics == free {
					metrics = freeAddr(t)
				}
				args := []string{"serve", "--listen", listen}
				if metrics != "" {
					args = append(args, "--metrics-listen", metrics)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var out, stderr syncBuffer
				done := make(chan error, 1)
				go func() { done <- run(ctx, args, c.getenv(), &out, &stderr) }()

				if tc.wantErr != "" {
					select {
					case err := <-done:
						if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
							t.Fatalf("serve: %v, want an error containing %q", err, tc.wantErr)
						}
					case <-time.After(15 * time.Second):
						t.Fatal("serve did not fail")
					}
					// Nothing is left listening on the address that was free.
					for _, addr := range []string{listen, metrics} {
						if addr != "" && addr != busy.Addr().String() && listening(addr) {
							t.Errorf("%s still accepts connections after serve failed", addr)
						}
					}
					return
				}

				client := &http.Client{Timeout: 10 * time.Second}
				defer client.CloseIdleConnections()
				waitReady(t, client, listen, done, &stderr)
				for _, check := range []struct {
					addr       string
					wantStatus int
				}{{listen, http.StatusNotFound}, {metrics, http.StatusOK}} {
					resp, err := client.Get("http://" + check.addr + "/metrics")
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != check.wantStatus {
						t.Errorf("GET %s/metrics: %d, want %d", check.addr, resp.StatusCode, check.wantStatus)
					}
					if check.wantStatus == http.StatusOK && !strings.Contains(string(body), `db_name="credport"`) {
						t.Errorf("metrics on %s lack the database pool statistics", check.addr)
					}
				}
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("serve after cancel: %v\n%s", err, stderr.String())
					}
				case <-time.After(15 * time.Second):
					t.Fatal("serve did not return after cancel")
				}
				for _, addr := range []string{listen, metrics} {
					if listening(addr) {
						t.Errorf("%s still accepts connections after serve returned", addr)
					}
				}
			})
		}
	})
}

// postConnection sends an import to the server at addr and returns the status and body.
func postConnection(t *testing.T, client *http.Client, addr, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/connections", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /connections: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}
