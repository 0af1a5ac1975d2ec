// Package webhook delivers the auth webhooks queued in the store's outbox: signed as the
// reference signs them, at least once, with backoff, to public addresses only.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/store"
)

// Defaults of the sender's configuration.
const (
	DefaultTimeout = 20 * time.Second
	DefaultMaxAge  = 24 * time.Hour
	DefaultPoll    = time.Second
	// maxBackoff caps the delay between two attempts; firstBackoff bounds the first.
	maxBackoff   = 10 * time.Minute
	firstBackoff = time.Second
	// retention is how long delivered rows are kept; pruneEvery how often they are pruned.
	retention  = 7 * 24 * time.Hour
	pruneEvery = time.Hour
	// batch is how many deliveries one round claims, concurrency how many it sends at once.
	batch       = 64
	concurrency = 8
	// leaseMargin is how long a claim outlasts an attempt's timeout: time to record the attempt.
	// A sender that died holding claims frees them after Timeout + leaseMargin.
	leaseMargin = 10 * time.Second
)

// Config configures a Sender.
type Config struct {
	Store    *store.DB
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// UserAgent names credport and its version.
	UserAgent string
	// Timeout bounds each attempt; MaxAge how long an event is retried before it is failed.
	Timeout, MaxAge time.Duration
	// AllowPrivate lets webhooks go to loopback and private addresses.
	AllowPrivate bool
	// Poll is how often the outbox is looked at when it had nothing due.
	Poll time.Duration
	// Now, After and Jitter replace the clock, the timer and the random delay (for tests):
	// Jitter(d) is a delay in [0, d).
	Now    func() time.Time
	After  func(time.Duration) <-chan time.Time
	Jitter func(time.Duration) time.Duration
	// Transport replaces the HTTP transport (for tests); the outbound policy is then its own.
	Transport http.RoundTripper
}

// Sender delivers the outbox.
type Sender struct {
	cfg       Config
	client    *http.Client
	log       *slog.Logger
	outcomes  *prometheus.CounterVec
	lastPrune time.Time
}

// New builds a Sender and registers its metrics.
func New(cfg Config) (*Sender, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration { return rand.N(d) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "credport"
	}
	transport := cfg.Transport
	if transport == nil {
		dialer := &net.Dialer{Timeout: cfg.Timeout, Control: dialControl(cfg.AllowPrivate)}
		transport = &http.Transport{
			// No proxy: the policy is checked on the address dialed, which a proxy would hide.
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: cfg.Timeout,
		}
	}
	s := &Sender{
		cfg: cfg, log: cfg.Logger,
		client: &http.Client{
			Transport: transport,
			Timeout:   cfg.Timeout,
			// A redirect is an answer like any other non-2xx: retried, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credport_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: delivered, retry (will be attempted again), failed (given up).",
		}, []string{"outcome"}),
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(s.outcomes); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		if err := cfg.Registry.Register(backlogCollector{db: cfg.Store, now: cfg.Now}); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	for _, o := range []string{"delivered", "retry", "failed"} {
		s.outcomes.WithLabelValues(o)
	}
	return s, nil
}

// Run delivers until ctx ends. Attempts in flight then are cancelled and their deliveries
// released, to be attempted again by this or another server.
func (s *Sender) Run(ctx context.Context) {
	for {
		n := s.Round(ctx)
		if ctx.Err() != nil {
			return
		}
		if n == batch {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.After(s.cfg.Poll):
		}
	}
}

// Round claims the deliveries due now, attempts each once and records what happened. It
// returns how many it claimed.
func (s *Sender) Round(ctx context.Context) int {
	s.prune(ctx)
	claimCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	due, err := s.cfg.Store.ClaimWebhooks(claimCtx, s.cfg.Timeout+leaseMargin, batch)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "webhooks: claim", "error", err)
		}
		return 0
	}
	keys := map[int64][]byte{}
	var mu sync.Mutex
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, d := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() != nil {
				s.release(d)
				return
			}
			mu.Lock()
			key, ok := keys[d.EnvironmentID]
			mu.Unlock()
			if !ok {
				var err error
				if key, err = s.cfg.Store.WebhookKey(ctx, d.EnvironmentID); err != nil {
					s.log.WarnContext(ctx, "webhooks: signing key", "delivery_id", d.DeliveryID, "error", err)
					s.release(d)
					return
				}
				mu.Lock()
				keys[d.EnvironmentID] = key
				mu.Unlock()
			}
			s.attempt(ctx, d, key)
		})
	}
	wg.Wait()
	return len(due)
}

// attempt sends d once and records the outcome.
func (s *Sender) attempt(ctx context.Context, d store.WebhookDelivery, key []byte) {
	start := time.Now()
	status, sendErr := s.send(ctx, d, key)
	took := time.Since(start)
	if sendErr != nil && ctx.Err() != nil {
		// Shutting down cut the attempt short: it does not count. An answer that came counts.
		s.release(d)
		s.log.Info("webhook attempt", "delivery_id", d.DeliveryID, "operation", d.Operation, "host", hostOf(d.URL),
			"outcome", "released", "duration", took)
		return
	}
	a := store.WebhookAttempt{Status: status, Outcome: store.WebhookDelivered}
	if sendErr != nil || status < 200 || status > 299 {
		a.Error = attemptError(status, sendErr)
		now := s.cfg.Now()
		delay := s.backoff(d.Attempts + 1)
		if now.Add(delay).Sub(d.QueuedAt) > s.cfg.MaxAge {
			a.Outcome = store.WebhookFailed
		} else {
			a.Outcome, a.Next = store.WebhookPending, now.Add(delay)
		}
	}
	outcome := map[string]string{store.WebhookDelivered: "delivered", store.WebhookPending: "retry", store.WebhookFailed: "failed"}[a.Outcome]
	s.outcomes.WithLabelValues(outcome).Inc()
	attrs := []any{"delivery_id", d.DeliveryID, "operation", d.Operation, "host", hostOf(d.URL), "attempt", d.Attempts + 1,
		"status", status, "outcome", outcome, "duration", took}
	if a.Error != "" {
		attrs = append(attrs, "error", a.Error)
	}
	s.log.Info("webhook attempt", attrs...)
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Store.RecordWebhookAttempt(recCtx, d, a); err != nil {
		s.log.Warn("webhooks: record attempt", "delivery_id", d.DeliveryID, "error", err)
	}
}

// send posts d's body, signed, and returns the receiver's status.
func (s *Sender) send(ctx context.Context, d store.WebhookDelivery, key []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set("X-Nango-Hmac-Sha256", HMAC(key, d.Body))
	req.Header.Set("X-Nango-Signature", LegacySignature(key, d.Body))
	req.Header.Set("X-Credport-Delivery-Id", d.DeliveryID)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// backoff is the delay before attempt n+1 after n failures: full jitter under an exponential
// cap, 1 s after the first failure, doubling up to 10 minutes.
func (s *Sender) backoff(failures int) time.Duration {
	ceiling := maxBackoff
	if failures <= 20 {
		ceiling = min(firstBackoff<<(failures-1), maxBackoff)
	}
	return s.cfg.Jitter(ceiling)
}

func (s *Sender) release(d store.WebhookDelivery) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Store.ReleaseWebhook(ctx, d); err != nil {
		s.log.Warn("webhooks: release", "delivery_id", d.DeliveryID, "error", err)
	}
}

// prune deletes, at most once an hour, the deliveries delivered more than 7 days ago.
func (s *Sender) prune(ctx context.Context) {
	now := s.cfg.Now()
	if now.Sub(s.lastPrune) < pruneEvery {
		return
	}
	s.lastPrune = now
	if _, err := s.cfg.Store.PruneWebhooks(ctx, now.Add(-retention)); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "webhooks: prune", "error", err)
	}
}

// attemptError says why an attempt failed, without the URL (which may carry a secret).
func attemptError(status int, err error) string {
	if err == nil {
		return fmt.Sprintf("HTTP %d", status)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return "timed out"
	}
	return err.Error()
}

// hostOf is the host of a URL, which the log may name; the URL's path and query may not be shown.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
