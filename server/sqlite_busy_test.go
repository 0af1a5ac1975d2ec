package server_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"
	"time"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestSQLiteLockHeldElsewhere: while another process holds the SQLite write lock longer than the
// request timeout, an import answers 503 within about that timeout (SQLite's wait for the lock
// ignores the request's deadline, so the store waits no longer than a request may last), and
// the server answers 200 again as soon as the lock is released.
func TestSQLiteLockHeldElsewhere(t *testing.T) {
	t.Parallel()
	const requestTimeout = 300 * time.Millisecond
	path := storetest.SQLite.NewURL(t)
	db, err := store.Open(context.Background(), store.Config{URL: path, Keys: storetest.Keys(t), BusyTimeout: requestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	v := newEnvWith(t, db, server.Config{RequestTimeout: requestTimeout})
	v.integration("dev", "github", "OAUTH2")

	// Another process: a connection of its own that takes the write lock and keeps it.
	other, err := sql.Open("sqlite", "file:"+store.SQLitePath(path)+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	lock, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec("UPDATE environments SET name = name"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	res := v.on(t).do(request{body: validImport})
	took := time.Since(start)
	wantError(t, res, http.StatusServiceUnavailable, "database_unavailable")
	if took > 5*requestTimeout {
		t.Errorf("the import beside a held lock answered after %v, want about the request timeout %v", took, requestTimeout)
	}

	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if res := v.on(t).do(request{body: validImport}); res.status != http.StatusOK {
		t.Errorf("import once the lock is released: %d %s", res.status, res.body)
	}
}
