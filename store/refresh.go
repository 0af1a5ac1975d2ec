package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// RefreshState is a connection as a token refresh sees it once it has claimed the connection.
type RefreshState struct {
	Credentials json.RawMessage
	// ExpiresAt is when the credentials must be renewed; nil when never.
	ExpiresAt *time.Time
	// Failures counts the provider's refusals since the last import or successful refresh;
	// FailedAt is the latest of them.
	Failures int
	FailedAt *time.Time
	// UnavailableAt is when the provider last could not be reached for this connection.
	UnavailableAt *time.Time
}

// RefreshOutcome says what a refresh did, for RecordRefresh to write.
type RefreshOutcome int

const (
	// RefreshSkipped records nothing: the credentials were already fresh, someone else renewed
	// them, or the refresh cannot be attempted.
	RefreshSkipped RefreshOutcome = iota
	// RefreshRenewed stores new credentials and clears the refresh history.
	RefreshRenewed
	// RefreshRefused counts a refusal by the provider.
	RefreshRefused
	// RefreshUnavailable notes that the provider could not be reached; it counts no failure.
	RefreshUnavailable
	// RefreshImpossible notes that the credentials cannot be renewed (an OAUTH2 token without a
	// refresh token), so that they are no longer due.
	RefreshImpossible
)

// RefreshResult is what a refresh decided, for RecordRefresh to write.
type RefreshResult struct {
	Outcome RefreshOutcome
	// Credentials and ExpiresAt are the renewed credentials (RefreshRenewed).
	Credentials json.RawMessage
	ExpiresAt   *time.Time
	// Error says why the provider refused, without any token; LogID names the refusal in the
	// connection's errors and in the log (RefreshRefused).
	Error string
	LogID string
	// ProviderError and ProviderDescription are the provider's error and error_description,
	// which the refresh webhook carries (RefreshRefused).
	ProviderError, ProviderDescription string
}

// ErrRefreshClaimed means another refresh holds the connection: its result will be stored soon.
var ErrRefreshClaimed = errors.New("another refresh holds the connection")

// RefreshClaim is a connection held by one refresh until RecordRefresh releases it or its lease
// ends. State is the connection as it was when claimed.
type RefreshClaim struct {
	State  RefreshState
	target ReadConnection
	id     int64
	// token names this claim; sealed are the credentials as claimed, which a result may replace.
	token, sealed string
}

// ClaimRefresh holds the connection for one refresh for lease, or answers ErrRefreshClaimed while
// another refresh holds it. The claim is one short statement: no transaction or lock stays open
// while the caller asks the provider, so reads and imports of the connection never wait on it,
// and servers sharing the database refresh a connection one at a time. The lease outlasts the
// provider call and the write after it; it frees the claims of a server that died holding one.
// It is kept on the store's clock, so servers sharing a database must agree on the time to well
// within a lease.
func (db *DB) ClaimRefresh(ctx context.Context, in ReadConnection, lease time.Duration) (RefreshClaim, error) {
	token, err := newClaimToken()
	if err != nil {
		return RefreshClaim{}, err
	}
	now := db.now()
	c := RefreshClaim{target: in, token: token}
	var expiresAt, failedAt, unavailableAt sql.NullTime
	rows, err := db.gorm.WithContext(ctx).Raw(`UPDATE connections SET refresh_claim = ?, refresh_claimed_until = ?
WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?
  AND (refresh_claimed_until IS NULL OR refresh_claimed_until < ?)
RETURNING id, credentials, credentials_expires_at, refresh_failures, refresh_failed_at, refresh_unavailable_at`,
		token, now.Add(lease), in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID, now).Rows()
	if err == nil {
		err = scanReturning(rows, &c.id, &c.sealed, &expiresAt, &c.State.Failures, &failedAt, &unavailableAt)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return RefreshClaim{}, fmt.Errorf("refresh connection %q: %w", in.ConnectionID, db.claimedOrMissing(ctx, in))
	}
	if err != nil {
		return RefreshClaim{}, fmt.Errorf("refresh connection %q: %w", in.ConnectionID, dbError(err))
	}
	plain, err := db.keys.Open(c.sealed, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
	if err != nil {
		return RefreshClaim{}, errors.Join(fmt.Errorf("refresh connection %q: %w", in.ConnectionID, err),
			db.RecordRefresh(ctx, c, RefreshResult{}))
	}
	c.State.Credentials = json.RawMessage(plain)
	c.State.ExpiresAt, c.State.FailedAt, c.State.UnavailableAt = utcTime(expiresAt), utcTime(failedAt), utcTime(unavailableAt)
	return c, nil
}

// claimedOrMissing tells why a claim took no row: ErrRefreshClaimed, or ErrNotFound.
func (db *DB) claimedOrMissing(ctx context.Context, in ReadConnection) error {
	var n int64
	err := db.gorm.WithContext(ctx).Raw(`SELECT count(*) FROM connections
WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?`,
		in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID).Row().Scan(&n)
	switch {
	case err != nil:
		return dbError(err)
	case n == 0:
		return ErrNotFound
	}
	return ErrRefreshClaimed
}

func newClaimToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("refresh claim: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// RecordRefresh writes a refresh's result and releases its claim, in one short transaction. The
// result is written only while the claim still holds and over the credentials it started from,
// so a re-import during the provider call wins.
func (db *DB) RecordRefresh(ctx context.Context, c RefreshClaim, res RefreshResult) error {
	release := func(tx *gorm.DB) error {
		return tx.Exec(`UPDATE connections SET refresh_claim = NULL, refresh_claimed_until = NULL
WHERE id = ? AND refresh_claim = ?`, c.id, c.token).Error
	}
	var err error
	if res.Outcome == RefreshSkipped {
		err = release(db.gorm.WithContext(ctx))
	} else {
		err = db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := db.recordRefresh(tx, c, res); err != nil {
				return err
			}
			return release(tx)
		})
	}
	if err != nil {
		return fmt.Errorf("record refresh of connection %q: %w", c.target.ConnectionID, err)
	}
	return nil
}

// recordRefresh writes a refresh's result on the claimed row.
func (db *DB) recordRefresh(tx *gorm.DB, c RefreshClaim, res RefreshResult) error {
	now := db.now()
	in := c.target
	switch res.Outcome {
	case RefreshRenewed:
		renewed, err := db.keys.Seal(res.Credentials, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
		if err != nil {
			return err
		}
		return tx.Exec(`UPDATE connections SET credentials = ?, credentials_expires_at = ?, updated_at = ?,
    refresh_failures = 0, refresh_failed_at = NULL, refresh_error = NULL, refresh_log_id = NULL, refresh_unavailable_at = NULL
WHERE id = ? AND credentials = ? AND refresh_claim = ?`, renewed, res.ExpiresAt, now, c.id, c.sealed, c.token).Error
	case RefreshRefused:
		done := tx.Exec(`UPDATE connections SET refresh_failures = refresh_failures + 1, refresh_failed_at = ?,
    refresh_error = ?, refresh_log_id = ? WHERE id = ? AND credentials = ? AND refresh_claim = ?`,
			now, res.Error, res.LogID, c.id, c.sealed, c.token)
		if done.Error != nil || done.RowsAffected == 0 {
			return done.Error
		}
		return db.queueRefusal(tx, c, res, now)
	case RefreshUnavailable:
		return tx.Exec(`UPDATE connections SET refresh_unavailable_at = ? WHERE id = ? AND credentials = ? AND refresh_claim = ?`,
			now, c.id, c.sealed, c.token).Error
	case RefreshImpossible:
		return tx.Exec(`UPDATE connections SET credentials_expires_at = NULL WHERE id = ? AND credentials = ? AND refresh_claim = ?`,
			c.id, c.sealed, c.token).Error
	}
	return nil
}

// queueRefusal writes the refresh webhook of a recorded refusal, in its transaction.
func (db *DB) queueRefusal(tx *gorm.DB, c RefreshClaim, res RefreshResult, now time.Time) error {
	e := pendingEvent{
		environmentID: c.target.EnvironmentID, integration: c.target.Integration, connectionID: c.target.ConnectionID,
		connectionRow: c.id, operation: WebhookRefresh,
		err: &AuthEventError{Type: cmp.Or(res.ProviderError, "refresh_token_external_error"), Description: refusalDescription(res)},
	}
	if err := tx.Raw(`SELECT tags, end_user FROM connections WHERE id = ?`, c.id).Row().Scan(&e.tags, &e.endUser); err != nil {
		return fmt.Errorf("refresh webhook: %w", err)
	}
	pool, ok := tx.Statement.ConnPool.(execQuerier)
	if !ok {
		return errors.New("refresh webhook: the transaction cannot run statements")
	}
	return queueEvents(tx.Statement.Context, pool, db.dialect, now, []pendingEvent{e})
}

// refusalDescription is the provider's error and error_description, as the webhook tells them.
func refusalDescription(res RefreshResult) string {
	switch {
	case res.ProviderError != "" && res.ProviderDescription != "":
		return res.ProviderError + ": " + res.ProviderDescription
	case res.ProviderError != "" || res.ProviderDescription != "":
		return res.ProviderError + res.ProviderDescription
	}
	return "The provider refused to refresh the credentials"
}

// DueRefresh names a connection whose credentials are due for renewal.
type DueRefresh struct {
	EnvironmentID     int64
	ProviderConfigKey string
	ConnectionID      string
}

// DueRefreshes lists, soonest first, up to limit connections whose credentials must be renewed
// before `before`, whose integration has a token URL, that have fewer than maxFailures refusals
// and none since failedBefore.
func (db *DB) DueRefreshes(ctx context.Context, before, failedBefore time.Time, maxFailures, limit int) ([]DueRefresh, error) {
	rows, err := db.gorm.WithContext(ctx).Raw(`SELECT c.environment_id, c.provider_config_key, c.connection_id
FROM connections c JOIN integrations i ON i.id = c.integration_id
WHERE c.credentials_expires_at IS NOT NULL AND c.credentials_expires_at <= ?
  AND i.token_url IS NOT NULL AND c.refresh_failures < ?
  AND (c.refresh_failed_at IS NULL OR c.refresh_failed_at < ?)
ORDER BY c.credentials_expires_at LIMIT ?`, before, maxFailures, failedBefore, limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("due refreshes: %w", err)
	}
	defer rows.Close()
	var out []DueRefresh
	for rows.Next() {
		var d DueRefresh
		if err := rows.Scan(&d.EnvironmentID, &d.ProviderConfigKey, &d.ConnectionID); err != nil {
			return nil, fmt.Errorf("due refreshes: %w", dbError(err))
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due refreshes: %w", dbError(err))
	}
	return out, nil
}

func utcTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}
