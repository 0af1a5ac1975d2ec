package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// watchedBody is a request body that records whether the server read any of it.
type watchedBody struct {
	r    io.Reader
	read atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

// watchedRequest is a POST of body to path with the given key, whose reading the test can see.
func watchedRequest(path, key, body string) (*http.Request, *watchedBody) {
	wb := &watchedBody{r: strings.NewReader(body)}
	req := newRawRequest(http.MethodPost, path, "Bearer "+key, wb)
	req.ContentLength = int64(len(body))
	return req, wb
}

// largeImport is a valid import of about size bytes, most of them metadata.
func largeImport(connID string, size int) string {
	return fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,"metadata":{"pad":%q},"credentials":{"type":"OAUTH2","access_token":"tok"}}`,
		connID, strings.Repeat("x", size))
}

// TestRateLimitBeforeBody: with a rate limit of 1 a second, of 12 large imports sent at once by
// one key, one is imported and the 11 others answer 429 with Retry-After without the server
// reading a byte of their bodies, and close the connection rather than drain them. A request
// without a key is refused as early.
func TestRateLimitBeforeBody(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		clk := &clock{now: time.Now()}
		v := newEnvWith(t, storetest.Open(t, b), server.Config{RateLimit: 1, Now: clk.Now})
		v.integration("dev", "github", "OAUTH2")
		const n = 12
		reqs := make([]*http.Request, n)
		bodies := make([]*watchedBody, n)
		results := make([]response, n)
		for i := range n {
			reqs[i], bodies[i] = watchedRequest("/connections", v.key, largeImport(fmt.Sprintf("large-%d", i), 512<<10))
		}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				v.e.ServeHTTP(rec, reqs[i])
				results[i] = response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
			})
		}
		wg.Wait()
		imported := 0
		for i, res := range results {
			v.checkContract(reqs[i], res)
			switch res.status {
			case http.StatusOK:
				imported++
			case http.StatusTooManyRequests:
				wantError(t, res, http.StatusTooManyRequests, "too_many_requests")
				if bodies[i].read.Load() {
					t.Errorf("request %d: 429 after its body was read", i)
				}
				if res.header.Get("Retry-After") == "" || res.header.Get("Connection") != "close" {
					t.Errorf("request %d: 429 with Retry-After %q and Connection %q, want a number and close",
						i, res.header.Get("Retry-After"), res.header.Get("Connection"))
				}
			default:
				t.Errorf("request %d: status %d: %.200s", i, res.status, res.body)
			}
		}
		if imported != 1 {
			t.Errorf("%d imports went through, want 1", imported)
		}

		req, body := watchedRequest("/connections", "cp_unknown-secret-of-no-key", largeImport("nokey", 512<<10))
		res := v.sendRaw(req)
		wantError(t, res, http.StatusUnauthorized, "unknown_account")
		if body.read.Load() || res.header.Get("Connection") != "close" {
			t.Errorf("401: body read %v, Connection %q; want unread and close", body.read.Load(), res.header.Get("Connection"))
		}
	})
}

// TestBodyBytesInFlightBounded: with a budget of 4096 body bytes in flight, an import of 3000
// bytes that the server is reading holds 3000 of them; a second import of 2000 bytes then answers
// 503 server_overloaded with Retry-After, unread, and goes through once the first is done.
func TestBodyBytesInFlightBounded(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnvWith(t, storetest.Open(t, b), server.Config{MaxInflightBodyBytes: 4096, BodyBudgetWait: 10 * time.Millisecond})
		v.integration("dev", "github", "OAUTH2")

		first := largeImport("first", 3000-128)
		pr, pw := io.Pipe()
		firstReq := newRawRequest(http.MethodPost, "/connections", "Bearer "+v.key, pr)
		firstReq.ContentLength = int64(len(first))
		done := make(chan response, 1)
		go func() {
			rec := httptest.NewRecorder()
			v.e.ServeHTTP(rec, firstReq)
			done <- response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		}()
		// The pipe gives the write back once the server has read it, so the server is reading
		// the first body, and holds its share, from here on.
		if _, err := pw.Write([]byte(first[:100])); err != nil {
			t.Fatal(err)
		}

		second := largeImport("second", 2000-128)
		req, body := watchedRequest("/connections", v.key, second)
		res := v.sendRaw(req)
		e := wantError(t, res, http.StatusServiceUnavailable, "server_overloaded")
		if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q, want seconds", res.header.Get("Retry-After"))
		}
		if body.read.Load() || res.header.Get("Connection") != "close" {
			t.Errorf("503: body read %v, Connection %q; want unread and close", body.read.Load(), res.header.Get("Connection"))
		}
		if strings.Contains(e.message, "database") {
			t.Errorf("overload message %q speaks of the database", e.message)
		}

		if _, err := pw.Write([]byte(first[100:])); err != nil {
			t.Fatal(err)
		}
		_ = pw.Close()
		firstRes := <-done
		v.checkContract(firstReq, firstRes)
		if firstRes.status != http.StatusOK {
			t.Fatalf("first import: status %d: %s", firstRes.status, firstRes.body)
		}
		req, _ = watchedRequest("/connections", v.key, second)
		if res := v.sendRaw(req); res.status != http.StatusOK {
			t.Fatalf("second import once the first is done: status %d: %s", res.status, res.body)
		}
	})
}

// TestBodyValuesInFlightCharged: a body's values count toward the budget as well as its bytes,
// since a small body of many values decodes into much more memory. With a budget of 64 KiB and
// an import of 40 KiB being read, a 20 KB body of 10,000 values fits by its bytes but not by its
// values: 503 server_overloaded. The same body goes through alone.
func TestBodyValuesInFlightCharged(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnvWith(t, storetest.Open(t, b), server.Config{MaxInflightBodyBytes: 64 << 10, BodyBudgetWait: 10 * time.Millisecond})
		v.integration("dev", "github", "OAUTH2")
		first := largeImport("first", 40<<10)
		pr, pw := io.Pipe()
		firstReq := newRawRequest(http.MethodPost, "/connections", "Bearer "+v.key, pr)
		firstReq.ContentLength = int64(len(first))
		done := make(chan response, 1)
		go func() {
			rec := httptest.NewRecorder()
			v.e.ServeHTTP(rec, firstReq)
			done <- response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		}()
		if _, err := pw.Write([]byte(first[:100])); err != nil {
			t.Fatal(err)
		}
		many := `{"provider_config_key":"github","connection_id":"many","metadata":{"a":[` +
			strings.TrimSuffix(strings.Repeat("0,", 10_000), ",") + `]},"credentials":{"type":"OAUTH2","access_token":"t"}}`
		req, _ := watchedRequest("/connections", v.key, many)
		wantError(t, v.sendRaw(req), http.StatusServiceUnavailable, "server_overloaded")

		if _, err := pw.Write([]byte(first[100:])); err != nil {
			t.Fatal(err)
		}
		_ = pw.Close()
		if res := <-done; res.status != http.StatusOK {
			t.Fatalf("first import: status %d: %.300s", res.status, res.body)
		}
		req, _ = watchedRequest("/connections", v.key, many)
		if res := v.sendRaw(req); res.status != http.StatusOK {
			t.Fatalf("the body of many values alone: status %d: %.300s", res.status, res.body)
		}
	})
}

// TestBodyShapeBounded: bodies too deep, with too many values or with too many members where the
// schema bounds them answer 400 invalid_body saying what is over, on every body operation.
func TestBodyShapeBounded(t *testing.T) {
	wrap := func(metadata string) string {
		return `{"provider_config_key":"github","connection_id":"c","metadata":` + metadata + `,"credentials":{"type":"OAUTH2","access_token":"t"}}`
	}
	members := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"k%d":1`, i)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		name, method, path, body string
		wantMessage              string
		wantPath                 []string
	}{
		{"metadata 70 levels deep", http.MethodPost, "/connections",
			wrap(strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70)), "nested deeper than 64 levels", nil},
		{"an array of 60,000 numbers", http.MethodPost, "/connections",
			wrap(`{"a":[` + strings.TrimSuffix(strings.Repeat("0,", 60_000), ",") + `]}`), "more than 20000 values", nil},
		{"300,000 empty objects", http.MethodPost, "/connections",
			wrap(`{"a":[` + strings.TrimSuffix(strings.Repeat("{},", 300_000), ",") + `]}`), "more than 20000 values", nil},
		{"nested object of 60,000 members", http.MethodPatch, "/connections/metadata",
			`{"connection_id":"c","provider_config_key":"github","metadata":{"a":` + members(60_000) + `}}`, "more than 20000 values", nil},
		{"metadata of 1001 members", http.MethodPost, "/connections", wrap(members(1001)), "", []string{"metadata"}},
		{"connection_config of 1001 members", http.MethodPost, "/connections",
			`{"provider_config_key":"github","connection_config":` + members(1001) + `,"credentials":{"type":"OAUTH2","access_token":"t"}}`, "", []string{"connection_config"}},
		{"end_user tags of 11 members", http.MethodPost, "/connections",
			`{"provider_config_key":"github","end_user":{"id":"u","tags":` + strings.ReplaceAll(members(11), ":1", `:"v"`) + `},"credentials":{"type":"OAUTH2","access_token":"t"}}`,
			"", []string{"end_user", "tags"}},
		{"metadata for 1001 connections", http.MethodPost, "/connections/metadata",
			`{"connection_id":[` + strings.TrimSuffix(strings.Repeat(`"c",`, 1001), ",") + `],"provider_config_key":"github","metadata":{}}`, "", []string{"connection_id"}},
	}
	accepted := []struct{ name, body string }{
		{"64 levels", wrap(strings.Repeat(`{"a":`, 63) + `1` + strings.Repeat(`}`, 63))},
		{"19,990 values", wrap(`{"a":[` + strings.TrimSuffix(strings.Repeat("0,", 19_980), ",") + `]}`)},
		{"brackets and commas inside strings", wrap(`{"s":"` + strings.Repeat(`{[,\"`, 30_000) + `"}`)},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		for _, tt := range accepted {
			t.Run(tt.name, func(t *testing.T) {
				if res := v.on(t).do(request{body: tt.body}); res.status != http.StatusOK {
					t.Fatalf("status %d, want 200: %.300s", res.status, res.body)
				}
			})
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := v.on(t).do(request{method: tt.method, path: tt.path, body: tt.body})
				e := wantError(t, res, http.StatusBadRequest, "invalid_body")
				if tt.wantMessage != "" && !strings.Contains(e.message, tt.wantMessage) {
					t.Errorf("message %q, want it to say %q", e.message, tt.wantMessage)
				}
				if tt.wantPath != nil {
					found := false
					for _, d := range e.errors {
						found = found || equalPath(d.Path, tt.wantPath)
					}
					if !found {
						t.Errorf("no error at %q in %s", tt.wantPath, formatDetails(e.errors))
					}
				}
			})
		}
	})
}
