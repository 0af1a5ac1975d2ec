package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// failAfter bounds how long a test waits for an event that should come at once; reaching it
// fails the test, it is never what the test measures.
const failAfter = 10 * time.Second

// serveHTTP serves v's API on a loopback listener with the HTTP server `credport serve` runs,
// within lim, and returns its address.
func serveHTTP(t *testing.T, v *env, lim server.HTTPLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, v, lim, ln)
}

func serveOn(t *testing.T, v *env, lim server.HTTPLimits, ln net.Listener) string {
	t.Helper()
	srv := server.NewHTTPServer(v.e, lim)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// eventListener logs, in order, each connection the server accepts and closes.
type eventListener struct {
	net.Listener
	mu     sync.Mutex
	events []string
}

func (l *eventListener) log(event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event)
}

func (l *eventListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.log("accepted")
		c = &eventConn{Conn: c, l: l}
	}
	return c, err
}

type eventConn struct {
	net.Conn
	l    *eventListener
	once sync.Once
}

func (c *eventConn) Close() error {
	c.once.Do(func() { c.l.log("closed") })
	return c.Conn.Close()
}

// dialSlow opens a connection and sends head, a request cut short: the rest never comes.
func dialSlow(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn
}

// slowPost is the head of a POST /connections that announces 1000 bytes and sends one.
func slowPost(auth string) string {
	h := "POST /connections HTTP/1.1\r\nHost: credport\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	if auth != "" {
		h += "Authorization: " + auth + "\r\n"
	}
	return h + "\r\n{"
}

// readAnswer reads the response on conn, then requires the server to close it.
func readAnswer(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(failAfter))
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the answer the connection is still open (%v)", err)
	}
	return res
}

// TestSlowClients: over a real connection, a POST whose body never arrives is answered 401 or
// 403 at once when its key fails, and the connection closed, without waiting for the body; with
// a good key the read timeout ends it; and 300 such slow connections do not keep /health from
// answering.
func TestSlowClients(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		readOnly := v.apiKey("dev", "environment:connections:read")

		t.Run("refused before the body", func(t *testing.T) {
			addr := serveHTTP(t, v, server.HTTPLimits{})
			for _, tt := range []struct {
				auth, code string
				status     int
			}{
				{"", "missing_auth_header", http.StatusUnauthorized},
				{"Basic eDp5", "malformed_auth_header", http.StatusUnauthorized},
				{"Bearer cp_no-such-key", "unknown_account", http.StatusUnauthorized},
				{"Bearer " + readOnly, "forbidden", http.StatusForbidden},
			} {
				res := readAnswer(t, dialSlow(t, addr, slowPost(tt.auth)))
				body, _ := io.ReadAll(res.Body)
				if res.StatusCode != tt.status || !strings.Contains(string(body), `"`+tt.code+`"`) {
					t.Errorf("auth %.12q: %d %s, want %d %s", tt.auth, res.StatusCode, body, tt.status, tt.code)
				}
				if tt.code == "forbidden" && !strings.Contains(string(body), "environment:connections:create") {
					t.Errorf("403 %s does not name the scope", body)
				}
			}
		})

		t.Run("read timeout ends a slow body", func(t *testing.T) {
			addr := serveHTTP(t, v, server.HTTPLimits{ReadTimeout: 200 * time.Millisecond})
			res := readAnswer(t, dialSlow(t, addr, slowPost("Bearer "+v.key)))
			if res.StatusCode != http.StatusBadRequest {
				body, _ := io.ReadAll(res.Body)
				t.Errorf("status %d %s, want 400: the body could not be read", res.StatusCode, body)
			}
		})

		t.Run("handling outlives the read timeout", func(t *testing.T) {
			const readTimeout = 200 * time.Millisecond
			e, err := server.New(server.Config{Store: slowStore{Store: v.db, hold: 3 * readTimeout}})
			if err != nil {
				t.Fatal(err)
			}
			slow := *v
			slow.e = e
			addr := serveHTTP(t, &slow, server.HTTPLimits{ReadTimeout: readTimeout})
			client := &http.Client{Timeout: failAfter}
			res, err := client.Get("http://" + addr + "/ready")
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("GET /ready whose ping outlasts the read timeout: status %d, want 200", res.StatusCode)
			}
			req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/connections", strings.NewReader(importBody("slow", "tok")))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+v.key)
			req.Header.Set("Content-Type", "application/json")
			res, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("an import whose write outlasts the read timeout: status %d, want 200", res.StatusCode)
			}
		})

		t.Run("300 slow sockets and /health", func(t *testing.T) {
			addr := serveHTTP(t, v, server.HTTPLimits{})
			for i := range 300 {
				switch i % 3 {
				case 0: // headers that never end
					dialSlow(t, addr, "GET /health HTTP/1.1\r\nHost: credport\r\nX-Slow: ")
				case 1: // a body that never arrives, with a good key
					dialSlow(t, addr, slowPost("Bearer "+v.key))
				default: // a body that never arrives, without a key
					dialSlow(t, addr, slowPost(""))
				}
			}
			client := &http.Client{Timeout: failAfter, Transport: &http.Transport{DisableKeepAlives: true}}
			for i := range 20 {
				res, err := client.Get("http://" + addr + "/health")
				if err != nil {
					t.Fatalf("GET /health %d beside 300 slow sockets: %v", i, err)
				}
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Fatalf("GET /health %d: status %d", i, res.StatusCode)
				}
			}
		})

		t.Run("connections over the cap wait for a slot", func(t *testing.T) {
			const maxConns = 4
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &eventListener{Listener: inner}
			addr := serveOn(t, v, server.HTTPLimits{MaxConnections: maxConns, ReadHeaderTimeout: 300 * time.Millisecond}, ln)
			for range maxConns {
				dialSlow(t, addr, "GET /health HTTP/1.1\r\nHost: credport\r\n")
			}
			res := readAnswer(t, dialSlow(t, addr, "GET /health HTTP/1.1\r\nHost: credport\r\nConnection: close\r\n\r\n"))
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET /health: status %d", res.StatusCode)
			}
			ln.mu.Lock()
			events := slices.Clone(ln.events)
			ln.mu.Unlock()
			// The fifth connection is accepted only once the header timeout has closed one of
			// the four that held every slot.
			fifth, accepted := -1, 0
			for i, e := range events {
				if e == "accepted" {
					if accepted++; accepted == maxConns+1 {
						fifth = i
						break
					}
				}
			}
			if fifth < 0 || !slices.Contains(events[:fifth], "closed") {
				t.Errorf("events %v: the connection over the cap was accepted before any closed", events)
			}
		})
	})
}

// slowStore makes Ping and UpsertConnection take hold, unless their context ends first.
type slowStore struct {
	server.Store
	hold time.Duration
}

func (s slowStore) wait(ctx context.Context) error {
	select {
	case <-time.After(s.hold):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s slowStore) Ping(ctx context.Context) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.Ping(ctx)
}

func (s slowStore) UpsertConnection(ctx context.Context, in store.UpsertConnection) (store.Connection, error) {
	if err := s.wait(ctx); err != nil {
		return store.Connection{}, err
	}
	return s.Store.UpsertConnection(ctx, in)
}
