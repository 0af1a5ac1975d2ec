package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
	"github.com/credport/credport/webhook"
)

// fakeResolver answers every host with the addresses it is given.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestValidateURL(t *testing.T) {
	r := fakeResolver{
		"public.example": {"93.184.216.34"}, "rebind.example": {"127.0.0.1"}, "mixed.example": {"93.184.216.34", "10.0.0.1"},
		"metadata.example": {"169.254.169.254"}, "v6.example": {"2606:4700::1"},
	}
	for _, tc := range []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"", false, true},
		{"https://public.example/hook", false, true},
		{"http://v6.example/hook", false, true},
		{"https://unresolved.example/hook", false, true}, // checked again when dialed
		{"ftp://public.example/", false, false},
		{"https:///nohost", false, false},
		{"https://user:pw@public.example/", false, false},
		{"http://rebind.example/", false, false},
		{"http://rebind.example/", true, true},
		{"http://mixed.example/", false, false},
		{"http://mixed.example/", true, true},
		{"http://127.0.0.1/", false, false},
		{"http://[::1]/", false, false},
		{"http://[::1]/", true, true},
		{"http://192.168.1.1/", true, true},
		{"http://0.0.0.0/", true, false},
		{"http://224.0.0.1/", true, false},
		{"http://169.254.169.254/", true, false},
		{"http://metadata.example/", true, false},
		{"http://[fe80::1]/", true, false},
		{"http://[fd00:ec2::254]/", true, false},
		{"http://[::ffff:127.0.0.1]/", false, false},
	} {
		err := webhook.ValidateURL(context.Background(), tc.url, tc.allowPrivate, r)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateURL(%q, allowPrivate=%v) = %v, want ok=%v", tc.url, tc.allowPrivate, err, tc.ok)
		}
	}
}

// fixture is a store with webhook settings for "dev" pointing at url, and a Sender on a test
// clock with the longest backoff.
type fixture struct {
	db     *store.DB
	sender *webhook.Sender
	now    time.Time
	envID  int64
	in     store.Integration
	logs   *bytes.Buffer
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, b storetest.Backend, url string, timeout time.Duration) *fixture {
	t.Helper()
	f := &fixture{db: storetest.Open(t, b), now: time.Now().UTC().Truncate(time.Second), logs: &bytes.Buffer{}, reg: prometheus.NewRegistry()}
	f.db.Now = func() time.Time { return f.now }
	ctx := context.Background()
	var err error
	if f.in, err = f.db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "k", Provider: "fake", AuthMode: "API_KEY"}); err != nil {
		t.Fatal(err)
	}
	f.envID = f.in.EnvironmentID
	if _, _, err := f.db.SetWebhookSettings(ctx, f.envID, store.WebhookSettingsChange{PrimaryURL: &url}); err != nil {
		t.Fatal(err)
	}
	f.sender, err = webhook.New(webhook.Config{
		Store: f.db, Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), Registry: f.reg, AllowPrivate: true, Timeout: timeout,
		Now: func() time.Time { return f.now }, Jitter: func(d time.Duration) time.Duration { return d },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) importOne(t *testing.T, id string) {
	t.Helper()
	if _, err := f.db.UpsertConnection(context.Background(), store.UpsertConnection{EnvironmentID: f.envID, Integration: f.in,
		ConnectionID: id, Credentials: json.RawMessage(`{"type":"API_KEY","apiKey":"secret-api-key"}`)}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) only(t *testing.T) store.WebhookDelivery {
	t.Helper()
	list, err := f.db.ListWebhookDeliveries(context.Background(), f.envID, "", 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("deliveries %+v, %v", list, err)
	}
	return list[0]
}

// TestSenderRedirectTimeoutAndMetrics: a redirect is an answer, not followed; a receiver that
// hangs times the attempt out; both are retried later, and the metrics and the log tell them.
func TestSenderRedirectTimeoutAndMetrics(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		followed := make(chan struct{}, 10)
		target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed <- struct{}{} }))
		defer target.Close()
		hang := make(chan struct{})
		var mode atomic.Value
		mode.Store("redirect")
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch mode.Load() {
			case "redirect":
				http.Redirect(w, r, target.URL, http.StatusFound)
			case "hang":
				select {
				case <-hang:
				case <-r.Context().Done():
				}
			default:
				w.WriteHeader(http.StatusNoContent)
			}
		}))
		defer recv.Close()
		defer close(hang)

		f := newFixture(t, b, recv.URL+"/hook?token=url-secret", 300*time.Millisecond)
		f.importOne(t, "c")
		if n := f.sender.Round(context.Background()); n != 1 {
			t.Fatalf("claimed %d", n)
		}
		if d := f.only(t); d.Status != store.WebhookPending || d.LastStatus == nil || *d.LastStatus != http.StatusFound {
			t.Fatalf("after a redirect: %+v", d)
		}
		if len(followed) != 0 {
			t.Fatal("the redirect was followed")
		}
		mode.Store("hang")
		f.now = f.now.Add(time.Second)
		f.sender.Round(context.Background())
		if d := f.only(t); d.Status != store.WebhookPending || d.LastError != "timed out" || d.Attempts != 2 {
			t.Fatalf("after a hang: %+v", d)
		}
		mode.Store("ok")
		f.now = f.now.Add(2 * time.Second)
		f.sender.Round(context.Background())
		if d := f.only(t); d.Status != store.WebhookDelivered || d.Attempts != 3 {
			t.Fatalf("after 204: %+v", d)
		}
		if got := metric(t, f.reg, "credport_webhook_deliveries_total", "retry"); got != 2 {
			t.Errorf("retry metric %v, want 2", got)
		}
		if got := metric(t, f.reg, "credport_webhook_deliveries_total", "delivered"); got != 1 {
			t.Errorf("delivered metric %v, want 1", got)
		}
		f.importOne(t, "d")
		f.now = f.now.Add(time.Minute)
		families, err := f.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		gauges := map[string]float64{}
		for _, mf := range families {
			if mf.GetType().String() == "GAUGE" {
				gauges[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if gauges["credport_webhook_pending"] != 1 || gauges["credport_webhook_oldest_pending_age_seconds"] != 60 {
			t.Errorf("gauges %v, want 1 pending, 60 s old", gauges)
		}
		lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("%d log lines for 3 attempts:\n%s", len(lines), f.logs)
		}
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] != "webhook attempt" || m["delivery_id"] == "" || m["duration"] == nil {
				t.Errorf("log line %s", l)
			}
		}
		for _, secret := range []string{"url-secret", "secret-api-key"} {
			if strings.Contains(f.logs.String(), secret) {
				t.Errorf("the log shows %s", secret)
			}
		}
	})
}

// metric is the counter of name with the one label value given.
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// TestSenderShutdownReleases: when Run's context ends during an attempt, the attempt is cancelled
// and its delivery released uncounted, at once claimable by another sender.
func TestSenderShutdownReleases(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		arrived := make(chan struct{}, 10)
		release := make(chan struct{})
		recv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client going away
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer recv.Close()
		defer close(release)
		f := newFixture(t, b, recv.URL+"/hook", time.Minute)
		f.importOne(t, "c")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.sender.Run(ctx)
		}()
		<-arrived
		cancel()
		<-done
		d := f.only(t)
		if d.Status != store.WebhookPending || d.Attempts != 0 {
			t.Fatalf("after shutdown: %+v", d)
		}
		if claimed, err := f.db.ClaimWebhooks(context.Background(), time.Minute, 10); err != nil || len(claimed) != 1 {
			t.Fatalf("claimable after shutdown: %d, %v", len(claimed), err)
		}
	})
}
