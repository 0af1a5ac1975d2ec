package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// ExportedConnection is one connection as an export writes it, its credentials opened.
type ExportedConnection struct {
	Environment       string
	ProviderConfigKey string
	ConnectionID      string
	// AuthMode and AppID are the integration's, which the credentials of NONE and APP
	// connections do not repeat.
	AuthMode         string
	AppID            string
	Credentials      json.RawMessage
	ConnectionConfig json.RawMessage
	Metadata         json.RawMessage
	Tags             json.RawMessage
	// EndUser is nil when the connection has none.
	EndUser json.RawMessage
}

// exportPage is how many rows one query of an export reads: the export streams, and holds no
// transaction open while the caller writes.
const exportPage = 500

// ExportConnections calls each for every connection of environment env ("" for every
// environment), in the order they were created, with its credentials opened. An unknown
// environment is ErrNotFound.
func (db *DB) ExportConnections(ctx context.Context, env string, each func(ExportedConnection) error) error {
	where, args := "", []any{}
	if env != "" {
		envID, err := db.environmentID(ctx, env)
		if err != nil {
			return err
		}
		where, args = " AND c.environment_id = ?", []any{envID}
	}
	type row struct {
		ID                int64
		EnvironmentID     int64
		Environment       string
		ProviderConfigKey string
		ConnectionID      string
		AuthMode          string
		AppID             *string
		Credentials       string
		ConnectionConfig  string
		Metadata          string
		Tags              string
		EndUser           *string
	}
	var last int64
	for {
		var rows []row
		err := db.gorm.WithContext(ctx).Raw(`SELECT c.id, c.environment_id, e.name AS environment, c.provider_config_key,
			c.connection_id, i.auth_mode, i.app_id, c.credentials, c.connection_config, c.metadata, c.tags, c.end_user
			FROM connections c JOIN integrations i ON i.id = c.integration_id JOIN environments e ON e.id = c.environment_id
			WHERE c.id > ?`+where+` ORDER BY c.id LIMIT ?`, append(append([]any{last}, args...), exportPage)...).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("export connections: %w", err)
		}
		for _, r := range rows {
			plain, err := db.keys.Open(r.Credentials, connectionAAD(r.EnvironmentID, r.ProviderConfigKey, r.ConnectionID))
			if err != nil {
				return fmt.Errorf("credentials of connection %q (environment %q, integration %q): %w",
					r.ConnectionID, r.Environment, r.ProviderConfigKey, err)
			}
			c := ExportedConnection{Environment: r.Environment, ProviderConfigKey: r.ProviderConfigKey, ConnectionID: r.ConnectionID,
				AuthMode: r.AuthMode, AppID: deref(r.AppID), Credentials: plain, ConnectionConfig: json.RawMessage(r.ConnectionConfig),
				Metadata: json.RawMessage(r.Metadata), Tags: json.RawMessage(r.Tags)}
			if r.EndUser != nil {
				c.EndUser = json.RawMessage(*r.EndUser)
			}
			if err := each(c); err != nil {
				return err
			}
			last = r.ID
		}
		if len(rows) < exportPage {
			return nil
		}
	}
}
