package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/credport/credport/store"
)

type pgbenchConfig struct {
	dir      string
	clients  int
	warmup   time.Duration
	duration time.Duration
	// script is the pgbench script; rowsPerTx the rows each of its transactions upserts.
	script    string
	rowsPerTx int
}

// pgbenchStatement is store.UpsertConnection's statement against the pgbench table, taken from
// the store so that it cannot drift from what credport sends, with rows from the given source.
// The values are pgbench variables, which -M prepared binds as parameters of a prepared
// statement, as pgx does with its statement cache. The four conditions are what a request like
// the load's sets: metadata and tags present, connection_config and end_user absent.
func pgbenchStatement(rows string) string {
	return store.UpsertStatement{
		Table: pgbenchTable, Rows: rows,
		MergeConfig: "false", HasConfig: "false", HasMetadata: "true", HasTags: "true", HasEndUser: "false",
	}.SQL(store.DialectPostgres) + ";\n"
}

// pgbenchUpsert upserts one row a transaction with the values of one import from the load, to a
// random connection id, like the load's.
var pgbenchUpsert = `\set id random(1, 1000000000000)` + pgbenchStatement(`VALUES (:env_id, :integration_id, :provider_config_key, 'bench-' || :id::text || '-' || :client_id::text, :credentials,
    now() + interval '1 hour', '{}', :metadata, :tags, NULL,
    now(), now(), now())`)

// bulkStatementRows is how many rows one statement of pgbenchBulkUpsert upserts.
const bulkStatementRows = 500

// pgbenchBulkUpsert upserts bulkStatementRows rows a statement, as a database-side bulk load would.
var pgbenchBulkUpsert = `\set id random(1, 1000000000000)` + pgbenchStatement(`SELECT :env_id::bigint, :integration_id::bigint, :provider_config_key::text,
    'bulk-' || :id::text || '-' || i::text || '-' || :client_id::text, :credentials::text,
    now() + interval '1 hour', '{}'::jsonb, :metadata::jsonb, :tags::jsonb, NULL::jsonb,
    now(), now(), now()
FROM generate_series(1, `+strconv.Itoa(bulkStatementRows)+`) AS i`)

// runPgbench runs the upsert with pgbench: first for the warm-up, then measured.
func runPgbench(ctx context.Context, db *benchDB, cfg pgbenchConfig) (*pgbenchStats, error) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		return nil, fmt.Errorf("pgbench not found (install the PostgreSQL client tools, or pass --pgbench=false): %w", err)
	}
	sample, err := db.sampleImport(ctx)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(cfg.dir, "upsert.sql")
	if err := os.WriteFile(script, []byte(cfg.script), 0o600); err != nil {
		return nil, err
	}
	u, err := url.Parse(db.url)
	if err != nil {
		return nil, err
	}
	base := []string{"-n", "-M", "prepared", "-f", script,
		"-D", "env_id=" + strconv.FormatInt(db.envID, 10),
		"-D", "integration_id=" + strconv.FormatInt(db.integrationID, 10),
		"-D", "provider_config_key=" + benchIntegration,
		"-D", "credentials=" + sample.credentials,
		"-D", "metadata=" + sample.metadata,
		"-D", "tags=" + sample.tags,
		"-c", strconv.Itoa(cfg.clients), "-j", strconv.Itoa(min(2, cfg.clients)),
	}
	env := os.Environ()
	if h := u.Hostname(); h != "" {
		base = append(base, "-h", h)
	}
	if p := u.Port(); p != "" {
		base = append(base, "-p", p)
	}
	if u.User != nil {
		base = append(base, "-U", u.User.Username())
		if pw, ok := u.User.Password(); ok {
			env = append(env, "PGPASSWORD="+pw)
		}
	}
	if mode := u.Query().Get("sslmode"); mode != "" {
		env = append(env, "PGSSLMODE="+mode)
	}
	dbname := strings.TrimPrefix(u.Path, "/")

	pgbench := func(d time.Duration) (string, error) {
		secs := max(1, int(math.Ceil(d.Seconds())))
		args := append(append([]string{}, base...), "-T", strconv.Itoa(secs), dbname)
		cmd := exec.CommandContext(ctx, "pgbench", args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("pgbench: %w\n%s%s", err, stdout.Bytes(), truncate(stderr.String(), 4000))
		}
		return stdout.String(), nil
	}
	if cfg.warmup > 0 {
		if _, err := pgbench(cfg.warmup); err != nil {
			return nil, err
		}
	}
	b0, n0, cpuErr0 := hostCPU()
	out, err := pgbench(cfg.duration)
	if err != nil {
		return nil, err
	}
	b1, n1, cpuErr1 := hostCPU()
	stats, err := parsePgbench(out)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	if cpuErr0 == nil && cpuErr1 == nil && n1 > n0 {
		stats.HostCPUBusyPercent = 100 * float64(b1-b0) / float64(n1-n0)
	}
	stats.Seconds = max(1, int(math.Ceil(cfg.duration.Seconds())))
	stats.RowsPerSecond = stats.TPS * float64(max(1, cfg.rowsPerTx))
	return stats, nil
}

var (
	pgbenchTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)
	pgbenchLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	pgbenchTx      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	pgbenchFailed  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

func parsePgbench(out string) (*pgbenchStats, error) {
	m := pgbenchTPS.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("pgbench printed no tps line")
	}
	var s pgbenchStats
	s.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := pgbenchLatency.FindStringSubmatch(out); m != nil {
		s.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := pgbenchTx.FindStringSubmatch(out); m != nil {
		s.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil {
		s.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if s.Failed > 0 {
		return &s, fmt.Errorf("pgbench: %d failed transactions", s.Failed)
	}
	return &s, nil
}
