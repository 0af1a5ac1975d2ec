// Command bench measures how many connections credport imports per second, and how fast it
// answers reads beside them.
//
// One run starts credport on a fresh database, creates API keys and an integration with the CLI,
// drives POST /connections with distinct connection ids from N closed-loop clients, then, on the
// same server and table and for the same duration, getConnection of connections it imported from
// N clients and list pages of 100 filtered by a tag and by the end user's organization from
// --list-clients. On PostgreSQL it then runs pgbench with the equivalent single-statement upsert
// into a table shaped like connections. Last, `credport import` sends --bulk-records records to a
// fresh server, and on PostgreSQL pgbench runs the same upsert 500 rows a statement from 4 clients
// for as long as the import took. It prints one table and writes the same figures as JSON under
// --out.
//
//	go run ./bench                      # PostgreSQL at CREDPORT_BENCH_DATABASE_URL
//	go run ./bench --sqlite             # the embedded default
//	go run ./bench --preload 1000000 --baseline bench/results/latest-postgres.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/credport/credport/store"
)

// adminURLEnv names the PostgreSQL server the benchmark makes its database on.
const adminURLEnv = "CREDPORT_BENCH_DATABASE_URL"

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// The environment and integration the load imports into.
const (
	benchEnv         = "bench"
	benchIntegration = "github"
)

type options struct {
	sqlite      bool
	clients     int
	duration    time.Duration
	warmup      time.Duration
	preload     int
	out         string
	pgbench     bool
	baseline    string
	reads       bool
	listClients int
	adminURL    string
	// bulkRecords is how many records the bulk scenario imports with `credport import`.
	bulkRecords   int
	bulkBatchSize int
	// webhooks configures auth webhooks to a local receiver, so that every import queues and
	// delivers one.
	webhooks bool
}

func main() {
	var o options
	flag.BoolVar(&o.sqlite, "sqlite", false, "use the embedded SQLite database instead of PostgreSQL (no pgbench)")
	flag.IntVar(&o.clients, "clients", 16, "concurrent closed-loop clients")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured duration")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "load before the measurement starts")
	flag.IntVar(&o.preload, "preload", 0, "connections stored before the load starts")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results"), "directory the JSON results go to")
	flag.BoolVar(&o.pgbench, "pgbench", true, "run pgbench with the equivalent upsert (PostgreSQL only)")
	flag.StringVar(&o.baseline, "baseline", "", "a previous result (JSON) to compare with")
	flag.BoolVar(&o.reads, "reads", true, "measure getConnection and filtered list pages after the imports")
	flag.IntVar(&o.listClients, "list-clients", 4, "concurrent closed-loop clients of the list pages")
	flag.IntVar(&o.bulkRecords, "bulk-records", 150000, "records `credport import` sends in the bulk scenario, 0 for none")
	flag.IntVar(&o.bulkBatchSize, "bulk-batch-size", 0, "--batch-size of credport import, when it has one; 0 for its default")
	flag.BoolVar(&o.webhooks, "webhooks", false, "send every import's auth webhook to a local receiver, to measure their cost")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	o.adminURL = os.Getenv(adminURLEnv)
	if o.adminURL == "" {
		o.adminURL = defaultAdminURL
	}
	if o.clients < 1 || o.listClients < 1 || o.duration <= 0 || o.warmup < 0 || o.preload < 0 || o.bulkRecords < 0 || o.bulkBatchSize < 0 {
		fmt.Fprintln(os.Stderr, "bench: --clients and --list-clients must be ≥ 1, --duration > 0, --warmup, --preload, --bulk-records and --bulk-batch-size ≥ 0")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, o)
	stop()
	if res != nil {
		if rerr := report(os.Stdout, o, res, err == nil); rerr != nil {
			fmt.Fprintln(os.Stderr, "bench:", rerr)
			os.Exit(1)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	failed := res.Load.Errors
	for _, r := range res.Reads {
		failed += r.Errors
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d requests failed\n", failed)
		os.Exit(1)
	}
}

// run is one benchmark: database, server, load, pgbench. It returns what it measured, also when
// a later step fails, so that the table still shows the credport figures.
func run(ctx context.Context, o options) (*result, error) {
	tmp, err := os.MkdirTemp("", "credport-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	res := &result{
		StartedAt: time.Now().UTC(),
		Clients:   o.clients,
		Duration:  o.duration.Seconds(),
		Warmup:    o.warmup.Seconds(),
		Preload:   o.preload,
		Host:      hostInfo(),
	}
	key := store.NewKey()
	keys, err := store.ParseKeyring(key)
	if err != nil {
		return nil, err
	}

	var db *benchDB
	if o.sqlite {
		res.Database = "sqlite"
		db = &benchDB{url: filepath.Join(tmp, "credport.db"), dialect: store.DialectSQLite}
	} else {
		res.Database = "postgres"
		db, err = createPostgresDatabase(ctx, o.adminURL)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := db.drop(); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		}()
		res.DatabaseName = db.name
	}
	fmt.Fprintf(os.Stderr, "bench: %s database %s, %d clients, %s after %s warm-up, preload %d\n",
		res.Database, db.display(), o.clients, o.duration, o.warmup, o.preload)

	bin, err := buildServer(ctx, tmp)
	if err != nil {
		return nil, err
	}
	cli := cliRunner{bin: bin, databaseURL: db.url, encryptionKey: key}
	// Only migrate, serve and bootstrap create a database; the other commands need it to exist.
	if _, err := cli.run(ctx, "migrate"); err != nil {
		return nil, err
	}
	secret, err := cli.run(ctx, "keys", "create", "--env", benchEnv, "--name", "bench")
	if err != nil {
		return nil, err
	}
	// The reads use a key of their own, as an application that only reads would.
	readSecret, err := cli.run(ctx, "keys", "create", "--env", benchEnv, "--name", "bench-read",
		"--scope", "environment:connections:read_credentials", "--scope", "environment:connections:list")
	if err != nil {
		return nil, err
	}
	if _, err := cli.run(ctx, "integrations", "create", "--env", benchEnv, "--unique-key", benchIntegration,
		"--provider", "github", "--auth-mode", "OAUTH2"); err != nil {
		return nil, err
	}
	if o.webhooks {
		recv := startWebhookReceiver()
		defer recv.srv.Close()
		if _, err := cli.run(ctx, "webhooks", "set", "--env", benchEnv, "--url", recv.url()); err != nil {
			return nil, err
		}
		defer func() { res.Webhooks = &webhookStats{Received: recv.n.Load()} }()
	}

	if err := db.open(ctx, keys); err != nil {
		return nil, err
	}
	defer db.close()
	if o.preload > 0 {
		start := time.Now()
		if err := db.preload(ctx, o.preload, keys.PrimaryID()); err != nil {
			return nil, err
		}
		res.PreloadSeconds = time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "bench: preloaded %d connections in %.1fs\n", o.preload, res.PreloadSeconds)
	}
	pgb := o.pgbench && !o.sqlite
	if pgb {
		if err := db.createPgbenchTable(ctx, o.preload > 0); err != nil {
			return nil, err
		}
	}
	if err := db.settle(ctx); err != nil {
		return nil, err
	}

	srv, err := startServer(ctx, bin, tmp, db.url, key)
	if err != nil {
		return nil, err
	}
	cfg := loadConfig{
		baseURL: srv.baseURL, secret: secret, clients: o.clients, warmup: o.warmup, duration: o.duration,
		serverPID: srv.pid(),
	}
	load, ids, loadErr := runLoad(ctx, cfg)
	if loadErr == nil && o.reads {
		res.Reads, loadErr = runReadScenarios(ctx, cfg, o.listClients, readSecret, ids)
	}
	stats, stopErr := srv.stop()
	if loadErr != nil {
		return nil, errors.Join(loadErr, stopErr)
	}
	res.Load = load
	res.Server = stats
	if stopErr != nil {
		return res, stopErr
	}

	stored, err := db.countBenchRows(ctx)
	if err != nil {
		return res, err
	}
	res.Load.RowsStored = stored
	if want := load.Succeeded; stored != want {
		return res, fmt.Errorf("the load got %d successful imports of distinct connections, warm-up included, but the table holds %d of them", want, stored)
	}

	if pgb {
		if err := db.settle(ctx); err != nil {
			return res, err
		}
		p, err := runPgbench(ctx, db, pgbenchConfig{
			dir: tmp, clients: o.clients, warmup: o.warmup, duration: o.duration,
			script: pgbenchUpsert, rowsPerTx: 1,
		})
		if err != nil {
			return res, err
		}
		res.Pgbench = p
		if p.TPS > 0 {
			ratio := res.Load.ImportsPerSecond / p.TPS
			res.Ratio = &ratio
		}
	}
	if o.bulkRecords > 0 {
		bulk, err := runBulk(ctx, o, db, bin, tmp, key, secret)
		res.Bulk = bulk
		if err != nil {
			return res, fmt.Errorf("bulk import: %w", err)
		}
	}
	return res, nil
}

// runReadScenarios measures each read scenario in turn: getConnection with as many clients as
// the imports, list pages with listClients. Sixteen clients on a small machine queue each request
// behind the others, so that a latency is mostly the queue's; a list page is an occasional,
// heavier request whose latency is the point.
func runReadScenarios(ctx context.Context, cfg loadConfig, listClients int, secret string, ids []string) ([]readStats, error) {
	if len(ids) == 0 {
		return nil, errors.New("no imported connection to read")
	}
	var out []readStats
	for _, s := range readScenarios(secret, ids) {
		c := cfg
		if s.pages {
			c.clients = listClients
		}
		fmt.Fprintf(os.Stderr, "bench: %s, %d clients\n", s.request, c.clients)
		r, err := runReads(ctx, c, s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// hostInfo describes the machine, since every figure depends on it.
func hostInfo() host {
	h := host{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version()}
	h.CPUModel = cpuModel()
	return h
}
