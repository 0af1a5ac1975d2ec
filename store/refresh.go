package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// RefreshState is a connection as a token refresh sees it once it holds the connection.
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

// RefreshOutcome says what a refresh did, for RefreshConnection to record.
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

// RefreshResult is what the function given to RefreshConnection decided.
type RefreshResult struct {
	Outcome RefreshOutcome
	// Credentials and ExpiresAt are the renewed credentials (RefreshRenewed).
	Credentials json.RawMessage
	ExpiresAt   *time.Time
	// Error says why the provider refused, without any token; LogID names the refusal in the
	// connection's errors and in the log (RefreshRefused).
	Error string
	LogID string
}

// RefreshConnection runs refresh on the connection's current credentials while no other refresh
// of it runs, and records its result. On PostgreSQL a transaction-scoped advisory lock on the
// connection's id is held until the result is written, so servers sharing the database refresh a
// connection one at a time and a waiter reads what the one before it stored; unlike a row lock it
// does not hold up reads and imports of the row during the provider call. SQLite locks the whole
// database for a write, which must not wait on a provider, so there the caller serialises the
// refreshes of one process. Either way a result is written only over the credentials it started
// from, so a re-import during the call wins.
func (db *DB) RefreshConnection(ctx context.Context, in ReadConnection,
	refresh func(ctx context.Context, st RefreshState) RefreshResult) error {
	if db.dialect == DialectPostgres {
		err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var id int64
			err := tx.Raw("SELECT id FROM connections WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?",
				in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID).Row().Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return dbError(err)
			}
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", id).Error; err != nil {
				return err
			}
			id, sealed, st, err := db.refreshState(tx, in)
			if err != nil {
				return err
			}
			return db.recordRefresh(tx, in, id, sealed, refresh(ctx, st))
		})
		if err != nil {
			return fmt.Errorf("refresh connection %q: %w", in.ConnectionID, err)
		}
		return nil
	}
	tx := db.gorm.WithContext(ctx)
	id, sealed, st, err := db.refreshState(tx, in)
	if err != nil {
		return fmt.Errorf("refresh connection %q: %w", in.ConnectionID, err)
	}
	if err := db.recordRefresh(tx, in, id, sealed, refresh(ctx, st)); err != nil {
		return fmt.Errorf("refresh connection %q: %w", in.ConnectionID, err)
	}
	return nil
}

func (db *DB) refreshState(tx *gorm.DB, in ReadConnection) (int64, string, RefreshState, error) {
	var (
		id                                 int64
		sealed                             string
		expiresAt, failedAt, unavailableAt sql.NullTime
		st                                 RefreshState
	)
	err := tx.Raw(`SELECT id, credentials, credentials_expires_at, refresh_failures, refresh_failed_at, refresh_unavailable_at
FROM connections WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?`,
		in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID).Row().
		Scan(&id, &sealed, &expiresAt, &st.Failures, &failedAt, &unavailableAt)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", RefreshState{}, ErrNotFound
	}
	if err != nil {
		return 0, "", RefreshState{}, dbError(err)
	}
	plain, err := db.keys.Open(sealed, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
	if err != nil {
		return 0, "", RefreshState{}, err
	}
	st.Credentials = json.RawMessage(plain)
	st.ExpiresAt, st.FailedAt, st.UnavailableAt = utcTime(expiresAt), utcTime(failedAt), utcTime(unavailableAt)
	return id, sealed, st, nil
}

// recordRefresh writes a refresh's result on row id, whose credentials were sealed as read.
func (db *DB) recordRefresh(tx *gorm.DB, in ReadConnection, id int64, sealed string, res RefreshResult) error {
	now := db.now()
	switch res.Outcome {
	case RefreshRenewed:
		renewed, err := db.keys.Seal(res.Credentials, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
		if err != nil {
			return err
		}
		return tx.Exec(`UPDATE connections SET credentials = ?, credentials_expires_at = ?, updated_at = ?,
    refresh_failures = 0, refresh_failed_at = NULL, refresh_error = NULL, refresh_log_id = NULL, refresh_unavailable_at = NULL
WHERE id = ? AND credentials = ?`, renewed, res.ExpiresAt, now, id, sealed).Error
	case RefreshRefused:
		return tx.Exec(`UPDATE connections SET refresh_failures = refresh_failures + 1, refresh_failed_at = ?,
    refresh_error = ?, refresh_log_id = ? WHERE id = ? AND credentials = ?`, now, res.Error, res.LogID, id, sealed).Error
	case RefreshUnavailable:
		return tx.Exec(`UPDATE connections SET refresh_unavailable_at = ? WHERE id = ? AND credentials = ?`, now, id, sealed).Error
	case RefreshImpossible:
		return tx.Exec(`UPDATE connections SET credentials_expires_at = NULL WHERE id = ? AND credentials = ?`, id, sealed).Error
	}
	return nil
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
		return nil, fmt.Errorf("due refreshes: %w", dbError(err))
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
