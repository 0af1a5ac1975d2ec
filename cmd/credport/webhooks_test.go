package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
	"github.com/credport/credport/webhook"
)

// hookReceiver records the webhooks it answered 200. While held, it answers nothing: the
// requests wait until the sender gives up or dies.
type hookReceiver struct {
	srv  *httptest.Server
	got  chan receivedHook
	mu   sync.Mutex
	hold bool
	// held is closed (once) when a request arrives while held.
	held     chan struct{}
	heldOnce sync.Once
	release  chan struct{}
}

type receivedHook struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{got: make(chan receivedHook, 10000), held: make(chan struct{}), release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		r.mu.Lock()
		hold := r.hold
		r.mu.Unlock()
		if hold {
			r.heldOnce.Do(func() { close(r.held) })
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
			return
		}
		r.got <- receivedHook{header: req.Header.Clone(), body: body}
	}))
	t.Cleanup(func() {
		close(r.release)
		r.srv.Close()
	})
	return r
}

// next waits for the next webhook answered 200.
func (r *hookReceiver) next(t *testing.T, within time.Duration) receivedHook {
	t.Helper()
	select {
	case h := <-r.got:
		return h
	case <-time.After(within):
		t.Fatalf("no webhook within %s", within)
	}
	return receivedHook{}
}

var signingKeyLine = regexp.MustCompile(`^[0-9a-f]{64}$`)

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestWebhooksCLI: set creates the signing key and prints it once, alone on the last line; show
// never prints it; rotate replaces it; URLs the outbound policy refuses are refused; deliveries
// lists events with their attempts and redeliver queues one again; rekey re-seals the key.
func TestWebhooksCLI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2")

		for _, u := range []string{"http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "ftp://hooks.example/x", "http://169.254.169.254/"} {
			if _, _, err := c.run("webhooks", "set", "--env", "dev", "--url", u); err == nil {
				t.Errorf("set --url %s was accepted", u)
			}
		}
		c.env["CREDPORT_OUTBOUND_ALLOW_PRIVATE"] = "true"
		if _, _, err := c.run("webhooks", "set", "--env", "dev", "--url", "http://169.254.169.254/"); err == nil {
			t.Error("a link-local URL was accepted with CREDPORT_OUTBOUND_ALLOW_PRIVATE=true")
		}
		if _, _, err := c.run("webhooks", "set", "--env", "dev", "--url", "http://[fe80::1]/"); err == nil {
			t.Error("an IPv6 link-local URL was accepted with CREDPORT_OUTBOUND_ALLOW_PRIVATE=true")
		}

		out := c.must("webhooks", "set", "--env", "dev", "--url", "http://127.0.0.1:9/hook", "--on-auth-creation=false")
		key := lastLine(out)
		if !signingKeyLine.MatchString(key) || strings.Count(out, key) != 1 {
			t.Fatalf("first set did not print the key once on its last line:\n%s", out)
		}
		out = c.must("webhooks", "set", "--env", "dev", "--secondary-url", "http://127.0.0.1:10/hook")
		if strings.Contains(out, key) || signingKeyLine.MatchString(lastLine(out)) {
			t.Errorf("a later set printed a key:\n%s", out)
		}
		show := c.must("webhooks", "show", "--env", "dev")
		for _, want := range []string{"url\thttp://127.0.0.1:9/hook", "secondary_url\thttp://127.0.0.1:10/hook",
			"on_auth_creation\tfalse", "on_auth_refresh_error\ttrue"} {
			if !strings.Contains(show, want+"\n") {
				t.Errorf("show lacks %q:\n%s", want, show)
			}
		}
		if strings.Contains(show, key) {
			t.Error("show printed the signing key")
		}
		c.must("webhooks", "set", "--env", "dev", "--secondary-url", "")
		if show := c.must("webhooks", "show", "--env", "dev"); !strings.Contains(show, "secondary_url\t\n") {
			t.Errorf("--secondary-url \"\" did not clear it:\n%s", show)
		}
		rotated := lastLine(c.must("webhooks", "rotate-signing-key", "--env", "dev"))
		if !signingKeyLine.MatchString(rotated) || rotated == key {
			t.Fatalf("rotate printed %q", rotated)
		}
		if got, err := c.db().WebhookKey(context.Background(), envIDOf(t, c, "dev")); err != nil || string(got) != rotated {
			t.Fatalf("stored key %v, want the rotated one", err)
		}

		// One event, listed with its attempts, and redelivered.
		c.must("webhooks", "set", "--env", "dev", "--on-auth-creation=true")
		if _, err := c.db().UpsertConnection(context.Background(), upsertFor(t, c, "gh", "conn-1")); err != nil {
			t.Fatal(err)
		}
		list := c.must("webhooks", "deliveries", "--env", "dev", "--status", "pending")
		lines := strings.Split(strings.TrimSpace(list), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], "\tcreation\tgh\tconn-1\thttp://127.0.0.1:9\tpending\t0\t") {
			t.Fatalf("deliveries:\n%s", list)
		}
		id := strings.Split(lines[1], "\t")[0]
		if out := c.must("webhooks", "redeliver", "--env", "dev", "--id", id); !strings.Contains(out, id) {
			t.Errorf("redeliver printed %q", out)
		}
		if _, _, err := c.run("webhooks", "redeliver", "--env", "dev", "--id", "no-such-id"); err == nil {
			t.Error("redeliver of an unknown id succeeded")
		}
		if out := c.must("webhooks", "deliveries", "--env", "dev", "--status", "failed"); strings.Count(out, "\n") != 1 {
			t.Errorf("failed deliveries:\n%s", out)
		}

		// rekey re-seals the signing key with the new primary key.
		newKey := store.NewKey()
		ring, err := store.ParseKeyring(newKey)
		if err != nil {
			t.Fatal(err)
		}
		c.env["CREDPORT_ENCRYPTION_KEY"] = newKey + "," + storetest.TestKey
		c.must("rekey")
		if sealed := c.query(`SELECT signing_key FROM webhook_settings`); len(sealed) != 1 || store.SealedKeyID(sealed[0]) != ring.PrimaryID() {
			t.Errorf("after rekey the signing key is not sealed with the new key")
		}
	})
}

func envIDOf(t *testing.T, c *cli, name string) int64 {
	t.Helper()
	id, err := c.db().EnvironmentID(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// upsertFor is an import of connection id into integration key of "dev".
func upsertFor(t *testing.T, c *cli, key, id string) store.UpsertConnection {
	t.Helper()
	envID := envIDOf(t, c, "dev")
	in, err := c.db().FindIntegration(context.Background(), envID, key)
	if err != nil {
		t.Fatal(err)
	}
	return store.UpsertConnection{EnvironmentID: envID, Integration: in, ConnectionID: id,
		Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"t"}`)}
}

// TestWebhookAfterSIGKILL: a server killed with SIGKILL right after it answered an import, with
// the event's attempt in flight, delivers it after a restart.
func TestWebhookAfterSIGKILL(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.env["CREDPORT_OUTBOUND_ALLOW_PRIVATE"] = "true"
		c.env["CREDPORT_WEBHOOK_TIMEOUT"] = "1s" // the dead server's claim ends 11 s after it was taken
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2")
		apiKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "k"))
		r := newHookReceiver(t)
		r.hold = true
		signing := lastLine(c.must("webhooks", "set", "--env", "dev", "--url", r.srv.URL+"/hook"))
		client := &http.Client{Timeout: 10 * time.Second}

		first := startServeProcess(t, c, client)
		if status, body := postConnection(t, client, first.addr, apiKey,
			`{"provider_config_key":"gh","connection_id":"killed","credentials":{"type":"OAUTH2","access_token":"tok-killed"}}`); status != http.StatusOK {
			t.Fatalf("import %d %s", status, body)
		}
		if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-first.done

		r.mu.Lock()
		r.hold = false
		r.mu.Unlock()
		second := startServeProcess(t, c, client)
		h := r.next(t, 60*time.Second)
		var ev map[string]any
		if err := json.Unmarshal(h.body, &ev); err != nil || ev["connectionId"] != "killed" || ev["operation"] != "creation" {
			t.Fatalf("webhook %s (%v)", h.body, err)
		}
		if h.header.Get("X-Nango-Hmac-Sha256") != webhook.HMAC([]byte(signing), h.body) {
			t.Error("the webhook is not signed with the environment's key")
		}
		second.stop(t)
		for name, logs := range map[string]string{"first": first.stderr.String(), "second": second.stderr.String()} {
			for _, secret := range []string{signing, apiKey, "tok-killed"} {
				if strings.Contains(logs, secret) {
					t.Errorf("the %s server logged a secret", name)
				}
			}
		}
		if !strings.Contains(second.stderr.String(), `"msg":"webhook attempt"`) {
			t.Errorf("no attempt log line:\n%s", second.stderr)
		}
	})
}

// TestWebhooksAcrossTwoServers: two servers on one PostgreSQL deliver 200 events, none lost and
// none sent twice.
func TestWebhooksAcrossTwoServers(t *testing.T) {
	var pg storetest.Backend
	for _, b := range storetest.Backends() {
		if b.Name == "postgres" {
			pg = b
		}
	}
	c := newCLI(t, pg)
	c.env["CREDPORT_OUTBOUND_ALLOW_PRIVATE"] = "true"
	c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2")
	apiKey := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "k"))
	r := newHookReceiver(t)
	c.must("webhooks", "set", "--env", "dev", "--url", r.srv.URL+"/hook")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	servers := []*serveProcess{startServeProcess(t, c, client), startServeProcess(t, c, client)}

	const events = 200
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < events; i += 8 {
				body := fmt.Sprintf(`{"provider_config_key":"gh","connection_id":"c-%03d","credentials":{"type":"OAUTH2","access_token":"t"}}`, i)
				if status, resp := postConnection(t, client, servers[i%2].addr, apiKey, body); status != http.StatusOK {
					t.Errorf("import %d: %d %s", i, status, resp)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	conns := map[string]bool{}
	for len(conns) < events {
		h := r.next(t, 60*time.Second)
		seen[h.header.Get("X-Credport-Delivery-Id")]++
		var ev map[string]any
		_ = json.Unmarshal(h.body, &ev)
		conns[fmt.Sprint(ev["connectionId"])] = true
	}
	// Once every row is recorded delivered, nothing more can be sent.
	waitFor(t, 30*time.Second, "every delivery recorded", func() bool {
		got := c.query(`SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'`)
		return len(got) == 1 && got[0] == "0"
	})
	for _, s := range servers {
		s.stop(t)
	}
	for more := true; more; {
		select {
		case h := <-r.got:
			seen[h.header.Get("X-Credport-Delivery-Id")]++
		default:
			more = false
		}
	}
	if len(seen) != events {
		t.Errorf("%d delivery ids, want %d", len(seen), events)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("delivery %s sent %d times", id, n)
		}
	}
	if got := c.query(`SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'`); len(got) != 1 || got[0] != "0" {
		t.Errorf("undelivered rows: %v", got)
	}
}

// TestImportNoWebhooks: `credport import --no-webhooks` queues no creation or override webhook
// for its records, in batches and one by one; a run without it queues one per record.
func TestImportNoWebhooks(t *testing.T) {
	inEveryMode(t, func(t *testing.T, e *importEnv) {
		e.c.must("webhooks", "set", "--env", "dev", "--url", "https://hooks.invalid/credport")
		records := func(prefix string) string {
			var b strings.Builder
			for i := range 4 {
				fmt.Fprintf(&b, `{"provider_config_key":"api_key","connection_id":"%s-%d","credentials":{"type":"API_KEY","apiKey":"k"}}`+"\n", prefix, i)
			}
			return b.String()
		}
		queued := func() string {
			return strings.Join(e.c.query(`SELECT count(*) FROM webhook_deliveries`), "")
		}
		if r := e.run(nil, nil, "--url", e.url, "--no-webhooks", e.write(t, "quiet.jsonl", records("quiet"))); r.code != 0 {
			t.Fatalf("import --no-webhooks: %d %v\n%s", r.code, r.err, r.stderr)
		}
		if got := queued(); got != "0" {
			t.Fatalf("--no-webhooks queued %s webhooks", got)
		}
		if r := e.run(nil, nil, "--url", e.url, e.write(t, "loud.jsonl", records("quiet"))); r.code != 0 {
			t.Fatalf("import: %d %v\n%s", r.code, r.err, r.stderr)
		}
		if got := queued(); got != "4" {
			t.Fatalf("an import without --no-webhooks queued %s webhooks, want 4 overrides", got)
		}
	})
}
