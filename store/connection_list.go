package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
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
	// RefreshFailures counts the provider's refusals in a row; RefreshLogID names the last one.
	RefreshFailures int
	RefreshLogID    string
}

// ListConnections calls each with the connections of one list page, newest first (created_at,
// then id, descending), one at a time as the database returns them, so that a page is never held
// whole. It stops at the first error each returns and returns that error.
func (db *DB) ListConnections(ctx context.Context, in ListConnections, each func(ListedConnection) error) error {
	query, args, err := db.listConnectionsQuery(in)
	if err != nil {
		return err
	}
	rows, err := db.gorm.WithContext(ctx).Raw(query, args...).Rows()
	if err != nil {
		return fmt.Errorf("list connections: %w", dbError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c              ListedConnection
			metadata, tags string
			endUser, logID *string
		)
		if err := rows.Scan(&c.ID, &c.ConnectionID, &c.ProviderConfigKey, &c.Provider, &metadata, &tags, &endUser, &c.CreatedAt,
			&c.RefreshFailures, &logID); err != nil {
			return fmt.Errorf("list connections: %w", dbError(err))
		}
		c.Metadata, c.Tags = json.RawMessage(metadata), json.RawMessage(tags)
		if endUser != nil {
			c.EndUser = json.RawMessage(*endUser)
		}
		if logID != nil {
			c.RefreshLogID = *logID
		}
		c.CreatedAt = c.CreatedAt.UTC()
		if err := each(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list connections: %w", dbError(err))
	}
	return nil
}

// listConnectionsQuery is the statement of one list page and its arguments. Every filter is
// served by an index (migrations 3 and 5). Tags live in a table of their own on both databases
// and, on SQLite, the search too; when the page filters on one of them, that table drives the
// statement (on SQLite, CROSS JOIN fixes the order of the loops), since no planner can weigh
// their matches against the environment's ordered index reliably.
func (db *DB) listConnectionsQuery(in ListConnections) (string, []any, error) {
	pg := db.dialect == DialectPostgres
	jsonText := func(column, key string) string {
		if pg {
			return column + "->>'" + key + "'"
		}
		return "json_extract(" + column + ", '$." + key + "')"
	}
	from := "connections c"
	order := "c.created_at DESC, c.id DESC"
	var where []string
	var args []any
	tags := sortedKeys(in.Tags)
	switch {
	case !pg && utf8.RuneCountInString(in.Search) >= trigram:
		from = "connections_search CROSS JOIN connections c ON c.id = connections_search.rowid"
		where = append(where, "connections_search MATCH ?")
		args = append(args, ftsPhrase(in.Search))
	case len(tags) > 0:
		// The first tag's index rows are in the list's order (the trigger copies created_at and
		// id), so a page reads only its own rows, however many connections have the tag.
		from = "connection_tags t CROSS JOIN connections c ON c.id = t.connection_pk"
		if pg {
			from = "connection_tags t JOIN connections c ON c.id = t.connection_pk"
		}
		order = "t.created_at DESC, t.connection_pk DESC"
		where = append(where, "t.environment_id = ? AND t.key = ? AND t.value = ?")
		args = append(args, in.EnvironmentID, tags[0], in.Tags[tags[0]])
		tags = tags[1:]
	}
	where = append(where, "c.environment_id = ?")
	args = append(args, in.EnvironmentID)
	if in.ConnectionID != "" {
		where = append(where, "c.connection_id = ?")
		args = append(args, in.ConnectionID)
	}
	if in.Search != "" && (pg || utf8.RuneCountInString(in.Search) < trigram) {
		// On SQLite only a search too short for a trigram comes here: it filters the
		// environment's ordered rows, and LIKE folds ASCII letters only (the trigram table folds
		// every letter). PostgreSQL's trigram index serves the ILIKEs themselves.
		like := "LIKE"
		if pg {
			like = "ILIKE"
		}
		pattern := likeSubstring(in.Search)
		where = append(where, fmt.Sprintf(`(c.connection_id %[1]s ? ESCAPE '\' OR %[2]s %[1]s ? ESCAPE '\' OR %[3]s %[1]s ? ESCAPE '\')`,
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
	// The tags that do not drive the statement are checked on its rows.
	for _, k := range tags {
		if pg {
			where = append(where, "c.tags->>? = ?")
			args = append(args, k, in.Tags[k])
		} else {
			where = append(where, "json_extract(c.tags, ?) = ?")
			args = append(args, `$."`+k+`"`, in.Tags[k])
		}
	}
	query := `SELECT c.id, c.connection_id, c.provider_config_key, i.provider, c.metadata, c.tags, c.end_user, c.created_at,
       c.refresh_failures, c.refresh_log_id
FROM ` + from + ` JOIN integrations i ON i.id = c.integration_id
WHERE ` + strings.Join(where, " AND ") + `
ORDER BY ` + order + ` LIMIT ? OFFSET ?`
	args = append(args, in.Limit, in.Offset)
	return query, args, nil
}

// trigram is the shortest search a trigram index can serve.
const trigram = 3

// likeSubstring is the LIKE pattern of s anywhere in a value, with LIKE's wildcards in s taken
// as themselves (escaped with a backslash): a search is a plain substring.
func likeSubstring(s string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
}

// ftsPhrase is s as one FTS5 phrase: a trigram table matches it as a substring of a column,
// whatever characters it holds.
func ftsPhrase(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// sortedKeys are the keys of m in order, so that a statement does not change with map order.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
