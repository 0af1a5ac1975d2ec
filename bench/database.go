package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for the admin connection

	"github.com/credport/credport/store"
)

// benchDB is the database one benchmark runs on.
type benchDB struct {
	url     string
	dialect store.Dialect
	// name and adminURL are set on PostgreSQL, where the database is made for the run.
	name     string
	adminURL string

	store *store.DB
	sql   *sql.DB
	// envID and integrationID are the ids of the benchmark's environment and integration.
	envID, integrationID int64
}

// createPostgresDatabase makes an empty database credport_bench_<random> on the server adminURL
// names.
func createPostgresDatabase(ctx context.Context, adminURL string) (*benchDB, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%s is not a postgres:// URL", adminURLEnv)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "credport_bench_" + hex.EncodeToString(suffix)
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		return nil, fmt.Errorf("create database %s (set %s to a PostgreSQL server you may create databases on): %w",
			name, adminURLEnv, err)
	}
	u.Path = "/" + name
	return &benchDB{url: u.String(), dialect: store.DialectPostgres, name: name, adminURL: adminURL}, nil
}

// drop removes the benchmark's PostgreSQL database.
func (db *benchDB) drop() error {
	db.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := sql.Open("pgx", db.adminURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+db.name+`" WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", db.name, err)
	}
	return nil
}

// display is the database's URL without its password.
func (db *benchDB) display() string {
	if u, err := url.Parse(db.url); err == nil && u.User != nil {
		return u.Redacted()
	}
	return db.url
}

// open connects to the database the CLI has migrated and finds the benchmark's environment and
// integration.
func (db *benchDB) open(ctx context.Context, keys *store.Keyring) error {
	s, err := store.Open(ctx, store.Config{URL: db.url, Keys: keys})
	if err != nil {
		return err
	}
	db.store = s
	if db.sql, err = s.SQL(); err != nil {
		return err
	}
	return db.sql.QueryRowContext(ctx, db.bind(
		`SELECT e.id, i.id FROM environments e JOIN integrations i ON i.environment_id = e.id
		 WHERE e.name = ? AND i.unique_key = ?`), benchEnv, benchIntegration).Scan(&db.envID, &db.integrationID)
}

func (db *benchDB) close() {
	if db.store != nil {
		_ = db.store.Close()
		db.store, db.sql = nil, nil
	}
}

// bind turns ? placeholders into $n on PostgreSQL.
func (db *benchDB) bind(query string) string {
	if db.dialect != store.DialectPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// preload stores n connections in one server-side statement. Their credentials look like sealed
// values of the size the load's imports produce; the rows are otherwise like the load's, plus an
// end user in one of orgCount organizations, which the list by organization reads.
func (db *benchDB) preload(ctx context.Context, n int, keyID string) error {
	now := time.Now().UTC()
	expires := now.Add(time.Hour)
	var query string
	switch db.dialect {
	case store.DialectPostgres:
		query = `
INSERT INTO connections (
    environment_id, integration_id, provider_config_key, connection_id, credentials,
    credentials_expires_at, connection_config, metadata, tags, end_user,
    created_at, updated_at, last_fetched_at)
SELECT $1, $2, $3, 'preload-' || lpad(i::text, 9, '0'),
    'v1:' || $4 || ':' || translate(encode(
        sha512(('a' || i)::bytea) || sha512(('b' || i)::bytea) || sha512(('c' || i)::bytea) ||
        sha512(('d' || i)::bytea) || sha512(('e' || i)::bytea) || sha512(('f' || i)::bytea) ||
        sha512(('g' || i)::bytea), 'base64'), E'\n', ''),
    $5, '{}',
    jsonb_build_object('account_id', 'acct_' || left(md5(i::text), 16), 'account_name', 'Example Corporation',
        'plan', 'enterprise', 'region', 'eu-west-1', 'imported_from', 'legacy-vault',
        'scopes', jsonb_build_array('repo', 'read:org', 'workflow', 'read:user'),
        'seats', 1 + i % 500, 'migrated', true),
    jsonb_build_object('end_user_id', 'user-' || i, 'organization_id', 'org-' || i % $8),
    jsonb_build_object('id', 'user-' || i, 'organization', jsonb_build_object('id', 'org-' || i % $8)),
    $6, $6, $6
FROM generate_series(1, $7::bigint) AS i`
	default:
		query = `
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?7)
INSERT INTO connections (
    environment_id, integration_id, provider_config_key, connection_id, credentials,
    credentials_expires_at, connection_config, metadata, tags, end_user,
    created_at, updated_at, last_fetched_at)
SELECT ?1, ?2, ?3, 'preload-' || printf('%09d', i),
    'v1:' || ?4 || ':' || hex(randomblob(303)),
    ?5, '{}',
    '{"account_id":"acct_' || lower(hex(randomblob(8))) || '","account_name":"Example Corporation",' ||
        '"plan":"enterprise","region":"eu-west-1","imported_from":"legacy-vault",' ||
        '"scopes":["repo","read:org","workflow","read:user"],"seats":' || (1 + i % 500) || ',"migrated":true}',
    '{"end_user_id":"user-' || i || '","organization_id":"org-' || (i % ?8) || '"}',
    '{"id":"user-' || i || '","organization":{"id":"org-' || (i % ?8) || '"}}',
    ?6, ?6, ?6
FROM s`
	}
	_, err := db.sql.ExecContext(ctx, query, db.envID, db.integrationID, benchIntegration, keyID, expires, now, n, orgCount)
	if err != nil {
		return fmt.Errorf("preload %d connections: %w", n, err)
	}
	return nil
}

// pgbenchTable is the table pgbench upserts into.
const pgbenchTable = "bench_connections"

// createPgbenchTable makes a table shaped like connections, with its columns, defaults, unique
// constraint and foreign keys, and gives it the same preloaded rows.
func (db *benchDB) createPgbenchTable(ctx context.Context, withRows bool) error {
	stmts := []string{
		`CREATE TABLE ` + pgbenchTable + ` (LIKE connections INCLUDING ALL)`,
		// LIKE copies the default of id, which names the sequence of connections; use our own.
		`CREATE SEQUENCE ` + pgbenchTable + `_id_seq OWNED BY ` + pgbenchTable + `.id`,
		`ALTER TABLE ` + pgbenchTable + ` ALTER COLUMN id SET DEFAULT nextval('` + pgbenchTable + `_id_seq')`,
	}
	rows, err := db.sql.QueryContext(ctx,
		`SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		 WHERE conrelid = 'connections'::regclass AND contype = 'f' ORDER BY conname`)
	if err != nil {
		return fmt.Errorf("read the foreign keys of connections: %w", err)
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return err
		}
		stmts = append(stmts, `ALTER TABLE `+pgbenchTable+` ADD CONSTRAINT "`+pgbenchTable+`_`+name+`" `+def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if withRows {
		stmts = append(stmts,
			`INSERT INTO `+pgbenchTable+` SELECT * FROM connections`,
			`SELECT setval('`+pgbenchTable+`_id_seq', (SELECT max(id) FROM `+pgbenchTable+`))`)
	}
	for _, s := range stmts {
		if _, err := db.sql.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create %s: %s: %w", pgbenchTable, s, err)
		}
	}
	return nil
}

// settle flushes and analyses the database so that neither measurement pays for the writes
// before it.
func (db *benchDB) settle(ctx context.Context) error {
	var stmts []string
	switch db.dialect {
	case store.DialectPostgres:
		stmts = []string{"VACUUM ANALYZE", "CHECKPOINT"}
	default:
		stmts = []string{"ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"}
	}
	for _, s := range stmts {
		if _, err := db.sql.ExecContext(ctx, s); err != nil {
			if s == "CHECKPOINT" { // needs superuser or pg_checkpoint; only a fairness measure
				fmt.Fprintf(os.Stderr, "bench: %s: %v (continuing)\n", s, err)
				continue
			}
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// countBenchRows counts the connections the load imported.
func (db *benchDB) countBenchRows(ctx context.Context) (int64, error) {
	return db.countRows(ctx, connectionIDPrefix)
}

// countRows counts the benchmark environment's connections whose id starts with prefix.
func (db *benchDB) countRows(ctx context.Context, prefix string) (int64, error) {
	var n int64
	err := db.sql.QueryRowContext(ctx, db.bind(
		`SELECT count(*) FROM connections WHERE environment_id = ? AND connection_id LIKE ?`),
		db.envID, prefix+"%").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count imported connections: %w", err)
	}
	return n, nil
}

// sampleImport is one connection the load imported, as stored, to give pgbench the same values.
type sampleImport struct {
	credentials, metadata, tags string
}

func (db *benchDB) sampleImport(ctx context.Context) (sampleImport, error) {
	var s sampleImport
	err := db.sql.QueryRowContext(ctx,
		`SELECT credentials, metadata::text, tags::text FROM connections
		 WHERE environment_id = $1 AND connection_id LIKE $2 LIMIT 1`,
		db.envID, connectionIDPrefix+"%").Scan(&s.credentials, &s.metadata, &s.tags)
	if errors.Is(err, sql.ErrNoRows) {
		return s, errors.New("no imported connection to model pgbench's rows on")
	}
	return s, err
}
