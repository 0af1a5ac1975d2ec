package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
	"github.com/credport/credport/webhook"
)

// hook is one webhook a receiver got.
type hook struct {
	header http.Header
	body   []byte
}

// receiver is an httptest receiver of webhooks: it records what it gets and answers the
// statuses it is told, then 200. It can be closed and brought back on its address.
type receiver struct {
	t    *testing.T
	srv  *httptest.Server
	addr string
	got  chan hook
	mu   sync.Mutex
	// answers are the statuses of the next requests, in order.
	answers []int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, got: make(chan hook, 1000)}
	r.start("127.0.0.1:0")
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *receiver) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		r.got <- hook{header: req.Header.Clone(), body: body}
		r.mu.Lock()
		status := http.StatusOK
		if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) answer(statuses ...int) {
	r.mu.Lock()
	r.answers = append(r.answers, statuses...)
	r.mu.Unlock()
}

// take returns what the receiver got so far. A Round has returned only once every request it
// sent was answered, and the receiver records a request before answering it.
func (r *receiver) take() []hook {
	var out []hook
	for {
		select {
		case h := <-r.got:
			out = append(out, h)
		default:
			return out
		}
	}
}

// webhookEnv is a refresh env whose webhooks a Sender delivers one Round at a time, on the
// test's clock, with the longest backoff (no random delay).
type webhookEnv struct {
	refreshEnv
	clk    *clock
	sender *webhook.Sender
	// key is the environment's signing key once settings are made.
	key string
}

func newWebhookEnv(t *testing.T, b storetest.Backend) *webhookEnv {
	return newWebhookEnvWith(t, b, true)
}

func newWebhookEnvWith(t *testing.T, b storetest.Backend, allowPrivate bool) *webhookEnv {
	t.Helper()
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	v := newRefreshEnv(t, b, server.Config{Now: clk.Now, OutboundAllowPrivate: true})
	logger := slog.New(slog.NewJSONHandler(v.logs, nil))
	s, err := webhook.New(webhook.Config{
		Store: v.db, Logger: logger, UserAgent: "credport/test", AllowPrivate: allowPrivate,
		Now: clk.Now, Jitter: func(d time.Duration) time.Duration { return d }, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &webhookEnv{refreshEnv: v, clk: clk, sender: s}
}

// settings sets the webhook settings of "dev" and keeps the signing key.
func (v *webhookEnv) settings(ch store.WebhookSettingsChange) {
	v.t.Helper()
	envID, err := v.db.EnvironmentID(context.Background(), "dev")
	if err != nil {
		v.t.Fatal(err)
	}
	_, key, err := v.db.SetWebhookSettings(context.Background(), envID, ch)
	if err != nil {
		v.t.Fatal(err)
	}
	if key != "" {
		v.key = key
		v.secrets.add(key)
	}
}

// round runs one delivery round and returns how many deliveries it claimed.
func (v *webhookEnv) round() int { return v.sender.Round(context.Background()) }

// event checks h's headers and signatures and decodes its body.
func (v *webhookEnv) event(t *testing.T, h hook) map[string]any {
	t.Helper()
	if got := h.header.Get("X-Nango-Hmac-Sha256"); got != webhook.HMAC([]byte(v.key), h.body) {
		t.Errorf("X-Nango-Hmac-Sha256 %q does not sign the body", got)
	}
	if got := h.header.Get("X-Nango-Signature"); got != webhook.LegacySignature([]byte(v.key), h.body) {
		t.Errorf("X-Nango-Signature %q does not sign the body", got)
	}
	if h.header.Get("Content-Type") != "application/json" || h.header.Get("User-Agent") != "credport/test" ||
		h.header.Get("X-Credport-Delivery-Id") == "" {
		t.Errorf("headers %v", h.header)
	}
	var m map[string]any
	if err := json.Unmarshal(h.body, &m); err != nil {
		t.Fatalf("body %s: %v", h.body, err)
	}
	return m
}

func strp(s string) *string { return &s }
func boolp(b bool) *bool    { return &b }

// TestWebhookCreationThenOverride: an import that creates a connection sends "creation", a
// re-import "override", each with every field and both signatures; each once.
func TestWebhookCreationThenOverride(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newWebhookEnv(t, b)
		r := newReceiver(t)
		v.settings(store.WebhookSettingsChange{PrimaryURL: strp(r.url())})
		body := `{"provider_config_key":"oauth","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"tok-webhook-1"},
			"tags":{"team":"core"},"end_user":{"id":"u1","email":"u1@acme.test"}}`
		v.importOK(body)
		v.clk.Add(time.Second)
		v.importOK(body)
		if n := v.round(); n != 2 {
			t.Fatalf("claimed %d, want 2", n)
		}
		got := r.take()
		if len(got) != 2 {
			t.Fatalf("receiver got %d webhooks, want 2", len(got))
		}
		// One round sends its events at once, in no set order.
		if strings.Contains(string(got[0].body), `"override"`) {
			got[0], got[1] = got[1], got[0]
		}
		for i, op := range []string{"creation", "override"} {
			m := v.event(t, got[i])
			want := map[string]any{
				"from": "credport", "type": "auth", "operation": op, "connectionId": "c1", "providerConfigKey": "oauth",
				"provider": "fake", "authMode": "OAUTH2", "environment": "dev", "success": true,
			}
			for k, w := range want {
				if m[k] != w {
					t.Errorf("%s: %s = %v, want %v", op, k, m[k], w)
				}
			}
			if !jsonEqual(t, m["endUser"], `{"endUserId":"u1","endUserEmail":"u1@acme.test","organizationId":null,"tags":{}}`) {
				t.Errorf("%s: endUser %v", op, m["endUser"])
			}
			if tags, _ := m["tags"].(map[string]any); tags["team"] != "core" {
				t.Errorf("%s: tags %v", op, m["tags"])
			}
			if strings.Contains(string(got[i].body), "tok-webhook-1") {
				t.Errorf("%s: the body carries the token", op)
			}
		}
		if got[0].header.Get("X-Credport-Delivery-Id") == got[1].header.Get("X-Credport-Delivery-Id") {
			t.Error("two events share a delivery id")
		}
		if n := v.round(); n != 0 || len(r.take()) != 0 {
			t.Errorf("a delivered event was claimed again (%d)", n)
		}
	})
}

// TestWebhookSwitchesAndDestinations: on-auth-creation and on-auth-refresh-error switch their
// events off; the secondary URL gets every event too; a connection's override (PATCH) and an
// import's own (webhook_url_override) replace both; no_webhooks sends none.
func TestWebhookSwitchesAndDestinations(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newWebhookEnv(t, b)
		primary, secondary, override := newReceiver(t), newReceiver(t), newReceiver(t)
		v.settings(store.WebhookSettingsChange{PrimaryURL: strp(primary.url()), SecondaryURL: strp(secondary.url())})
		imp := func(id, extra string) {
			v.importOK(fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"t"}%s}`, id, extra))
			v.clk.Add(time.Second)
		}
		ops := func(t *testing.T, r *receiver) []string {
			t.Helper()
			var out []string
			for _, h := range r.take() {
				m := v.event(t, h)
				out = append(out, fmt.Sprintf("%v %v", m["operation"], m["connectionId"]))
			}
			return out
		}
		check := func(t *testing.T, r *receiver, want ...string) {
			t.Helper()
			if got := ops(t, r); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %q, want %q", got, want)
			}
		}

		t.Run("secondary URL", func(t *testing.T) {
			imp("a", "")
			v.round()
			p, s := primary.take(), secondary.take()
			if len(p) != 1 || len(s) != 1 || p[0].header.Get("X-Credport-Delivery-Id") != s[0].header.Get("X-Credport-Delivery-Id") {
				t.Fatalf("primary got %d, secondary %d, want one event each with one delivery id", len(p), len(s))
			}
		})
		t.Run("override by PATCH", func(t *testing.T) {
			res := v.on(t).do(request{method: http.MethodPatch, path: "/connections/a?provider_config_key=oauth",
				body: fmt.Sprintf(`{"webhook_url_override":%q}`, override.url())})
			if res.status != http.StatusOK {
				t.Fatalf("PATCH %d %s", res.status, res.body)
			}
			imp("a", "")
			v.round()
			check(t, override, "override a")
			check(t, primary)
			check(t, secondary)
		})
		t.Run("override in the import body", func(t *testing.T) {
			imp("b", fmt.Sprintf(`,"webhook_url_override":%q`, override.url()))
			v.round()
			check(t, override, "creation b")
			check(t, primary)
			imp("b", "")
			v.round()
			check(t, primary, "override b") // the body's override was this import's only
			check(t, secondary, "override b")
		})
		t.Run("no_webhooks", func(t *testing.T) {
			res := v.on(t).do(request{path: "/connections?no_webhooks=true",
				body: `{"provider_config_key":"oauth","connection_id":"quiet","credentials":{"type":"OAUTH2","access_token":"t"}}`})
			if res.status != http.StatusOK {
				t.Fatalf("import %d %s", res.status, res.body)
			}
			res = v.on(t).do(request{path: "/connections/batch?no_webhooks=true",
				body: `{"connections":[{"provider_config_key":"oauth","connection_id":"quiet2","credentials":{"type":"OAUTH2","access_token":"t"}}]}`})
			if res.status != http.StatusOK {
				t.Fatalf("batch %d %s", res.status, res.body)
			}
			v.round()
			check(t, primary)
			v.clk.Add(time.Second)
			res = v.on(t).do(request{path: "/connections/batch",
				body: `{"connections":[{"provider_config_key":"oauth","connection_id":"quiet2","credentials":{"type":"OAUTH2","access_token":"t"}}]}`})
			if res.status != http.StatusOK {
				t.Fatalf("batch %d %s", res.status, res.body)
			}
			v.round()
			check(t, primary, "override quiet2")
			secondary.take()
		})
		t.Run("on-auth-creation off", func(t *testing.T) {
			v.settings(store.WebhookSettingsChange{OnAuthCreation: boolp(false)})
			imp("c", "")
			imp("c", "")
			v.round()
			check(t, primary, "override c")
			secondary.take()
		})
		t.Run("refusal, then on-auth-refresh-error off", func(t *testing.T) {
			v.importExpiring("r")
			v.round()
			primary.take()
			secondary.take()
			v.provider.SetMode(providertest.InvalidGrant)
			v.read("r", "force_refresh=true")
			v.round()
			got := primary.take()
			if len(got) != 1 {
				t.Fatalf("primary got %d events after a refusal, want 1", len(got))
			}
			m := v.event(t, got[0])
			if m["operation"] != "refresh" || m["success"] != false {
				t.Errorf("refusal event %s", got[0].body)
			}
			e, _ := m["error"].(map[string]any)
			if e["type"] != "invalid_grant" || !strings.Contains(fmt.Sprint(e["description"]), "The refresh token is invalid or revoked") {
				t.Errorf("error %v", m["error"])
			}
			secondary.take()

			v.provider.SetMode(providertest.Fail) // unreachable: nothing is sent
			v.read("r", "force_refresh=true")
			v.round()
			check(t, primary)

			v.settings(store.WebhookSettingsChange{OnAuthRefreshError: boolp(false)})
			v.provider.SetMode(providertest.InvalidGrant)
			v.read("r", "force_refresh=true")
			v.round()
			check(t, primary)
		})
	})
}

// TestWebhookRetries: 500 twice then 200 delivers the event three times with one delivery id,
// after a backoff of 1 s then 2 s; a receiver closed for 10 s gets the event when it is back;
// an event older than the maximum age is failed.
func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newWebhookEnv(t, b)
		r := newReceiver(t)
		v.settings(store.WebhookSettingsChange{PrimaryURL: strp(r.url())})
		envID, _ := v.db.EnvironmentID(context.Background(), "dev")
		r.answer(500, 500)
		v.importOK(`{"provider_config_key":"oauth","connection_id":"c","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		var ids []string
		for i, wait := range []time.Duration{0, time.Second, 2 * time.Second} {
			v.clk.Add(wait - time.Millisecond)
			if n := v.round(); n != 0 && wait > 0 {
				t.Fatalf("attempt %d came before its backoff", i+1)
			}
			v.clk.Add(time.Millisecond)
			v.round()
			got := r.take()
			if len(got) != 1 {
				t.Fatalf("attempt %d: receiver got %d", i+1, len(got))
			}
			ids = append(ids, got[0].header.Get("X-Credport-Delivery-Id"))
		}
		if ids[0] != ids[1] || ids[1] != ids[2] {
			t.Errorf("delivery ids %v, want one", ids)
		}
		list, err := v.db.ListWebhookDeliveries(context.Background(), envID, "", 10)
		if err != nil || len(list) != 1 || list[0].Status != store.WebhookDelivered || list[0].Attempts != 3 {
			t.Fatalf("deliveries %+v, %v", list, err)
		}

		// The receiver is closed for 10 s.
		addr := r.addr
		r.srv.Close()
		v.importOK(`{"provider_config_key":"oauth","connection_id":"down","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		v.round()
		for range 3 {
			v.clk.Add(3 * time.Second)
			v.round()
		}
		r.start(addr)
		v.clk.Add(10 * time.Second)
		v.round()
		if got := r.take(); len(got) != 1 || v.event(t, got[0])["connectionId"] != "down" {
			t.Fatalf("after the receiver came back it got %d events", len(got))
		}

		// Past the maximum age the event is failed.
		r.answer(500)
		v.importOK(`{"provider_config_key":"oauth","connection_id":"old","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		v.clk.Add(webhook.DefaultMaxAge)
		v.round()
		r.take()
		failed, err := v.db.ListWebhookDeliveries(context.Background(), envID, store.WebhookFailed, 10)
		if err != nil || len(failed) != 1 || failed[0].ConnectionID != "old" || failed[0].LastStatus == nil || *failed[0].LastStatus != 500 {
			t.Fatalf("failed deliveries %+v, %v", failed, err)
		}
		if strings.Contains(v.logs.String(), "/hook") {
			t.Error("an attempt's log line shows the URL's path")
		}
	})
}

// TestWebhookOutboundPolicy: URLs the policy refuses are refused when set, and at delivery on
// the address dialed: a host that resolves to 127.0.0.1 without the allow flag, link-local even
// with it.
func TestWebhookOutboundPolicy(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		strict := newEnv(t, b)
		strict.integration("dev", "oauth", "OAUTH2")
		for _, u := range []string{"http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest", "ftp://a.example/"} {
			res := strict.on(t).do(request{body: fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":"x","credentials":{"type":"OAUTH2","access_token":"t"},"webhook_url_override":%q}`, u)})
			wantError(t, res, http.StatusBadRequest, "invalid_body")
		}

		v := newWebhookEnv(t, b) // allows private addresses
		for _, u := range []string{"http://169.254.169.254/latest", "http://[fe80::1]/hook"} {
			res := v.on(t).do(request{body: fmt.Sprintf(`{"provider_config_key":"oauth","connection_id":"x","credentials":{"type":"OAUTH2","access_token":"t"},"webhook_url_override":%q}`, u)})
			wantError(t, res, http.StatusBadRequest, "invalid_body")
		}

		// At delivery: localhost resolves to 127.0.0.1, which a sender without the flag refuses.
		r := newReceiver(t)
		_, port, _ := net.SplitHostPort(r.addr)
		hostURL := "http://localhost:" + port + "/hook"
		noPrivate := newWebhookEnvWith(t, b, false)
		noPrivate.settings(store.WebhookSettingsChange{PrimaryURL: strp(hostURL)}) // the store does not check
		noPrivate.importOK(`{"provider_config_key":"oauth","connection_id":"c","credentials":{"type":"OAUTH2","access_token":"t"}}`)
		noPrivate.round()
		if got := r.take(); len(got) != 0 {
			t.Fatalf("the receiver on 127.0.0.1 got %d webhooks", len(got))
		}
		envID, _ := noPrivate.db.EnvironmentID(context.Background(), "dev")
		list, err := noPrivate.db.ListWebhookDeliveries(context.Background(), envID, "", 10)
		if err != nil || len(list) != 1 || !strings.Contains(list[0].LastError, "refused outbound address") || list[0].Status != store.WebhookPending {
			t.Fatalf("deliveries %+v, %v", list, err)
		}
	})
}
