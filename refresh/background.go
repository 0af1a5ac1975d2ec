package refresh

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/credport/credport/store"
)

// Background refresh: how many due connections one round takes and how many it renews at once.
const (
	backgroundBatch       = 1000
	backgroundConcurrency = 4
)

// IntegrationFunc finds an integration by environment and unique key.
type IntegrationFunc func(ctx context.Context, envID int64, uniqueKey string) (store.Integration, error)

// Run renews, every interval (±10 %, so that replicas spread out), the tokens that will expire
// within the window, before anyone reads them. It returns when ctx ends.
func (r *Refresher) Run(ctx context.Context, interval time.Duration, integration IntegrationFunc) {
	for {
		jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(interval))
		select {
		case <-ctx.Done():
			return
		case <-r.after(interval + jitter):
		}
		r.backgroundRound(ctx, integration)
		r.rounds.Inc()
	}
}

// backgroundRound renews one batch of due tokens.
func (r *Refresher) backgroundRound(ctx context.Context, integration IntegrationFunc) {
	now := r.now()
	dbCtx, cancel := context.WithTimeout(ctx, r.dbTimeout)
	due, err := r.store.DueRefreshes(dbCtx, now.Add(r.window), now.Add(-r.backoff), maxFailures, backgroundBatch)
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

func (r *Refresher) backgroundRenew(ctx context.Context, d store.DueRefresh, integration IntegrationFunc) {
	dbCtx, cancel := context.WithTimeout(ctx, r.dbTimeout)
	in, err := integration(dbCtx, d.EnvironmentID, d.ProviderConfigKey)
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

// isUnexpected tells an error that a refresh does not record on the connection itself, nor
// explain: neither a refresh Error nor a connection deleted meanwhile.
func isUnexpected(err error) bool {
	var e *Error
	return !errors.As(err, &e) && !errors.Is(err, store.ErrNotFound)
}
