package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestImportGroupCommit sends 200 imports of 50 connections at once, held back by the database
// until all have reached the store, so that they are committed in groups.
func TestImportGroupCommit(t *testing.T) {
	t.Parallel()
	const (
		imports = 200
		keys    = 50
	)
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := storetest.OpenURL(t, dbURL)
		// The key and the integration stay cached while writes are blocked, so that every
		// request reaches the store (SQLite's only connection is then the blocked writer's).
		v := newEnvWith(t, db, server.Config{KeyCacheTTL: time.Hour, RequestTimeout: time.Minute})
		v.integration("dev", "github", "OAUTH2")
		srv := httptest.NewServer(v.e)
		t.Cleanup(srv.Close)
		v.on(t).importOK(`{"provider_config_key":"github","connection_id":"warm-up","credentials":{"type":"OAUTH2","access_token":"warm-up-token"}}`)

		release := storetest.BlockWrites(t, dbURL)
		base := db.GroupCommitStats()
		bodies := make([]string, imports)
		responses := make([]response, imports)
		errs := make([]error, imports)
		var wg sync.WaitGroup
		for i := range imports {
			bodies[i] = fmt.Sprintf(`{"provider_config_key":"github","connection_id":"key-%d","credentials":{"type":"OAUTH2","access_token":"token-%03d"},"metadata":{"writer":%d}}`,
				i%keys, i, i)
			v.secrets.addCredentials(bodies[i])
			wg.Go(func() {
				responses[i], errs[i] = post(srv.URL+"/connections", v.key, bodies[i])
			})
		}
		storetest.WaitGroupCommit(t, db, "every import in the store", func(s store.GroupCommitStats) bool {
			return s.Rows-base.Rows+int64(s.Waiting) == imports
		})
		release()
		wg.Wait()

		for i, res := range responses {
			if errs[i] != nil {
				t.Fatalf("import %d: %v", i, errs[i])
			}
			v.on(t).checkContract(httptest.NewRequest(http.MethodPost, "/connections", strings.NewReader(bodies[i])), res)
			if res.status != http.StatusOK {
				t.Errorf("import %d: status %d, want 200: %s", i, res.status, res.body)
				continue
			}
			conn := decodeObject(t, res.body)
			creds, _ := conn["credentials"].(map[string]any)
			if conn["connection_id"] != fmt.Sprintf("key-%d", i%keys) || creds["access_token"] != fmt.Sprintf("token-%03d", i) ||
				mustJSON(conn["metadata"]) != fmt.Sprintf(`{"writer":%d}`, i) {
				t.Errorf("import %d answered %s, want its own connection, credentials and metadata", i, res.body)
			}
		}
		if s := db.GroupCommitStats(); s.Largest < 2 {
			t.Errorf("largest group %d: the imports were not committed together", s.Largest)
		}

		// The access lines say which imports created their connection: one per connection.
		created := map[string]int{}
		sc := bufio.NewScanner(strings.NewReader(v.logs.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg          string `json:"msg"`
				ConnectionID string `json:"connection_id"`
				Outcome      string `json:"outcome"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "request" && line.Outcome == "created" {
				created[line.ConnectionID]++
			}
		}
		for k := range keys {
			if n := created[fmt.Sprintf("key-%d", k)]; n != 1 {
				t.Errorf("key-%d: %d imports said created, want 1", k, n)
			}
		}

		pool, err := db.SQL()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.QueryContext(context.Background(), "SELECT connection_id, count(*) FROM connections GROUP BY connection_id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		stored := map[string]int{}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			stored[id] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(stored) != keys+1 {
			t.Errorf("%d connections stored, want %d and the warm-up's", len(stored), keys)
		}
		for id, n := range stored {
			if n != 1 {
				t.Errorf("%s: %d rows", id, n)
			}
		}
	})
}
