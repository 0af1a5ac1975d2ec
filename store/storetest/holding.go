package storetest

import (
	"database/sql"
	"testing"
)

// Holding counts what the other sessions of the PostgreSQL database at dbURL hold open: the
// client sessions inside a transaction, and the advisory locks.
func Holding(t testing.TB, dbURL string) (transactions, advisoryLocks int) {
	t.Helper()
	probe, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if err := probe.QueryRow(`SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND xact_start IS NOT NULL`).Scan(&transactions); err != nil {
		t.Fatal(err)
	}
	if err := probe.QueryRow(`SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&advisoryLocks); err != nil {
		t.Fatal(err)
	}
	return transactions, advisoryLocks
}
