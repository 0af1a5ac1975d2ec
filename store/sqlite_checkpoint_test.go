package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestSQLiteWALStaysBounded imports 120 MB of connections into SQLite (the WAL grew to over
// 400 MB with it before), ticking the WAL checkpointer's clock a second every 50 imports: the
// WAL file never exceeds 64 MiB, and once the database has been idle for 30 s of that clock, it
// is emptied.
func TestSQLiteWALStaysBounded(t *testing.T) {
	t.Parallel()
	path := storetest.SQLite.NewURL(t)
	ticks := make(chan time.Time)
	db, err := store.Open(context.Background(), store.Config{URL: path, Keys: storetest.Keys(t), CheckpointTicks: ticks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	envID, err := db.EnsureEnvironment(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	in, err := db.CreateIntegration(ctx, store.NewIntegration{Environment: "dev", UniqueKey: "gh", Provider: "github", AuthMode: "API_KEY"})
	if err != nil {
		t.Fatal(err)
	}

	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// tick advances the clock by d and returns once the checkpointer has handled it: the ticks
	// channel is unbuffered and the checkpointer takes one tick at a time, so it has finished
	// with a tick once it takes the next.
	tick := func(d time.Duration) {
		t.Helper()
		clock = clock.Add(d)
		for _, at := range []time.Time{clock, clock} {
			select {
			case ticks <- at:
			case <-time.After(30 * time.Second):
				t.Fatal("the WAL checkpointer took no tick")
			}
		}
	}
	walSize := func() int64 {
		st, err := os.Stat(store.SQLitePath(path) + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}

	const (
		imports  = 400
		perTick  = 50
		walLimit = 64 << 20
	)
	meta, _ := json.Marshal(map[string]string{"blob": strings.Repeat("x", 300_000)})
	var largest int64
	for i := range imports {
		_, err := db.UpsertConnection(ctx, store.UpsertConnection{
			EnvironmentID: envID, Integration: in, ConnectionID: fmt.Sprint("c-", i),
			Credentials: json.RawMessage(`{"type":"API_KEY","apiKey":"k"}`), Metadata: meta,
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%perTick == perTick-1 {
			largest = max(largest, walSize())
			tick(time.Second)
		}
	}
	largest = max(largest, walSize())
	t.Logf("%d imports of %d KB of metadata: the WAL file was at most %.1f MiB", imports, len(meta)/1000, float64(largest)/(1<<20))
	if largest > walLimit {
		t.Errorf("the WAL file reached %d bytes during the import, want at most %d", largest, walLimit)
	}
	if walSize() == 0 {
		t.Fatal("the WAL file is empty right after the import: the test shows nothing")
	}

	// Idle: nothing is written while the clock runs 30 s.
	for range 31 {
		tick(time.Second)
	}
	if got := walSize(); got != 0 {
		t.Errorf("the WAL file holds %d bytes after 30 s idle, want 0", got)
	}
	// The data is all there.
	if _, err := db.GetConnection(ctx, store.ReadConnection{EnvironmentID: envID, Integration: in, ConnectionID: fmt.Sprint("c-", imports-1)}); err != nil {
		t.Errorf("read back: %v", err)
	}
}
