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
	// NoWebhooks sends no creation or override webhook for this import.
	NoWebhooks bool
	// WebhookURLOverride, when not "", is where this import's own webhook goes instead of the
	// environment's URLs.
	WebhookURLOverride string
}

// upsertColumns are the columns an import writes, in the order UpsertStatement.Rows gives them.
const upsertColumns = `environment_id, integration_id, provider_config_key, connection_id, credentials,
    credentials_expires_at, connection_config, metadata, tags, end_user,
    created_at, updated_at, last_fetched_at`

// UpsertStatement is the statement UpsertConnection sends, with the parts that vary: where the
// rows come from and whether each optional field was sent. One statement creates or updates, so
// that concurrent imports of one connection neither fail nor duplicate it; a re-import clears
// the refresh history. The benchmark renders it for pgbench, so that what it compares credport
// with cannot drift from what credport sends.
type UpsertStatement struct {
	// Table is the table written: connections, or a copy of it.
	Table string
	// Rows is a VALUES list or a SELECT yielding the inserted columns in this order:
	// environment_id, integration_id, provider_config_key, connection_id, credentials,
	// credentials_expires_at, connection_config, metadata, tags, end_user, created_at,
	// updated_at, last_fetched_at.
	Rows string
	// MergeConfig, HasConfig, HasMetadata, HasTags and HasEndUser are SQL booleans (parameters
	// or literals): connection_config is merged into the stored one, or sent; the others sent.
	MergeConfig, HasConfig, HasMetadata, HasTags, HasEndUser string
}

// SQL is the statement in the dialect's words. It returns the row's id, its JSON fields and
// timestamps, its key (to map a multi-row statement's rows back to their imports) and, on
// PostgreSQL, whether the row was inserted.
func (s UpsertStatement) SQL(d Dialect) string {
	t := s.Table
	merge := "json_patch(" + t + ".connection_config, excluded.connection_config)"
	inserted := ""
	if d == DialectPostgres {
		merge = t + ".connection_config || excluded.connection_config"
		// An inserted row version has no xmax; an updated one carries the updating transaction's.
		inserted = ", xmax = 0"
	}
	return `
INSERT INTO ` + t + ` (` + upsertColumns + `)
` + s.Rows + `
ON CONFLICT (environment_id, provider_config_key, connection_id) DO UPDATE SET
    integration_id         = excluded.integration_id,
    credentials            = excluded.credentials,
    credentials_expires_at = excluded.credentials_expires_at,
    connection_config      = CASE WHEN ` + s.MergeConfig + ` THEN ` + merge + `
                                  WHEN ` + s.HasConfig + ` THEN excluded.connection_config ELSE ` + t + `.connection_config END,
    metadata               = CASE WHEN ` + s.HasMetadata + ` THEN excluded.metadata ELSE ` + t + `.metadata END,
    tags                   = CASE WHEN ` + s.HasTags + ` THEN excluded.tags ELSE ` + t + `.tags END,
    end_user               = CASE WHEN ` + s.HasEndUser + ` THEN excluded.end_user ELSE ` + t + `.end_user END,
    updated_at             = excluded.updated_at,
    last_fetched_at        = excluded.last_fetched_at,
    refresh_failures       = 0,
    refresh_failed_at      = NULL,
    refresh_error          = NULL,
    refresh_log_id         = NULL,
    refresh_unavailable_at = NULL
RETURNING id, connection_config, metadata, tags, end_user, created_at, updated_at, last_fetched_at,
    environment_id, provider_config_key, connection_id` + inserted
}

// upsertOneSQL is the statement of one import, its values and conditions parameters in this
// order: the inserted columns, then MergeConfig, HasConfig, HasMetadata, HasTags, HasEndUser.
func upsertOneSQL(d Dialect) string {
	return numbered(d, UpsertStatement{
		Table:       "connections",
		Rows:        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		MergeConfig: "?", HasConfig: "?", HasMetadata: "?", HasTags: "?", HasEndUser: "?",
	}.SQL(d))
}

// upsertManySQL is the statement of many imports on PostgreSQL: each inserted column but the
// timestamps is one array parameter, the timestamps one parameter shared by the rows, and the
// five conditions parameters that hold for every row. The text is the same for any number of
// rows, so the driver prepares it once per connection.
func upsertManySQL() string {
	return numbered(DialectPostgres, UpsertStatement{
		Table: "connections",
		Rows: `SELECT r.environment_id, r.integration_id, r.provider_config_key, r.connection_id, r.credentials,
    r.credentials_expires_at, r.connection_config::jsonb, r.metadata::jsonb, r.tags::jsonb, r.end_user::jsonb,
    ?::timestamptz, ?::timestamptz, ?::timestamptz
FROM unnest(?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::text[], ?::text[], ?::text[])
    AS r(environment_id, integration_id, provider_config_key, connection_id, credentials,
         credentials_expires_at, connection_config, metadata, tags, end_user)`,
		MergeConfig: "?::boolean", HasConfig: "?::boolean", HasMetadata: "?::boolean", HasTags: "?::boolean", HasEndUser: "?::boolean",
	}.SQL(DialectPostgres))
}

// numbered turns the ? placeholders of query into $1, $2, … on PostgreSQL.
func numbered(d Dialect, query string) string {
	if d != DialectPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// UpsertConnection creates the connection or, when (environment, provider config key,
// connection id) exists, replaces its credentials and the fields the request carried.
//
// Concurrent calls are committed together (see groupcommit.go). An error means that this call
// did not write the row: it was refused, its context ended before its group was taken, or the
// database failed; except that a commit cut short (by the latest deadline of the group, or a lost
// connection) leaves the outcome unknown, as it does for any database client. Once its group has
// been taken, a call whose context ends still waits for the commit and answers what it did.
func (db *DB) UpsertConnection(ctx context.Context, in UpsertConnection) (Connection, error) {
	sealed, err := db.keys.Seal(in.Credentials, connectionAAD(in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID))
	if err != nil {
		return Connection{}, err
	}
	row, err := db.group.upsert(ctx, &pendingUpsert{in: in, sealed: sealed})
	if err != nil {
		return Connection{}, fmt.Errorf("upsert connection %q: %w", in.ConnectionID, err)
	}
	c := Connection{
		ID:                row.id,
		ConnectionID:      in.ConnectionID,
		ProviderConfigKey: in.Integration.UniqueKey,
		Provider:          in.Integration.Provider,
		Credentials:       in.Credentials,
		ConnectionConfig:  json.RawMessage(row.connectionConfig),
		Metadata:          json.RawMessage(row.metadata),
		Tags:              json.RawMessage(row.tags),
		CreatedAt:         row.createdAt.UTC(),
		UpdatedAt:         row.updatedAt.UTC(),
		LastFetchedAt:     row.lastFetchedAt.UTC(),
		Created:           row.created,
	}
	if row.endUser != nil {
		c.EndUser = json.RawMessage(*row.endUser)
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
