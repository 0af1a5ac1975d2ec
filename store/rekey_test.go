package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// openWithKeys opens the database at dbURL with the key ring spec, closed when the test ends.
func openWithKeys(t *testing.T, dbURL, spec string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{URL: dbURL, Keys: mustRing(t, spec)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustRing(t *testing.T, spec string) *store.Keyring {
	t.Helper()
	ring, err := store.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// rekeyKeys are an old key "a" and a new key "b", fresh for each test.
func rekeyKeys() (a, b string) {
	return "a:" + store.NewKey(), "b:" + store.NewKey()
}

type sealedConnection struct {
	envID             int64
	providerConfigKey string
	connectionID      string
	credentials       string
}

type rekeyFixture struct {
	integration map[string]store.Integration // by environment and unique key, "dev/github"
	connections []sealedConnection
	// secrets are the integrations' client secrets in clear, by "<environment id>/<unique key>".
	secrets map[string]string
}

// seedRekey stores, with db's primary key, two environments with integrations (two with a client
// secret, one without) and seven connections, two of them with the same connection id in
// different environments.
func seedRekey(t *testing.T, db *store.DB) rekeyFixture {
	t.Helper()
	ctx := context.Background()
	f := rekeyFixture{integration: map[string]store.Integration{}, secrets: map[string]string{}}
	for _, in := range []store.NewIntegration{
		{Environment: "dev", UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "dev-client-secret"},
		{Environment: "prod", UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2", ClientID: "id", ClientSecret: "prod-client-secret"},
		{Environment: "dev", UniqueKey: "stripe", Provider: "stripe", AuthMode: "API_KEY"},
	} {
		created, err := db.CreateIntegration(ctx, in)
		if err != nil {
			t.Fatalf("create integration: %v", err)
		}
		f.integration[in.Environment+"/"+in.UniqueKey] = created
		if in.ClientSecret != "" {
			f.secrets[strconv.FormatInt(created.EnvironmentID, 10)+"/"+in.UniqueKey] = in.ClientSecret
		}
	}
	for _, c := range []struct{ integration, connectionID string }{
		{"dev/github", "c1"}, {"prod/github", "c1"}, {"dev/github", "c2"}, {"dev/stripe", "s1"},
		{"dev/github", "c3"}, {"prod/github", "c2"}, {"dev/stripe", "s2"},
	} {
		in := f.integration[c.integration]
		creds := fmt.Sprintf(`{"type":"OAUTH2","access_token":"%s/%s"}`, c.integration, c.connectionID)
		importCredentials(t, db, in, c.connectionID, creds)
		f.connections = append(f.connections, sealedConnection{in.EnvironmentID, in.UniqueKey, c.connectionID, creds})
	}
	return f
}

func importCredentials(t *testing.T, db *store.DB, in store.Integration, connectionID, creds string) {
	t.Helper()
	_, err := db.UpsertConnection(context.Background(), store.UpsertConnection{
		EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: connectionID, Credentials: json.RawMessage(creds),
	})
	if err != nil {
		t.Fatalf("import %s: %v", connectionID, err)
	}
}

// sealedKeyIDs counts, per table, the stored sealed values by the id of the key that sealed them.
func sealedKeyIDs(t *testing.T, db *store.DB) map[string]map[string]int {
	t.Helper()
	sqlDB, err := db.SQL()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int{}
	for table, query := range map[string]string{
		"connections":  "SELECT credentials FROM connections",
		"integrations": "SELECT client_secret FROM integrations WHERE client_secret IS NOT NULL",
	} {
		rows, err := sqlDB.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		out[table] = map[string]int{}
		for rows.Next() {
			var sealed string
			if err := rows.Scan(&sealed); err != nil {
				t.Fatal(err)
			}
			out[table][store.SealedKeyID(sealed)]++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
	}
	return out
}

func wantKeyIDs(t *testing.T, db *store.DB, connections, integrations map[string]int) {
	t.Helper()
	got := sealedKeyIDs(t, db)
	if fmt.Sprint(got["connections"]) != fmt.Sprint(connections) || fmt.Sprint(got["integrations"]) != fmt.Sprint(integrations) {
		t.Fatalf("sealed values by key id: connections %v, integrations %v; want %v, %v",
			got["connections"], got["integrations"], connections, integrations)
	}
}

// integrationSecrets opens every stored client secret with ring. The AAD is written out here
// because it is part of the storage format: changing it would make stored secrets unreadable.
func integrationSecrets(t *testing.T, db *store.DB, ring *store.Keyring) map[string]string {
	t.Helper()
	sqlDB, err := db.SQL()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := sqlDB.Query("SELECT environment_id, unique_key, client_secret FROM integrations WHERE client_secret IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var envID int64
		var key, sealed string
		if err := rows.Scan(&envID, &key, &sealed); err != nil {
			t.Fatal(err)
		}
		plain, err := ring.Open(sealed, []byte("integration\x00"+strconv.FormatInt(envID, 10)+"\x00"+key))
		if err != nil {
			t.Fatalf("client secret of %d/%s: %v", envID, key, err)
		}
		out[strconv.FormatInt(envID, 10)+"/"+key] = string(plain)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantReadable checks that db, with its key ring ring, opens every value of f in clear.
func wantReadable(t *testing.T, db *store.DB, ring *store.Keyring, f rekeyFixture) {
	t.Helper()
	for _, c := range f.connections {
		got, err := db.ConnectionCredentials(context.Background(), c.envID, c.providerConfigKey, c.connectionID)
		if err != nil {
			t.Fatalf("read %d/%s/%s: %v", c.envID, c.providerConfigKey, c.connectionID, err)
		}
		if string(got) != c.credentials {
			t.Errorf("credentials of %d/%s/%s = %s, want %s", c.envID, c.providerConfigKey, c.connectionID, got, c.credentials)
		}
	}
	if got := integrationSecrets(t, db, ring); fmt.Sprint(got) != fmt.Sprint(f.secrets) {
		t.Errorf("client secrets = %v, want %v", got, f.secrets)
	}
}

func TestRekey(t *testing.T) {
	tests := []struct {
		name      string
		batchSize int
		// wantCalls is the number of progress calls: one per batch that found rows.
		wantCalls int
	}{
		{name: "one row per batch", batchSize: 1, wantCalls: 2 + 7},
		{name: "batches of 3", batchSize: 3, wantCalls: 1 + 3},
		{name: "one batch", batchSize: 500, wantCalls: 1 + 1},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				keyA, keyB := rekeyKeys()
				dbURL := b.NewURL(t)
				f := seedRekey(t, openWithKeys(t, dbURL, keyA))

				rotated := openWithKeys(t, dbURL, keyB+","+keyA)
				var calls []store.RekeyProgress
				got, err := rotated.Rekey(ctx, tt.batchSize, func(p store.RekeyProgress) { calls = append(calls, p) }, nil)
				if err != nil {
					t.Fatalf("rekey: %v", err)
				}
				want := store.RekeyProgress{
					KeyID:        "b",
					Connections:  store.RekeyCount{Total: 7, Done: 7},
					Integrations: store.RekeyCount{Total: 2, Done: 2},
				}
				if got != want {
					t.Errorf("rekey = %+v, want %+v", got, want)
				}
				if len(calls) != tt.wantCalls {
					t.Errorf("%d progress calls, want %d", len(calls), tt.wantCalls)
				}
				for i := 1; i < len(calls); i++ {
					prev, cur := calls[i-1], calls[i]
					if cur.Connections.Done < prev.Connections.Done || cur.Integrations.Done < prev.Integrations.Done ||
						cur.Connections.Remaining > prev.Connections.Remaining {
						t.Errorf("progress went back: %+v then %+v", prev, cur)
					}
				}
				if len(calls) > 0 && calls[len(calls)-1] != want {
					t.Errorf("last progress = %+v, want %+v", calls[len(calls)-1], want)
				}
				wantKeyIDs(t, rotated, map[string]int{"b": 7}, map[string]int{"b": 2})

				onlyB := openWithKeys(t, dbURL, keyB)
				wantReadable(t, onlyB, mustRing(t, keyB), f)

				again, err := onlyB.Rekey(ctx, tt.batchSize, func(p store.RekeyProgress) { t.Errorf("second run: progress %+v, want none", p) }, nil)
				if err != nil || again != (store.RekeyProgress{KeyID: "b"}) {
					t.Errorf("second run = %+v, %v; want nothing to do", again, err)
				}
			})
		}
	})
}

func TestRekeyResumes(t *testing.T) {
	tests := []struct {
		name string
		// stopAfter is the number of batches (of one row) the first run completes.
		stopAfter int
		// wantFirst is the progress of the first, cancelled run.
		wantFirst store.RekeyProgress
	}{
		{
			name:      "cancelled among integrations",
			stopAfter: 1,
			wantFirst: store.RekeyProgress{
				KeyID:        "b",
				Connections:  store.RekeyCount{Total: 7, Remaining: 7},
				Integrations: store.RekeyCount{Total: 2, Done: 1, Remaining: 1},
			},
		},
		{
			name:      "cancelled among connections",
			stopAfter: 5,
			wantFirst: store.RekeyProgress{
				KeyID:        "b",
				Connections:  store.RekeyCount{Total: 7, Done: 3, Remaining: 4},
				Integrations: store.RekeyCount{Total: 2, Done: 2},
			},
		},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				keyA, keyB := rekeyKeys()
				dbURL := b.NewURL(t)
				f := seedRekey(t, openWithKeys(t, dbURL, keyA))
				rotated := openWithKeys(t, dbURL, keyB+","+keyA)

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				batches := 0
				first, err := rotated.Rekey(ctx, 1, func(store.RekeyProgress) {
					if batches++; batches == tt.stopAfter {
						cancel()
					}
				}, nil)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled run: error %v, want context.Canceled", err)
				}
				if first != tt.wantFirst {
					t.Errorf("cancelled run = %+v, want %+v", first, tt.wantFirst)
				}
				doneConns, doneIntegrations := int(tt.wantFirst.Connections.Done), int(tt.wantFirst.Integrations.Done)
				wantKeyIDs(t, rotated,
					nonZero(map[string]int{"a": 7 - doneConns, "b": doneConns}),
					nonZero(map[string]int{"a": 2 - doneIntegrations, "b": doneIntegrations}))

				second, err := rotated.Rekey(context.Background(), 1, nil, nil)
				if err != nil {
					t.Fatalf("second run: %v", err)
				}
				want := store.RekeyProgress{
					KeyID:        "b",
					Connections:  store.RekeyCount{Total: int64(7 - doneConns), Done: int64(7 - doneConns)},
					Integrations: store.RekeyCount{Total: int64(2 - doneIntegrations), Done: int64(2 - doneIntegrations)},
				}
				if second != want {
					t.Errorf("second run = %+v, want %+v", second, want)
				}
				wantKeyIDs(t, rotated, map[string]int{"b": 7}, map[string]int{"b": 2})
				wantReadable(t, openWithKeys(t, dbURL, keyB), mustRing(t, keyB), f)
			})
		}
	})
}

func nonZero(m map[string]int) map[string]int {
	for k, v := range m {
		if v == 0 {
			delete(m, k)
		}
	}
	return m
}

// TestRekeyConcurrentImport imports a connection while Rekey runs, from a server that already
// seals with the new key or from one that still seals with the old key only.
func TestRekeyConcurrentImport(t *testing.T) {
	tests := []struct {
		name string
		// oldRing imports through a store that only holds the old key.
		oldRing bool
		// lastConnection imports the connection Rekey visits last; otherwise the one it has
		// already re-sealed.
		lastConnection bool
		// wantRemaining is what the run reports as still not on the new key.
		wantRemaining int64
	}{
		{name: "new key, row not yet visited", lastConnection: true},
		{name: "old key, row not yet visited", oldRing: true, lastConnection: true},
		{name: "new key, row already re-sealed"},
		{name: "old key, row already re-sealed", oldRing: true, wantRemaining: 1},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				keyA, keyB := rekeyKeys()
				dbURL := b.NewURL(t)
				f := seedRekey(t, openWithKeys(t, dbURL, keyA))
				rotated := openWithKeys(t, dbURL, keyB+","+keyA)
				importer := rotated
				if tt.oldRing {
					importer = openWithKeys(t, dbURL, keyA)
				}
				target := &f.connections[0]
				if tt.lastConnection {
					target = &f.connections[len(f.connections)-1]
				}
				in := f.integration["dev/github"]
				for _, i := range f.integration {
					if i.EnvironmentID == target.envID && i.UniqueKey == target.providerConfigKey {
						in = i
					}
				}
				target.credentials = `{"type":"OAUTH2","access_token":"fresh"}`

				imported := false
				got, err := rotated.Rekey(ctx, 1, func(p store.RekeyProgress) {
					if p.Connections.Done == 1 && !imported {
						imported = true
						importCredentials(t, importer, in, target.connectionID, target.credentials)
					}
				}, nil)
				if err != nil {
					t.Fatalf("rekey: %v", err)
				}
				if !imported {
					t.Fatal("the import did not run")
				}
				if got.Connections.Remaining != tt.wantRemaining || got.Connections.Skipped != 0 {
					t.Errorf("rekey = %+v, want Remaining %d and nothing skipped", got, tt.wantRemaining)
				}
				wantReadable(t, openWithKeys(t, dbURL, keyB+","+keyA), mustRing(t, keyB+","+keyA), f)

				again, err := rotated.Rekey(ctx, 1, nil, nil)
				if err != nil || again.Connections.Done != tt.wantRemaining || again.Connections.Remaining != 0 {
					t.Errorf("second run = %+v, %v; want %d re-sealed and none left", again, err, tt.wantRemaining)
				}
				wantKeyIDs(t, rotated, map[string]int{"b": 7}, map[string]int{"b": 2})
				wantReadable(t, openWithKeys(t, dbURL, keyB), mustRing(t, keyB), f)
			})
		}
	})
}

// TestRekeyWriteBetweenReadAndUpdate holds a write to a connection open while Rekey reads the
// connection's old value, then commits it while Rekey waits to update the row: Rekey must skip
// the row and the write must stay.
func TestRekeyWriteBetweenReadAndUpdate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		if b.Name != "postgres" {
			t.Skip("SQLite runs one write transaction at a time: a batch's read and update cannot interleave with a write")
		}
		ctx := context.Background()
		keyA, keyB := rekeyKeys()
		dbURL := b.NewURL(t)
		old := openWithKeys(t, dbURL, keyA)
		in := newIntegration(t, old, "dev", "github", "OAUTH2")
		importCredentials(t, old, in, "c1", `{"type":"OAUTH2","access_token":"old"}`)
		oldSealed, err := old.RawCredentials(ctx, in.EnvironmentID, "github", "c1")
		if err != nil {
			t.Fatal(err)
		}

		// A value the new key sealed for c1, made by an import, then the old value put back.
		rotated := openWithKeys(t, dbURL, keyB+","+keyA)
		importCredentials(t, rotated, in, "c1", `{"type":"OAUTH2","access_token":"fresh"}`)
		freshSealed, err := rotated.RawCredentials(ctx, in.EnvironmentID, "github", "c1")
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, err := old.SQL()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sqlDB.ExecContext(ctx, "UPDATE connections SET credentials = $1 WHERE connection_id = 'c1'", oldSealed); err != nil {
			t.Fatal(err)
		}

		writer, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = writer.Rollback() }()
		if _, err := writer.ExecContext(ctx, "UPDATE connections SET credentials = $1 WHERE connection_id = 'c1'", freshSealed); err != nil {
			t.Fatal(err)
		}

		type result struct {
			p   store.RekeyProgress
			err error
		}
		done := make(chan result, 1)
		go func() {
			p, err := rotated.Rekey(ctx, 10, nil, nil)
			done <- result{p, err}
		}()
		waitForLockWait(t, sqlDB, done)
		if err := writer.Commit(); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatalf("rekey: %v", r.err)
		}
		want := store.RekeyProgress{KeyID: "b", Connections: store.RekeyCount{Total: 1, Skipped: 1}}
		if r.p != want {
			t.Errorf("rekey = %+v, want %+v", r.p, want)
		}
		got, err := openWithKeys(t, dbURL, keyB).ConnectionCredentials(ctx, in.EnvironmentID, "github", "c1")
		if err != nil || string(got) != `{"type":"OAUTH2","access_token":"fresh"}` {
			t.Errorf("credentials after rekey = %s, %v; want the concurrent write", got, err)
		}
	})
}

// waitForLockWait returns once a session of the test database waits for a row lock.
func waitForLockWait[T any](t *testing.T, sqlDB *sql.DB, done <-chan T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := sqlDB.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case r := <-done:
			t.Fatalf("rekey finished without waiting for the row: %+v", r)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("rekey never waited for the locked row")
}

func TestRekeyRefusesABatchSizeUnderOne(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		keyA, keyB := rekeyKeys()
		dbURL := b.NewURL(t)
		seedRekey(t, openWithKeys(t, dbURL, keyA))
		if _, err := openWithKeys(t, dbURL, keyB+","+keyA).Rekey(context.Background(), 0, nil, nil); err == nil {
			t.Fatal("rekey with batch size 0: no error")
		}
	})
}

// TestRekeySkipsWhatItCannotOpen: a value the ring cannot open is reported with its row and left
// as it is, and the run goes on past it, in the run that meets it and in a run that resumes one
// stopped just after it.
func TestRekeySkipsWhatItCannotOpen(t *testing.T) {
	// The rows of seedRekey, by id: 1 dev/github c1, 2 prod/github c1, 3 dev/github c2,
	// 4 dev/stripe s1, 5 dev/github c3, 6 prod/github c2, 7 dev/stripe s2.
	const moveC3ToC2 = "UPDATE connections SET credentials = (SELECT c.credentials FROM connections c " +
		"WHERE c.connection_id = 'c3') WHERE connection_id = 'c2' AND provider_config_key = 'github' " +
		"AND environment_id = (SELECT id FROM environments WHERE name = 'dev')"
	c2 := store.RekeyFailure{Table: "connections", Column: "credentials", Environment: "dev", Integration: "github", ConnectionID: "c2", KeyID: "a"}
	tests := []struct {
		name string
		// ring is the key ring Rekey runs with, from the old key a and the new key b.
		ring func(a, b string) string
		// tamper changes the stored data before the run.
		tamper string
		// stopAfterFailure cancels the first run once it reported its first failure.
		stopAfterFailure bool
		want             store.RekeyProgress
		wantFailures     []string // table/connection id (or unique key)/key id
		// wantSecond is a second run's result, which resumes the first.
		wantSecond store.RekeyProgress
		// wantKeys are the key ids of the connections after both runs.
		wantKeys map[string]int
	}{
		{
			name: "values sealed with a key the ring lacks",
			ring: func(a, b string) string { return b },
			want: store.RekeyProgress{KeyID: "b",
				Connections:  store.RekeyCount{Total: 7, Failed: 7},
				Integrations: store.RekeyCount{Total: 2, Failed: 2}},
			wantFailures: []string{"integrations/github/a", "integrations/github/a",
				"connections/c1/a", "connections/c1/a", "connections/c2/a", "connections/s1/a", "connections/c3/a", "connections/c2/a", "connections/s2/a"},
			wantSecond: store.RekeyProgress{KeyID: "b",
				Connections:  store.RekeyCount{Total: 7, Failed: 7},
				Integrations: store.RekeyCount{Total: 2, Failed: 2}},
			wantKeys: map[string]int{"a": 7},
		},
		{
			name:   "a value moved to another connection",
			ring:   func(a, b string) string { return b + "," + a },
			tamper: moveC3ToC2,
			want: store.RekeyProgress{KeyID: "b",
				Connections:  store.RekeyCount{Total: 7, Done: 6, Failed: 1},
				Integrations: store.RekeyCount{Total: 2, Done: 2}},
			wantFailures: []string{"connections/c2/a"},
			wantSecond: store.RekeyProgress{KeyID: "b",
				Connections: store.RekeyCount{Total: 1, Failed: 1}},
			wantKeys: map[string]int{"a": 1, "b": 6},
		},
		{
			name:             "resumed after a run stopped just past the value",
			ring:             func(a, b string) string { return b + "," + a },
			tamper:           moveC3ToC2,
			stopAfterFailure: true,
			want: store.RekeyProgress{KeyID: "b",
				Connections:  store.RekeyCount{Total: 7, Done: 2, Failed: 1, Remaining: 4},
				Integrations: store.RekeyCount{Total: 2, Done: 2}},
			wantFailures: []string{"connections/c2/a"},
			wantSecond: store.RekeyProgress{KeyID: "b",
				Connections: store.RekeyCount{Total: 5, Done: 4, Failed: 1}},
			wantKeys: map[string]int{"a": 1, "b": 6},
		},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				keyA, keyB := rekeyKeys()
				dbURL := b.NewURL(t)
				seeded := openWithKeys(t, dbURL, keyA)
				f := seedRekey(t, seeded)
				if tt.tamper != "" {
					sqlDB, err := seeded.SQL()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := sqlDB.Exec(tt.tamper); err != nil {
						t.Fatal(err)
					}
				}
				db := openWithKeys(t, dbURL, tt.ring(keyA, keyB))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var failures []string
				got, err := db.Rekey(ctx, 1, nil, func(rf store.RekeyFailure) {
					name := rf.ConnectionID
					if rf.Table == "integrations" {
						name = rf.Integration
					}
					failures = append(failures, rf.Table+"/"+name+"/"+rf.KeyID)
					if rf.Err == nil || rf.Environment == "" || rf.ID == 0 {
						t.Errorf("failure %+v: want its error, environment and row id", rf)
					}
					if rf.ConnectionID == "c2" && rf.Environment == "dev" {
						want := c2
						want.ID, want.Err = rf.ID, rf.Err
						if rf != want || rf.ID != 3 {
							t.Errorf("failure %+v, want %+v with row id 3", rf, want)
						}
					}
					if tt.stopAfterFailure {
						cancel()
					}
				})
				if tt.stopAfterFailure {
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("stopped run: error %v, want context.Canceled", err)
					}
				} else if err != nil {
					t.Fatalf("rekey: %v", err)
				}
				if got != tt.want {
					t.Errorf("rekey = %+v, want %+v", got, tt.want)
				}
				if fmt.Sprint(failures) != fmt.Sprint(tt.wantFailures) {
					t.Errorf("failures %v, want %v", failures, tt.wantFailures)
				}
				second, err := db.Rekey(context.Background(), 2, nil, nil)
				if err != nil {
					t.Fatalf("second run: %v", err)
				}
				if second != tt.wantSecond {
					t.Errorf("second run = %+v, want %+v", second, tt.wantSecond)
				}
				if got := sealedKeyIDs(t, db)["connections"]; fmt.Sprint(got) != fmt.Sprint(tt.wantKeys) {
					t.Errorf("connections by key id %v, want %v", got, tt.wantKeys)
				}
				if tt.tamper == "" {
					return
				}
				// Every other value opens with the new key alone.
				onlyB := openWithKeys(t, dbURL, keyB)
				for _, c := range f.connections {
					if c.connectionID == "c2" && c.envID == f.integration["dev/github"].EnvironmentID {
						continue
					}
					got, err := onlyB.ConnectionCredentials(context.Background(), c.envID, c.providerConfigKey, c.connectionID)
					if err != nil || string(got) != c.credentials {
						t.Errorf("%s: %s, %v; want %s", c.connectionID, got, err, c.credentials)
					}
				}
			})
		}
	})
}
