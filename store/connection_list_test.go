package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestListConnectionsUsesIndexes checks the plan of each list filter: an index of migration 3
// serves it, so a page does not read the whole table.
func TestListConnectionsUsesIndexes(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		db := storetest.Open(t, b)
		ctx := context.Background()
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		for _, id := range []string{"a", "b", "c"} {
			_, err := db.UpsertConnection(ctx, store.UpsertConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id,
				Credentials: []byte(`{}`), Tags: []byte(`{"plan":"pro"}`), EndUser: []byte(`{"id":"u-` + id + `"}`)})
			if err != nil {
				t.Fatal(err)
			}
		}
		// Tags have no index of their own on SQLite; on PostgreSQL the GIN index serves a
		// selective tag, which a table of three rows cannot show: both walk the environment's rows.
		tagIndex := []string{"connections_env_created", "connections_tags"}
		page := store.ListConnections{EnvironmentID: in.EnvironmentID, Limit: 100}
		for _, tt := range []struct {
			name    string
			filter  func(*store.ListConnections)
			indexes []string
		}{
			{"no filter", func(*store.ListConnections) {}, []string{"connections_env_created"}},
			{"connectionId", func(l *store.ListConnections) { l.ConnectionID = "a" }, []string{"connections_env_connection_id"}},
			{"integrationId", func(l *store.ListConnections) { l.ProviderConfigKeys = []string{"github"} },
				[]string{"connections_env_pck_created", "sqlite_autoindex_connections_1", "connections_environment_id_provider_config_key_connection_id_key"}},
			{"endUserId", func(l *store.ListConnections) { l.EndUserID = "u-a" }, []string{"connections_env_end_user_id"}},
			{"endUserOrganizationId", func(l *store.ListConnections) { l.EndUserOrganizationID = "o-1" }, []string{"connections_env_end_user_org"}},
			{"tags", func(l *store.ListConnections) { l.Tags = map[string]string{"plan": "pro"} }, tagIndex},
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
			})
		}
	})
}
