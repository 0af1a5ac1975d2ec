package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/credport/credport/store"
)

// BlockWrites takes the database's write lock on connections from a connection of its own, so
// that imports wait in the database until release is called (at the latest when the test ends).
// SQLite writers wait on it for their busy timeout (10 s) and then fail.
func BlockWrites(t testing.TB, dbURL string) (release func()) {
	t.Helper()
	ctx := context.Background()
	db := OpenURL(t, dbURL)
	pool, err := db.SQL()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"BEGIN IMMEDIATE"}
	if db.Dialect() == store.DialectPostgres {
		stmts = []string{"BEGIN", "LOCK TABLE connections IN EXCLUSIVE MODE"}
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			_ = conn.Close()
			t.Fatalf("block writes: %s: %v", s, err)
		}
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			t.Errorf("unblock writes: %v", err)
		}
		_ = conn.Close()
	}
	t.Cleanup(release)
	return release
}

// WaitGroupCommit waits until the group commit of db reaches the state cond accepts, and fails
// the test after 20 s.
func WaitGroupCommit(t testing.TB, db *store.DB, what string, cond func(store.GroupCommitStats) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(db.GroupCommitStats()) {
		if time.Now().After(deadline) {
			t.Fatalf("group commit never reached %s: %+v", what, db.GroupCommitStats())
		}
		time.Sleep(time.Millisecond)
	}
}
