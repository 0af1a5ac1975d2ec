package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Connection is a stored connection with its credentials opened.
type Connection struct {
	ID                int64
	ConnectionID      string
	ProviderConfigKey string
	Provider          string
	// Credentials is the credentials JSON object in clear.
	Credentials      json.RawMessage
	ConnectionConfig json.RawMessage
	Metadata         json.RawMessage
	Tags             json.RawMessage
	// EndUser is nil when the connection has none.
	EndUser       json.RawMessage
	CreatedAt     time.Time
	UpdatedAt     time.Time
	LastFetchedAt time.Time
	// WebhookURLOverride is nil when none is set; only reads fill it in.
	WebhookURLOverride *string
	// Refresh is the token refresh history; only reads fill it in.
	Refresh RefreshHistory
	// Created is true when the upsert inserted the row rather than updating it.
	Created bool
}

// RefreshHistory is what a connection's token refreshes left behind.
type RefreshHistory struct {
	// ExpiresAt is when the credentials must be renewed; nil when never.
	ExpiresAt *time.Time
	// Failures counts the provider's refusals since the last import or successful refresh;
	// FailedAt, Error and LogID describe the latest.
	Failures int
	FailedAt *time.Time
	Error    string
	LogID    string
}

// UpsertConnection is one import. The optional JSON fields are nil when the request left them
// out: an insert then stores their default and an update keeps the stored value.
type UpsertConnection struct {
	EnvironmentID int64
	Integration   Integration
	ConnectionID  string
	Credentials   json.RawMessage
	// CredentialsExpiresAt is when the credentials must be renewed, nil when they cannot be or
	// never need to be. A re-import clears the connection's refresh history.
	CredentialsExpiresAt *time.Time
	ConnectionConfig     json.RawMessage
	// MergeConnectionConfig makes the keys of ConnectionConfig written over those of the stored
	// connection_config of an update, instead of replacing it; an insert stores it as it is. Its
	// values must be neither objects nor null, which the two dialects merge differently.
	MergeConnectionConfig bool
	Metadata              json.RawMessage
	Tags                  json.RawMessage
	EndUser               json.RawMessage
}

// upsertConnectionSQL creates or updates a connection in one statement, so that concurrent
// imports of one connection neither fail nor duplicate it. Both dialects speak it once
// {merge_connection_config} is replaced by upsertSQL.
const upsertConnectionSQL = `
INSERT INTO connections (
    environment_id, integration_id, provider_config_key, connection_id, credentials,
    credentials_expires_at, connection_config, metadata, tags, end_user,
    created_at, updated_at, last_fetched_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (environment_id, provider_config_key, connection_id) DO UPDATE SET
    integration_id         = excluded.integration_id,
    credentials            = excluded.credentials,
    credentials_expires_at = excluded.credentials_expires_at,
    connection_config      = CASE WHEN ? THEN {merge_connection_config}
                                  WHEN ? THEN excluded.connection_config ELSE connections.connection_config END,
    metadata               = CASE WHEN ? THEN excluded.metadata ELSE connections.metadata END,
    tags                   = CASE WHEN ? THEN excluded.tags ELSE connections.tags END,
    end_user               = CASE WHEN ? THEN excluded.end_user ELSE connections.end_user END,
    updated_at             = excluded.updated_at,
    last_fetched_at        = excluded.last_fetched_at,
    refresh_failures       = 0,
    refresh_failed_at      = NULL,
    refresh_error          = NULL,
    refresh_log_id         = NULL,
    refresh_unavailable_at = NULL
RETURNING id, connection_config, metadata, tags, end_user, created_at, updated_at, last_fetched_at`

// upsertSQL is upsertConnectionSQL in the dialect's words for merging two JSON objects.
func upsertSQL(d Dialect) string {
	merge := "json_patch(connections.connection_config, excluded.connection_config)"
	if d == DialectPostgres {
		merge = "connections.connection_config || excluded.connection_config"
	}
	return strings.Replace(upsertConnectionSQL, "{merge_connection_config}", merge, 1)
}

// UpsertConnection creates the connection or, when (environment, provider config key,
// connection id) exists, replaces its credentials and the fields the request carried.
func (db *DB) UpsertConnection(ctx context.Context, in UpsertConnection) (Connection, error) {
	sealed, err := db.keys.Seal(in.Credentials, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
	if err != nil {
		return Connection{}, err
	}
	now := db.now()
	var endUser *string
	if in.EndUser != nil {
		s := string(in.EndUser)
		endUser = &s
	}
	var row struct {
		ID               int64
		ConnectionConfig string
		Metadata         string
		Tags             string
		EndUser          *string
		CreatedAt        time.Time
		UpdatedAt        time.Time
		LastFetchedAt    time.Time
	}
	// Rows, not Scan: GORM's Scan renders the statement with its values for a trace logger on
	// every call, which costs more than the statement itself and handles sealed values for nothing.
	rows, err := db.gorm.WithContext(ctx).Raw(db.upsertSQL,
		in.EnvironmentID, in.Integration.ID, in.Integration.UniqueKey, in.ConnectionID, sealed,
		in.CredentialsExpiresAt, jsonOr(in.ConnectionConfig, "{}"), jsonOr(in.Metadata, "{}"), jsonOr(in.Tags, "{}"), endUser,
		now, now, now,
		in.ConnectionConfig != nil && in.MergeConnectionConfig, in.ConnectionConfig != nil,
		in.Metadata != nil, in.Tags != nil, in.EndUser != nil,
	).Rows()
	if err == nil {
		err = scanReturning(rows, &row.ID, &row.ConnectionConfig, &row.Metadata, &row.Tags, &row.EndUser,
			&row.CreatedAt, &row.UpdatedAt, &row.LastFetchedAt)
	}
	if err != nil {
		return Connection{}, fmt.Errorf("upsert connection %q: %w", in.ConnectionID, err)
	}
	c := Connection{
		ID:                row.ID,
		ConnectionID:      in.ConnectionID,
		ProviderConfigKey: in.Integration.UniqueKey,
		Provider:          in.Integration.Provider,
		Credentials:       in.Credentials,
		ConnectionConfig:  json.RawMessage(row.ConnectionConfig),
		Metadata:          json.RawMessage(row.Metadata),
		Tags:              json.RawMessage(row.Tags),
		CreatedAt:         row.CreatedAt.UTC(),
		UpdatedAt:         row.UpdatedAt.UTC(),
		LastFetchedAt:     row.LastFetchedAt.UTC(),
		// An update keeps created_at, so only an insert leaves it equal to this statement's time.
		Created: row.CreatedAt.Equal(now),
	}
	if row.EndUser != nil {
		c.EndUser = json.RawMessage(*row.EndUser)
	}
	return c, nil
}

func jsonOr(v json.RawMessage, def string) string {
	if v == nil {
		return def
	}
	return string(v)
}

// connectionAAD binds sealed credentials to their connection.
func connectionAAD(envID int64, providerConfigKey, connectionID string) []byte {
	return []byte("connection\x00" + strconv.FormatInt(envID, 10) + "\x00" + providerConfigKey + "\x00" + connectionID)
}

// RawCredentials is a connection's credentials column exactly as stored (sealed).
func (db *DB) RawCredentials(ctx context.Context, envID int64, providerConfigKey, connectionID string) (string, error) {
	var sealed string
	err := db.gorm.WithContext(ctx).Raw(
		"SELECT credentials FROM connections WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?",
		envID, providerConfigKey, connectionID).Scan(&sealed).Error
	if err != nil {
		return "", fmt.Errorf("read credentials: %w", err)
	}
	if sealed == "" {
		return "", ErrNotFound
	}
	return sealed, nil
}

// ConnectionCredentials is a connection's credentials JSON object, opened.
func (db *DB) ConnectionCredentials(ctx context.Context, envID int64, providerConfigKey, connectionID string) (json.RawMessage, error) {
	sealed, err := db.RawCredentials(ctx, envID, providerConfigKey, connectionID)
	if err != nil {
		return nil, err
	}
	plain, err := db.keys.Open(sealed, connectionAAD(envID, providerConfigKey, connectionID))
	if err != nil {
		return nil, fmt.Errorf("credentials of connection %q: %w", connectionID, err)
	}
	return json.RawMessage(plain), nil
}
