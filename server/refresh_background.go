package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/store"
)

// Background refresh: how many due connections one round takes and how many it renews at once.
const (
	backgroundBatch       = 1000
	backgroundConcurrency = 4
)

// runBackground renews, every interval (±10 %, so that replicas spread out), the tokens that will
// expire within the window, before anyone reads them. It returns when ctx ends.
func (r *refresher) runBackground(ctx context.Context, interval time.Duration, integration func(context.Context, integrationKey) (store.Integration, error)) {
	if r.store == nil {
		return
	}
	for {
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(interval))
		select {
		case <-ctx.Done():
			return
		case <-r.after(interval + jitter):
		}
		r.backgroundRound(ctx, integration)
		if r.rounds != nil {
			r.rounds.Inc()
		}
	}
}

// newBackgroundRounds counts the background refresh's finished rounds, which tells an operator
// (and a test) that the loop runs.
func newBackgroundRounds(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "credport_refresh_background_rounds_total",
		Help: "Rounds of the background token refresh that have finished.",
	})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}

// backgroundRound renews one batch of due tokens.
func (r *refresher) backgroundRound(ctx context.Context, integration func(context.Context, integrationKey) (store.Integration, error)) {
	now := r.now()
	dbCtx, cancel := context.WithTimeout(ctx, r.dbTimeout)
	due, err := r.store.DueRefreshes(dbCtx, now.Add(r.window), now.Add(-r.backoff), maxRefreshFailures, backgroundBatch)
	cancel()
	if err != nil {
		r.log.WarnContext(ctx, "background refresh: list due connections", "error", err)
		return
	}
	sem := make(chan struct{}, backgroundConcurrency)
	var wg sync.WaitGroup
	for _, d := range due {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r.backgroundRenew(ctx, d, integration)
		})
	}
	wg.Wait()
}

func (r *refresher) backgroundRenew(ctx context.Context, d store.DueRefresh, integration func(context.Context, integrationKey) (store.Integration, error)) {
	dbCtx, cancel := context.WithTimeout(ctx, r.dbTimeout)
	in, err := integration(dbCtx, integrationKey{d.EnvironmentID, d.ProviderConfigKey})
	cancel()
	if err != nil {
		r.log.WarnContext(ctx, "background refresh: integration", "integration", d.ProviderConfigKey, "error", err)
		return
	}
	target := store.ReadConnection{EnvironmentID: d.EnvironmentID, Integration: in, ConnectionID: d.ConnectionID}
	// A refusal or an unreachable provider is recorded on the connection and logged by refresh.
	if _, err := r.fly(ctx, target, nil, false, r.now(), triggerBackground); err != nil && isUnexpected(err) {
		r.log.WarnContext(ctx, "background refresh", "integration", d.ProviderConfigKey,
			"connection_id", d.ConnectionID, "error", err)
	}
}

// isUnexpected tells an error that a refresh does not record on the connection itself: neither a
// refusal nor an unreachable provider.
func isUnexpected(err error) bool {
	e := toAPIError(err)
	return e.Status >= 500 && e.Code != "provider_unavailable"
}
