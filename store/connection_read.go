package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ReadConnection names one connection and says what a read of it may see.
type ReadConnection struct {
	EnvironmentID int64
	Integration   Integration
	ConnectionID  string
	// WithCredentials opens the sealed credentials into the result and sets last_fetched_at to
	// now when it is lastFetchedEvery old or older. Without it the credentials stay in the
	// database and last_fetched_at is not touched.
	WithCredentials bool
}

// lastFetchedEvery is how stale last_fetched_at may be: a read with credentials writes it only
// when it is at least this old, so that most reads are one SELECT, with no write and no commit.
const lastFetchedEvery = time.Minute

const connectionColumns = `id, credentials, connection_config, metadata, tags, end_user, created_at, updated_at, last_fetched_at, webhook_url_override,
credentials_expires_at, refresh_failures, refresh_failed_at, refresh_error, refresh_log_id`

// GetConnection reads one connection of an integration; ErrNotFound when there is none.
func (db *DB) GetConnection(ctx context.Context, in ReadConnection) (Connection, error) {
	query := `SELECT ` + connectionColumns + ` FROM connections
WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?`
	args := []any{in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID}
	var (
		sealed                        string
		config, metadata, tags        string
		endUser                       *string
		created, updated, lastFetched time.Time
		expiresAt, failedAt           sql.NullTime
		refreshError, refreshLogID    sql.NullString
		c                             Connection
	)
	err := db.gorm.WithContext(ctx).Raw(query, args...).Row().
		Scan(&c.ID, &sealed, &config, &metadata, &tags, &endUser, &created, &updated, &lastFetched, &c.WebhookURLOverride,
			&expiresAt, &c.Refresh.Failures, &failedAt, &refreshError, &refreshLogID)
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, fmt.Errorf("connection %q: %w", in.ConnectionID, ErrNotFound)
	}
	if err != nil {
		return Connection{}, fmt.Errorf("read connection %q: %w", in.ConnectionID, dbError(err))
	}
	if now := db.now(); in.WithCredentials && !lastFetched.After(now.Add(-lastFetchedEvery)) {
		// The condition again in the statement: of concurrent readers, one writes.
		err := db.gorm.WithContext(ctx).Exec("UPDATE connections SET last_fetched_at = ? WHERE id = ? AND last_fetched_at <= ?",
			now, c.ID, now.Add(-lastFetchedEvery)).Error
		if err != nil {
			return Connection{}, fmt.Errorf("read connection %q: last_fetched_at: %w", in.ConnectionID, err)
		}
		lastFetched = now
	}
	c.ConnectionID = in.ConnectionID
	c.ProviderConfigKey = in.Integration.UniqueKey
	c.Provider = in.Integration.Provider
	c.ConnectionConfig = json.RawMessage(config)
	c.Metadata = json.RawMessage(metadata)
	c.Tags = json.RawMessage(tags)
	if endUser != nil {
		c.EndUser = json.RawMessage(*endUser)
	}
	c.CreatedAt, c.UpdatedAt, c.LastFetchedAt = created.UTC(), updated.UTC(), lastFetched.UTC()
	c.Refresh.ExpiresAt, c.Refresh.FailedAt = utcTime(expiresAt), utcTime(failedAt)
	c.Refresh.Error, c.Refresh.LogID = refreshError.String, refreshLogID.String
	if in.WithCredentials {
		plain, err := db.keys.Open(sealed, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
		if err != nil {
			return Connection{}, fmt.Errorf("credentials of connection %q: %w", in.ConnectionID, err)
		}
		c.Credentials = json.RawMessage(plain)
	}
	return c, nil
}

// DeleteConnection removes a connection and its sealed credentials for good; ErrNotFound when
// there is none. Importing the same connection id later creates a new connection.
func (db *DB) DeleteConnection(ctx context.Context, envID int64, providerConfigKey, connectionID string) error {
	res := db.gorm.WithContext(ctx).Exec(
		"DELETE FROM connections WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?",
		envID, providerConfigKey, connectionID)
	if res.Error != nil {
		return fmt.Errorf("delete connection %q: %w", connectionID, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("connection %q: %w", connectionID, ErrNotFound)
	}
	return nil
}
