// Package refresh renews the OAuth tokens of connections: when a read finds them due, when a
// read forces it, and in the background before anyone reads them. A connection is refreshed by
// one caller at a time across servers; the provider is called with no transaction or lock open.
package refresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

// Store is what refreshing needs of the database; *store.DB implements it.
type Store interface {
	// ClaimRefresh holds a connection for one refresh for lease, or answers
	// store.ErrRefreshClaimed while another refresh holds it.
	ClaimRefresh(ctx context.Context, in store.ReadConnection, lease time.Duration) (store.RefreshClaim, error)
	// RecordRefresh writes a refresh's result and releases its claim.
	RecordRefresh(ctx context.Context, c store.RefreshClaim, res store.RefreshResult) error
	DueRefreshes(ctx context.Context, before, failedBefore time.Time, maxFailures, limit int) ([]store.DueRefresh, error)
	IntegrationClientSecret(ctx context.Context, in store.Integration) (string, error)
}

// maxFailures is how many refusals in a row exhaust a connection: it is not refreshed again
// until it is re-imported.
const maxFailures = 5

// How often a refresh looks again at a connection that another refresh holds: soon at first,
// then less often, as a provider call takes a while.
const (
	firstPoll = 10 * time.Millisecond
	maxPoll   = 200 * time.Millisecond
)

// Config is what a Refresher needs.
type Config struct {
	Store  Store
	Client *provider.Client
	// Window: tokens expiring within it are renewed. Backoff: no unforced attempt follows a
	// refusal within it.
	Window, Backoff time.Duration
	// DBTimeout bounds the database work around a provider call.
	DBTimeout time.Duration
	Now       func() time.Time
	// After times the background rounds.
	After    func(time.Duration) <-chan time.Time
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Refresher renews the tokens of OAUTH2 and OAUTH2_CC connections, one refresh per connection
// at a time: concurrent callers in this process share one flight, and the store's claim orders
// the flights of several processes.
type Refresher struct {
	store   Store
	client  *provider.Client
	flights singleflight.Group
	// window: tokens expiring within it are renewed; backoff: no unforced attempt follows a
	// refusal within it.
	window, backoff time.Duration
	// dbTimeout bounds the database work around a provider call.
	dbTimeout time.Duration
	now       func() time.Time
	// after times the background rounds; rounds counts them.
	after    func(time.Duration) <-chan time.Time
	rounds   prometheus.Counter
	log      *slog.Logger
	outcomes counter
}

// New builds a Refresher and registers its metrics.
func New(cfg Config) (*Refresher, error) {
	if cfg.Store == nil || cfg.Client == nil {
		return nil, errors.New("refresh: a store and a provider client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	outcomes, err := newCounter(cfg.Registry)
	if err != nil {
		return nil, err
	}
	rounds, err := newBackgroundRounds(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Refresher{
		store: cfg.Store, client: cfg.Client, window: cfg.Window, backoff: cfg.Backoff, dbTimeout: cfg.DBTimeout,
		now: cfg.Now, after: cfg.After, rounds: rounds, log: cfg.Logger, outcomes: outcomes,
	}, nil
}

// Refreshable tells whether connections of the integration have tokens that can be renewed.
func Refreshable(in store.Integration) bool {
	return in.AuthMode == "OAUTH2" || in.AuthMode == "OAUTH2_CC"
}

// RenewIfDue renews the connection's token when it expires within the window or when forced. It
// tells whether the stored credentials changed (the caller reads them again), or answers the
// error the read must give: an *Error when the token was not renewed for a reason the caller is
// told.
func (r *Refresher) RenewIfDue(ctx context.Context, target store.ReadConnection, conn store.Connection, force bool) (bool, error) {
	in, now := target.Integration, r.now()
	due := force || (conn.Refresh.ExpiresAt != nil && !conn.Refresh.ExpiresAt.After(now.Add(r.window)))
	if !due {
		return false, nil
	}
	if in.TokenURL == "" {
		if force {
			return false, newError(Impossible, "Cannot refresh: token refresh is not configured for the integration "+in.UniqueKey)
		}
		return false, nil
	}
	if err := r.gate(conn.Refresh.Failures, conn.Refresh.FailedAt, force, now); err != nil {
		r.outcomes.inc(triggerRead, "blocked")
		return false, err
	}
	changed, err := r.fly(ctx, target, conn.Credentials, force, now, triggerRead)
	if err != nil && !force && isKind(err, Unavailable) && stillValid(conn.Credentials, r.now()) {
		// The stored token still works: hand it out. It stays due, so the next read or
		// background round tries again.
		return false, nil
	}
	return changed, err
}

// isKind tells whether err is a refresh Error of kind k.
func isKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// stillValid tells whether stored credentials hold a token that has not expired at now: its
// expires_at is later, or it has none, so that nothing says it has expired.
func stillValid(stored json.RawMessage, now time.Time) bool {
	var creds struct {
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal(stored, &creds); err != nil {
		return false
	}
	if creds.ExpiresAt == nil {
		return true
	}
	exp, err := time.Parse(time.RFC3339Nano, *creds.ExpiresAt)
	return err == nil && exp.After(now)
}

// What asked for a refresh, as metrics and the log name it.
const (
	triggerRead       = "read"
	triggerBackground = "background"
)

// flightTimeout bounds one flight: waiting for another refresh's claim, the provider's call and
// the database work around it.
func (r *Refresher) flightTimeout() time.Duration { return r.client.Timeout + 2*r.dbTimeout }

// lease is how long a claim holds a connection: longer than the provider's call and the write
// after it, so that only a refresh that died loses it.
func (r *Refresher) lease() time.Duration { return r.client.Timeout + 2*r.dbTimeout }

// fly joins the flight of the connection's refresh in this process, or starts it.
func (r *Refresher) fly(ctx context.Context, target store.ReadConnection, seen []byte, force bool, started time.Time, trigger string) (bool, error) {
	key := strconv.FormatInt(target.EnvironmentID, 10) + "\x00" + target.Integration.UniqueKey + "\x00" + target.ConnectionID
	res := r.flights.DoChan(key, func() (any, error) {
		// The flight outlives the request that started it: the others waiting on it need its end.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.flightTimeout())
		defer cancel()
		return r.refresh(fctx, target, seen, force, started, trigger)
	})
	gone := ctx.Done()
	for {
		select {
		case <-gone:
			if errors.Is(ctx.Err(), context.Canceled) {
				return false, ctx.Err()
			}
			// The request's deadline bounds its database work, not the provider's call: the
			// flight has a deadline of its own.
			gone = nil
		case out := <-res:
			changed, _ := out.Val.(bool)
			return changed, out.Err
		}
	}
}

// gate is the error of a refresh that must not be attempted: the connection is exhausted, or a
// refusal was recent and the refresh is not forced.
func (r *Refresher) gate(failures int, failedAt *time.Time, force bool, now time.Time) error {
	if failures >= maxFailures {
		return newError(Exhausted, "The refresh limit has been reached for this connection. Import it again with working credentials.")
	}
	if !force && failures > 0 && failedAt != nil && now.Before(failedAt.Add(r.backoff)) {
		return newError(BackingOff, "A recent refresh attempt failed. Backing off before retrying.")
	}
	return nil
}

// refresh claims the connection, waiting while another refresh holds it, decides again on what
// is stored now, and calls the provider when still needed, with no transaction open; the result
// is written after, and the claim released. seen are the credentials the caller read at time
// started; nil when it read none and the stored expiry decides.
func (r *Refresher) refresh(ctx context.Context, target store.ReadConnection, seen []byte, force bool, started time.Time, trigger string) (bool, error) {
	claim, err := r.claim(ctx, target)
	if err != nil {
		return false, fmt.Errorf("refresh: %w", err)
	}
	res, changed, failure := r.decide(ctx, target, claim.State, seen, force, started, trigger)
	// The result is written even when the flight's deadline has passed: the claim must end.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.dbTimeout)
	defer cancel()
	if err := r.store.RecordRefresh(wctx, claim, res); err != nil {
		return false, fmt.Errorf("refresh: %w", err)
	}
	return changed, failure
}

// claim holds the connection for this refresh, looking again while another refresh holds it.
func (r *Refresher) claim(ctx context.Context, target store.ReadConnection) (store.RefreshClaim, error) {
	wait := firstPoll
	for {
		claim, err := r.store.ClaimRefresh(ctx, target, r.lease())
		if !errors.Is(err, store.ErrRefreshClaimed) {
			return claim, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return store.RefreshClaim{}, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxPoll)
	}
}

// decide is what a refresh that holds the connection does with it, seeing st: nothing, when
// someone else renewed it meanwhile or it must not be attempted, else ask the provider.
func (r *Refresher) decide(ctx context.Context, target store.ReadConnection, st store.RefreshState, seen []byte,
	force bool, started time.Time, trigger string) (res store.RefreshResult, changed bool, failure error) {
	if seen == nil && (st.ExpiresAt == nil || st.ExpiresAt.After(r.now().Add(r.window))) {
		return store.RefreshResult{}, false, nil // renewed since it was found due
	}
	if seen != nil && !bytes.Equal(st.Credentials, seen) {
		r.outcomes.inc(trigger, "shared") // renewed or re-imported while this caller waited
		return store.RefreshResult{}, true, nil
	}
	if st.UnavailableAt != nil && !st.UnavailableAt.Before(started) {
		r.outcomes.inc(trigger, "shared")
		return store.RefreshResult{}, false, providerUnavailable(errors.New("another refresh of this connection just failed"))
	}
	if err := r.gate(st.Failures, st.FailedAt, force, r.now()); err != nil {
		r.outcomes.inc(trigger, "blocked")
		return store.RefreshResult{}, false, err
	}
	res, err := r.renew(ctx, target.Integration, st.Credentials)
	r.outcomes.inc(trigger, outcomeLabel(res.Outcome, err))
	if trigger == triggerBackground {
		// A read's refresh is on its request's access line; a background one has no request.
		r.log.InfoContext(ctx, "token refresh", "environment_id", target.EnvironmentID,
			"integration", target.Integration.UniqueKey, "connection_id", target.ConnectionID,
			"trigger", trigger, "outcome", outcomeLabel(res.Outcome, err), "log_id", res.LogID, "error", res.Error)
	}
	var failed *Error
	if errors.As(err, &failed) && res.LogID != "" {
		failed.LogID = res.LogID
	}
	return res, res.Outcome == store.RefreshRenewed, err
}

func outcomeLabel(o store.RefreshOutcome, err error) string {
	switch o {
	case store.RefreshRenewed:
		return "renewed"
	case store.RefreshRefused:
		return "refused"
	case store.RefreshUnavailable:
		return "unavailable"
	case store.RefreshImpossible:
		return "impossible"
	}
	if err != nil {
		return "error"
	}
	return "skipped"
}
