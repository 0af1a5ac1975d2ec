// Package storetest opens fresh stores on every database credport supports, for tests.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating and dropping test databases

	"github.com/credport/credport/store"
)

// AdminURLEnv names the variable that overrides the PostgreSQL server tests use.
const AdminURLEnv = "CREDPORT_TEST_POSTGRES_URL"

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// TestKey is the encryption key of test stores (base64 of 32 bytes).
const TestKey = "test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// Backend is one database engine tests run on.
type Backend struct {
	Name string
	// NewURL makes an empty database and returns its URL; it is dropped when the test ends.
	NewURL func(t testing.TB) string
}

// The backends, for tests that need one engine in particular.
var (
	SQLite   = Backend{Name: "sqlite", NewURL: newSQLiteURL}
	Postgres = Backend{Name: "postgres", NewURL: newPostgresURL}
)

// Backends are SQLite and PostgreSQL.
func Backends() []Backend {
	return []Backend{SQLite, Postgres}
}

// Run runs fn once per backend, as subtests named after them.
func Run(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { fn(t, b) })
	}
}

// Keys is the key ring of test stores.
func Keys(t testing.TB) *store.Keyring {
	t.Helper()
	ring, err := store.ParseKeyring(TestKey)
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// Open makes a fresh database on b and opens a migrated store on it, closed when the test ends.
func Open(t testing.TB, b Backend) *store.DB {
	t.Helper()
	return OpenURL(t, b.NewURL(t))
}

// OpenURL opens a migrated store on an existing database, closed when the test ends.
func OpenURL(t testing.TB, dbURL string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{URL: dbURL, Keys: Keys(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newSQLiteURL(t testing.TB) string {
	return filepath.Join(t.TempDir(), "credport.db")
}

// newPostgresURL creates a database of its own on the test server and drops it at cleanup. When
// the server is unreachable the test is skipped, except under CI, where that is a failure.
func newPostgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(AdminURLEnv)
	if admin == "" {
		admin = defaultAdminURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := sql.Open("pgx", admin)
	if err == nil {
		err = conn.PingContext(ctx)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("PostgreSQL not reachable (%v); set %s", err, AdminURLEnv)
	}
	defer conn.Close()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "credport_test_" + hex.EncodeToString(suffix)
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		c, err := sql.Open("pgx", admin)
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer c.Close()
		if _, err := c.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", AdminURLEnv, err)
	}
	u.Path = "/" + name
	return fmt.Sprint(u)
}
