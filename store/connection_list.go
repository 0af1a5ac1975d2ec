package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ListConnections is one page of a connection list. Empty filters match everything; the filters
// that are set must all match.
type ListConnections struct {
	EnvironmentID int64
	// ConnectionID matches exactly, across integrations.
	ConnectionID string
	// Search is a case-insensitive substring of connection_id or of the end user's display name
	// or email.
	Search string
	// EndUserID and EndUserOrganizationID match the end user exactly.
	EndUserID             string
	EndUserOrganizationID string
	// ProviderConfigKeys, when not empty, is the set of integrations to list.
	ProviderConfigKeys []string
	// Tags must all be among the connection's tags. Keys are lower-case tag keys.
	Tags   map[string]string
	Limit  int
	Offset int
}

// ListedConnection is a connection as a list shows it: never its credentials.
type ListedConnection struct {
	ID                int64
	ConnectionID      string
	ProviderConfigKey string
	Provider          string
	Metadata          json.RawMessage
	Tags              json.RawMessage
	// EndUser is nil when the connection has none.
	EndUser   json.RawMessage
	CreatedAt time.Time
}

// ListConnections lists connections newest first (created_at, then id, descending).
func (db *DB) ListConnections(ctx context.Context, in ListConnections) ([]ListedConnection, error) {
	query, args, err := db.listConnectionsQuery(in)
	if err != nil {
		return nil, err
	}
	rows, err := db.gorm.WithContext(ctx).Raw(query, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	out := []ListedConnection{}
	for rows.Next() {
		var (
			c              ListedConnection
			metadata, tags string
			endUser        *string
		)
		if err := rows.Scan(&c.ID, &c.ConnectionID, &c.ProviderConfigKey, &c.Provider, &metadata, &tags, &endUser, &c.CreatedAt); err != nil {
			return nil, fmt.Errorf("list connections: %w", err)
		}
		c.Metadata, c.Tags = json.RawMessage(metadata), json.RawMessage(tags)
		if endUser != nil {
			c.EndUser = json.RawMessage(*endUser)
		}
		c.CreatedAt = c.CreatedAt.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return out, nil
}

// listConnectionsQuery is the statement of one list page and its arguments.
func (db *DB) listConnectionsQuery(in ListConnections) (string, []any, error) {
	pg := db.dialect == DialectPostgres
	jsonText := func(column, key string) string {
		if pg {
			return column + "->>'" + key + "'"
		}
		return "json_extract(" + column + ", '$." + key + "')"
	}
	where := []string{"c.environment_id = ?"}
	args := []any{in.EnvironmentID}
	if in.ConnectionID != "" {
		where = append(where, "c.connection_id = ?")
		args = append(args, in.ConnectionID)
	}
	if in.Search != "" {
		like := "LIKE" // SQLite's LIKE ignores ASCII case
		if pg {
			like = "ILIKE"
		}
		pattern := "%" + in.Search + "%"
		where = append(where, fmt.Sprintf("(c.connection_id %[1]s ? OR %[2]s %[1]s ? OR %[3]s %[1]s ?)",
			like, jsonText("c.end_user", "display_name"), jsonText("c.end_user", "email")))
		args = append(args, pattern, pattern, pattern)
	}
	if in.EndUserID != "" {
		where = append(where, jsonText("c.end_user", "id")+" = ?")
		args = append(args, in.EndUserID)
	}
	if in.EndUserOrganizationID != "" {
		org := "c.end_user->'organization'->>'id'"
		if !pg {
			org = "json_extract(c.end_user, '$.organization.id')"
		}
		where = append(where, org+" = ?")
		args = append(args, in.EndUserOrganizationID)
	}
	if len(in.ProviderConfigKeys) > 0 {
		where = append(where, "c.provider_config_key IN ?")
		args = append(args, in.ProviderConfigKeys)
	}
	if len(in.Tags) > 0 {
		want, err := json.Marshal(in.Tags)
		if err != nil {
			return "", nil, fmt.Errorf("list connections: tags: %w", err)
		}
		if pg {
			where = append(where, "c.tags @> ?::jsonb")
			args = append(args, string(want))
		} else {
			for k, v := range in.Tags {
				where = append(where, "json_extract(c.tags, ?) = ?")
				args = append(args, `$."`+k+`"`, v)
			}
		}
	}
	query := `SELECT c.id, c.connection_id, c.provider_config_key, i.provider, c.metadata, c.tags, c.end_user, c.created_at
FROM connections c JOIN integrations i ON i.id = c.integration_id
WHERE ` + strings.Join(where, " AND ") + `
ORDER BY c.created_at DESC, c.id DESC LIMIT ? OFFSET ?`
	args = append(args, in.Limit, in.Offset)
	return query, args, nil
}
