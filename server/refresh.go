package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

// RefreshStore is what a Store also offers when it can renew OAuth tokens. Without it no token is
// ever refreshed, as if no integration had a token URL.
type RefreshStore interface {
	IntegrationClientSecret(ctx context.Context, in store.Integration) (string, error)
	RefreshConnection(ctx context.Context, in store.ReadConnection, refresh func(context.Context, store.RefreshState) store.RefreshResult) error
	DueRefreshes(ctx context.Context, before, failedBefore time.Time, maxFailures, limit int) ([]store.DueRefresh, error)
}

// maxRefreshFailures is how many refusals in a row exhaust a connection: it is not refreshed
// again until it is re-imported.
const maxRefreshFailures = 5

// refresher renews the tokens of OAUTH2 and OAUTH2_CC connections, one refresh per connection
// at a time: concurrent callers in this process share one flight, and the store's lock orders
// the flights of several processes.
type refresher struct {
	store   RefreshStore // nil when the store cannot refresh
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
	outcomes refreshCounter
}

// refreshable tells whether connections of the integration have tokens that can be renewed.
func refreshable(in store.Integration) bool {
	return in.AuthMode == "OAUTH2" || in.AuthMode == "OAUTH2_CC"
}

// renewIfDue renews the connection's token when it expires within the window or when forced. It
// tells whether the stored credentials changed (the caller reads them again), or answers the
// error the read must give.
func (r *refresher) renewIfDue(ctx context.Context, target store.ReadConnection, conn store.Connection, force bool) (bool, error) {
	in, now := target.Integration, r.now()
	due := force || (conn.Refresh.ExpiresAt != nil && !conn.Refresh.ExpiresAt.After(now.Add(r.window)))
	if !due {
		return false, nil
	}
	if in.TokenURL == "" || r.store == nil {
		if force {
			return false, newError(http.StatusBadRequest, "invalid_credentials",
				"Cannot refresh: token refresh is not configured for the integration "+in.UniqueKey)
		}
		return false, nil
	}
	if err := r.gate(conn.Refresh.Failures, conn.Refresh.FailedAt, force, now); err != nil {
		r.outcomes.inc(triggerRead, "blocked")
		return false, err
	}
	changed, err := r.fly(ctx, target, conn.Credentials, force, now, triggerRead)
	if err != nil && !force && isProviderUnavailable(err) && stillValid(conn.Credentials, r.now()) {
		// The stored token still works: hand it out. It stays due, so the next read or
		// background round tries again.
		r.log.InfoContext(ctx, "provider unavailable, stored token answered", "environment_id", target.EnvironmentID,
			"integration", in.UniqueKey, "connection_id", target.ConnectionID)
		return false, nil
	}
	return changed, err
}

// isProviderUnavailable tells a refresh error that says the provider could not be reached, as
// opposed to a refusal.
func isProviderUnavailable(err error) bool {
	var apiErr *Error
	return errors.As(err, &apiErr) && apiErr.Code == "provider_unavailable"
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

// fly joins the flight of the connection's refresh in this process, or starts it.
func (r *refresher) fly(ctx context.Context, target store.ReadConnection, seen []byte, force bool, started time.Time, trigger string) (bool, error) {
	key := strconv.FormatInt(target.EnvironmentID, 10) + "\x00" + target.Integration.UniqueKey + "\x00" + target.ConnectionID
	res := r.flights.DoChan(key, func() (any, error) {
		// The flight outlives the request that started it: the others waiting on it need its end.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.client.Timeout+2*r.dbTimeout)
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
func (r *refresher) gate(failures int, failedAt *time.Time, force bool, now time.Time) error {
	if failures >= maxRefreshFailures {
		return newError(http.StatusFailedDependency, "invalid_credentials",
			"The refresh limit has been reached for this connection. Import it again with working credentials.")
	}
	if !force && failures > 0 && failedAt != nil && now.Before(failedAt.Add(r.backoff)) {
		return newError(http.StatusFailedDependency, "invalid_credentials",
			"A recent refresh attempt failed. Backing off before retrying.")
	}
	return nil
}

// refresh holds the connection, decides again on what is stored now, and calls the provider
// when still needed. seen are the credentials the caller read at time started; nil when it read
// none and the stored expiry decides.
func (r *refresher) refresh(ctx context.Context, target store.ReadConnection, seen []byte, force bool, started time.Time, trigger string) (bool, error) {
	var (
		changed bool
		failure error
	)
	err := r.store.RefreshConnection(ctx, target, func(ctx context.Context, st store.RefreshState) store.RefreshResult {
		if seen == nil && (st.ExpiresAt == nil || st.ExpiresAt.After(r.now().Add(r.window))) {
			return store.RefreshResult{} // renewed since it was found due
		}
		if seen != nil && !bytes.Equal(st.Credentials, seen) {
			changed = true // renewed or re-imported while this caller waited
			r.outcomes.inc(trigger, "shared")
			return store.RefreshResult{}
		}
		if st.UnavailableAt != nil && !st.UnavailableAt.Before(started) {
			failure = r.unavailable(errors.New("another refresh of this connection just failed"))
			r.outcomes.inc(trigger, "shared")
			return store.RefreshResult{}
		}
		if err := r.gate(st.Failures, st.FailedAt, force, r.now()); err != nil {
			failure = err
			r.outcomes.inc(trigger, "blocked")
			return store.RefreshResult{}
		}
		res, err := r.renew(ctx, target.Integration, st.Credentials)
		failure = err
		if res.Outcome == store.RefreshRenewed {
			changed = true
		}
		r.outcomes.inc(trigger, outcomeLabel(res.Outcome, err))
		r.log.InfoContext(ctx, "token refresh", "environment_id", target.EnvironmentID,
			"integration", target.Integration.UniqueKey, "connection_id", target.ConnectionID,
			"trigger", trigger, "outcome", outcomeLabel(res.Outcome, err), "log_id", res.LogID, "error", res.Error)
		return res
	})
	if err != nil {
		return false, fmt.Errorf("refresh: %w", err)
	}
	return changed, failure
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

// renew asks the provider for new credentials in place of stored ones.
func (r *refresher) renew(ctx context.Context, in store.Integration, stored json.RawMessage) (store.RefreshResult, error) {
	var creds map[string]any
	if err := json.Unmarshal(stored, &creds); err != nil {
		return store.RefreshResult{}, fmt.Errorf("stored credentials: %w", err)
	}
	endpoint := provider.Endpoint{TokenURL: in.TokenURL, TokenAuth: in.TokenAuth, Scopes: provider.Scopes(in.Scopes)}
	var (
		tok provider.Token
		err error
	)
	switch creds["type"] {
	case "OAUTH2":
		refreshToken, _ := creds["refresh_token"].(string)
		if refreshToken == "" {
			return store.RefreshResult{Outcome: store.RefreshImpossible}, newError(http.StatusBadRequest, "invalid_credentials",
				"Cannot refresh: the connection has no refresh token")
		}
		if endpoint.ClientID, endpoint.ClientSecret, err = r.clientCredentials(ctx, in, creds); err != nil {
			return store.RefreshResult{}, err
		}
		tok, err = r.client.Refresh(ctx, endpoint, refreshToken)
	case "OAUTH2_CC":
		endpoint.ClientID, _ = creds["client_id"].(string)
		endpoint.ClientSecret, _ = creds["client_secret"].(string)
		tok, err = r.client.ClientCredentials(ctx, endpoint)
	default:
		return store.RefreshResult{Outcome: store.RefreshImpossible}, newError(http.StatusBadRequest, "invalid_credentials",
			fmt.Sprintf("Cannot refresh credentials of type %v", creds["type"]))
	}
	var refused *provider.RefusedError
	var unavailable *provider.UnavailableError
	switch {
	case errors.As(err, &refused):
		logID, idErr := newLogID()
		if idErr != nil {
			return store.RefreshResult{}, idErr
		}
		return store.RefreshResult{Outcome: store.RefreshRefused, Error: refused.Error(), LogID: logID},
			newError(http.StatusBadRequest, "invalid_credentials",
				"The provider refused to refresh the access token: "+refusalReason(refused))
	case errors.As(err, &unavailable):
		return store.RefreshResult{Outcome: store.RefreshUnavailable}, r.unavailable(err)
	case err != nil:
		return store.RefreshResult{}, err
	}
	renewed, err := renewedCredentials(creds, tok)
	if err != nil {
		return store.RefreshResult{}, err
	}
	return store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: renewed, ExpiresAt: tok.ExpiresAt}, nil
}

// clientCredentials are the client id and secret an OAUTH2 refresh authenticates with: the
// connection's config_override when it has one, else the integration's.
func (r *refresher) clientCredentials(ctx context.Context, in store.Integration, creds map[string]any) (string, string, error) {
	if override, ok := creds["config_override"].(map[string]any); ok {
		id, _ := override["client_id"].(string)
		secret, _ := override["client_secret"].(string)
		if id != "" && secret != "" {
			return id, secret, nil
		}
	}
	secret, err := r.store.IntegrationClientSecret(ctx, in)
	if err != nil {
		return "", "", err
	}
	return in.ClientID, secret, nil
}

// renewedCredentials are stored credentials with the provider's new token in place.
func renewedCredentials(creds map[string]any, tok provider.Token) (json.RawMessage, error) {
	out := map[string]any{"type": creds["type"], "raw": tok.Raw}
	switch creds["type"] {
	case "OAUTH2":
		out["access_token"] = tok.AccessToken
		if tok.RefreshToken != "" {
			out["refresh_token"] = tok.RefreshToken
		}
		if override, ok := creds["config_override"]; ok {
			out["config_override"] = override
		}
	case "OAUTH2_CC":
		out["token"] = tok.AccessToken
		out["client_id"], out["client_secret"] = creds["client_id"], creds["client_secret"]
	}
	if tok.ExpiresAt != nil {
		out["expires_at"] = tok.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	renewed, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("renewed credentials: %w", err)
	}
	return renewed, nil
}

func refusalReason(e *provider.RefusedError) string {
	switch {
	case e.Code != "" && e.Description != "":
		return e.Code + ": " + e.Description
	case e.Code != "":
		return e.Code
	case e.Description != "":
		return e.Description
	}
	return "HTTP " + strconv.Itoa(e.Status)
}

func (r *refresher) unavailable(cause error) error {
	return fmt.Errorf("token refresh: %w: %w", cause, newError(http.StatusBadGateway, "provider_unavailable",
		"The provider could not be reached to refresh the access token. Please try again later."))
}

// newLogID names one refusal, in the connection's errors and in the log.
func newLogID() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", fmt.Errorf("log id: %w", err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}
