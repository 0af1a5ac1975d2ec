package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// seedConnections stores n connections in one statement: ids conn-1…conn-n, an end user each,
// half of them tagged plan=pro and one in a hundred with each org tag. The statistics are then
// brought up to date, so that plans are those of a table that size.
func seedConnections(t *testing.T, db *store.DB, in store.Integration, n int) {
	t.Helper()
	ctx := context.Background()
	sqlDB, err := db.SQL()
	if err != nil {
		t.Fatal(err)
	}
	query := `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO connections (environment_id, integration_id, provider_config_key, connection_id, credentials,
    connection_config, metadata, tags, end_user, created_at, updated_at, last_fetched_at)
SELECT ?, ?, ?, 'conn-' || i, 'sealed', '{}', '{}',
    json_object('plan', CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'free' END, 'org', 'org-' || (i % 100)),
    json_object('id', 'u-' || i, 'email', 'user' || i || '@example.test', 'display_name', 'User ' || i,
        'organization', json_object('id', 'o-' || (i % 100))),
    ?, ?, ?
FROM s`
	analyze := []string{"ANALYZE"}
	if db.Dialect() == store.DialectPostgres {
		query = `INSERT INTO connections (environment_id, integration_id, provider_config_key, connection_id, credentials,
    connection_config, metadata, tags, end_user, created_at, updated_at, last_fetched_at)
SELECT $2, $3, $4, 'conn-' || i, 'sealed', '{}', '{}',
    jsonb_build_object('plan', CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'free' END, 'org', 'org-' || i % 100),
    jsonb_build_object('id', 'u-' || i, 'email', 'user' || i || '@example.test', 'display_name', 'User ' || i,
        'organization', jsonb_build_object('id', 'o-' || i % 100)),
    $5, $6, $7
FROM generate_series(1, $1::bigint) AS i`
		// VACUUM also empties the GIN indexes' pending lists, which the planner would count.
		analyze = []string{"VACUUM ANALYZE connections", "ANALYZE integrations"}
	}
	now := time.Now().UTC()
	if _, err := sqlDB.ExecContext(ctx, query, n, in.EnvironmentID, in.ID, in.UniqueKey, now, now, now); err != nil {
		t.Fatalf("seed connections: %v", err)
	}
	for _, s := range analyze {
		if _, err := sqlDB.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestListConnectionsUsesIndexes checks the plan of each list filter on a few thousand
// connections: an index of migration 3 or 5 serves it, and no plan reads the whole table.
func TestListConnectionsUsesIndexes(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		db := storetest.Open(t, b)
		ctx := context.Background()
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		seedConnections(t, db, in, 3000)
		tagIndex := "connection_tags_env_key_value"
		page := store.ListConnections{EnvironmentID: in.EnvironmentID, Limit: 100}
		for _, tt := range []struct {
			name    string
			filter  func(*store.ListConnections)
			indexes []string // any of them
		}{
			{"no filter", func(*store.ListConnections) {}, []string{"connections_env_created"}},
			{"connectionId", func(l *store.ListConnections) { l.ConnectionID = "conn-42" }, []string{"connections_env_connection_id"}},
			{"integrationId", func(l *store.ListConnections) { l.ProviderConfigKeys = []string{"github"} },
				// Every seeded connection is of this integration: walking the environment's ordered
				// index is as good.
				[]string{"connections_env_pck_created", "sqlite_autoindex_connections_1",
					"connections_environment_id_provider_config_key_connection_id_key", "connections_env_created"}},
			{"endUserId", func(l *store.ListConnections) { l.EndUserID = "u-42" }, []string{"connections_env_end_user_id"}},
			{"endUserOrganizationId", func(l *store.ListConnections) { l.EndUserOrganizationID = "o-42" }, []string{"connections_env_end_user_org"}},
			{"search in connection_id", func(l *store.ListConnections) { l.Search = "CONN-1234" }, []string{"connections_search"}},
			{"search in email", func(l *store.ListConnections) { l.Search = "user77@" }, []string{"connections_search"}},
			// Too short for a trigram: the environment's rows, through an index led by it.
			{"short search", func(l *store.ListConnections) { l.Search = "r7" }, []string{"connections_env_"}},
			{"tag", func(l *store.ListConnections) { l.Tags = map[string]string{"org": "org-42"} }, []string{tagIndex}},
			{"tag of half the connections", func(l *store.ListConnections) { l.Tags = map[string]string{"plan": "pro"} }, []string{tagIndex}},
			{"two tags", func(l *store.ListConnections) { l.Tags = map[string]string{"org": "org-42", "plan": "pro"} }, []string{tagIndex}},
			{"search and tag", func(l *store.ListConnections) {
				l.Search, l.Tags = "conn-12", map[string]string{"org": "org-42"}
			}, []string{"connections_search", tagIndex}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				q := page
				tt.filter(&q)
				plan, err := db.ExplainListConnections(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, idx := range tt.indexes {
					found = found || strings.Contains(plan, idx)
				}
				if !found {
					t.Errorf("plan uses none of %q:\n%s", tt.indexes, plan)
				}
				for _, line := range strings.Split(plan, "\n") {
					line = strings.TrimSpace(line)
					if line == "SCAN c" || strings.HasPrefix(line, "SCAN c ") || strings.Contains(line, "Seq Scan on connections") {
						t.Errorf("plan reads every connection:\n%s", plan)
					}
				}
			})
		}
	})
}
