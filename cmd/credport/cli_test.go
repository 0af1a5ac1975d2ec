package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/glebarez/sqlite"     // registers the "sqlite" database/sql driver
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// cli runs the program in-process against one database, with an environment of its own: nothing
// is read from the process environment.
type cli struct {
	t     *testing.T
	dbURL string
	env   map[string]string
	// store is a store on the same database, opened on first use and shared with the copies
	// that in makes; it lives as long as the test that made the CLI.
	store *sharedStore
}

type sharedStore struct {
	t  *testing.T
	db *store.DB
}

// db is a store on the CLI's database, for reading it the way the server does.
func (c *cli) db() *store.DB {
	c.t.Helper()
	if c.store.db == nil {
		c.store.db = storetest.OpenURL(c.store.t, c.dbURL)
	}
	return c.store.db
}

// newCLI makes a fresh database on b and a CLI configured for it with the test encryption key.
func newCLI(t *testing.T, b storetest.Backend) *cli {
	t.Helper()
	dbURL := b.NewURL(t)
	if store.DialectOf(dbURL) == store.DialectSQLite {
		emptyDatabase(t, store.SQLitePath(dbURL))
	}
	return &cli{t: t, dbURL: dbURL, store: &sharedStore{t: t}, env: map[string]string{
		"CREDPORT_DATABASE_URL":   dbURL,
		"CREDPORT_ENCRYPTION_KEY": storetest.TestKey,
	}}
}

// emptyDatabase creates an empty SQLite database file at path, as an operator's first
// `credport migrate` would (without its schema, which the next command applies): only serve,
// bootstrap and migrate create a database.
func emptyDatabase(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// in is c reporting to t, for use inside subtests.
func (c *cli) in(t *testing.T) *cli {
	d := *c
	d.t = t
	return &d
}

// getenv returns a lookup over a copy of the environment, safe to hand to a goroutine.
func (c *cli) getenv() func(string) string {
	env := make(map[string]string, len(c.env))
	for k, v := range c.env {
		env[k] = v
	}
	return func(name string) string { return env[name] }
}

// run runs one command and returns what it wrote.
func (c *cli) run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, c.getenv(), &out, &errOut)
	return out.String(), errOut.String(), err
}

// must runs one command that has to succeed and returns its stdout.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("credport %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// dialect is the engine the CLI's database runs on.
func (c *cli) dialect() store.Dialect { return store.DialectOf(c.dbURL) }

// query runs a query that returns one text column and returns its values.
func (c *cli) query(q string, args ...any) []string {
	c.t.Helper()
	driver, dsn := "pgx", c.dbURL
	if c.dialect() == store.DialectSQLite {
		driver, dsn = "sqlite", "file:"+store.SQLitePath(c.dbURL)+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q, args...)
	if err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			c.t.Fatal(err)
		}
		out = append(out, s.String)
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// countKeys is the number of API keys in the database, revoked ones included.
func (c *cli) countKeys() int {
	c.t.Helper()
	rows := c.query("SELECT CAST(COUNT(*) AS TEXT) FROM api_keys")
	if len(rows) != 1 {
		c.t.Fatalf("count api keys: %v", rows)
	}
	n, err := strconv.Atoi(rows[0])
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// stored is what the database holds, as text that a leak scan can search: on SQLite the bytes of
// the database file and of its -wal and -shm files, on PostgreSQL every row of every table as JSON.
func (c *cli) stored() string {
	c.t.Helper()
	if c.dialect() == store.DialectSQLite {
		var all []byte
		path := store.SQLitePath(c.dbURL)
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			data, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) && p != path {
				continue
			}
			if err != nil {
				c.t.Fatal(err)
			}
			all = append(all, data...)
		}
		return string(all)
	}
	tables := c.query(`SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`)
	for _, want := range []string{"api_keys", "connections", "environments", "integrations"} {
		if !inList(tables, want) {
			c.t.Fatalf("table %s missing from %v", want, tables)
		}
	}
	var dump strings.Builder
	for _, table := range tables {
		for _, row := range c.query(`SELECT row_to_json(t)::text FROM "` + table + `" t`) {
			dump.WriteString(row)
			dump.WriteByte('\n')
		}
	}
	return dump.String()
}

// assertNoLeak fails when any secret occurs in text, which is named where for the message.
func assertNoLeak(t *testing.T, where, text string, secrets map[string]string) {
	t.Helper()
	for name, secret := range secrets {
		if secret == "" {
			t.Fatalf("empty secret %s", name)
		}
		if strings.Contains(text, secret) {
			t.Errorf("%s contains the %s in clear", where, name)
		}
	}
}

func inList(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// randomString is prefix followed by random hex, unique enough to find in a scan.
func randomString(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// logRecords parses JSON log lines; lines that are not JSON fail the test.
func logRecords(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// syncBuffer is a buffer that a server may write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
