package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store"
	"github.com/credport/credport/webhook"
)

// serveOptions are the flags of `credport serve`; each is also an environment variable.
type serveOptions struct {
	listen          string
	metricsListen   string
	maxBodyBytes    int64
	maxInflight     int64
	maxConnections  int
	maxBatchBytes   int64
	rateLimit       float64
	shutdownTimeout time.Duration
	refreshWindow   time.Duration
	refreshInterval time.Duration
	refreshBackoff  time.Duration
	webhookTimeout  time.Duration
	webhookMaxAge   time.Duration
}

func (a *app) serveCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API",
		Args:  cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.bindEnv(cmd, "listen", "metrics-listen", "max-body-bytes", "max-batch-body-bytes", "max-inflight-body-bytes",
				"max-connections", "rate-limit", "shutdown-timeout", "refresh-window", "refresh-interval", "refresh-backoff",
				"group-commit-max", "webhook-timeout", "webhook-max-age", "outbound-allow-private")
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:3003", "address to listen on (env CREDPORT_LISTEN)")
	f.StringVar(&o.metricsListen, "metrics-listen", "",
		"serve /metrics on this address only, not on the API address (env CREDPORT_METRICS_LISTEN)")
	f.Int64Var(&o.maxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted; larger ones get 413 (env CREDPORT_MAX_BODY_BYTES)")
	f.Int64Var(&o.maxInflight, "max-inflight-body-bytes", server.DefaultMaxInflightBodyBytes,
		"request body bytes read and parsed at once; beyond them 503 server_overloaded (env CREDPORT_MAX_INFLIGHT_BODY_BYTES)")
	f.IntVar(&o.maxConnections, "max-connections", server.DefaultMaxConnections,
		"connections served at once; more wait to be accepted (env CREDPORT_MAX_CONNECTIONS)")
	f.Int64Var(&o.maxBatchBytes, "max-batch-body-bytes", 16<<20,
		"largest body of POST /connections/batch accepted; larger ones get 413 (env CREDPORT_MAX_BATCH_BODY_BYTES)")
	f.Float64Var(&o.rateLimit, "rate-limit", 0, "requests per second allowed to each API key, 0 for no limit (env CREDPORT_RATE_LIMIT)")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"on SIGTERM, how long in-flight requests may take to finish (env CREDPORT_SHUTDOWN_TIMEOUT)")
	f.DurationVar(&o.refreshWindow, "refresh-window", 15*time.Minute,
		"OAuth tokens that expire within this are renewed before they are handed out (env CREDPORT_REFRESH_WINDOW)")
	f.DurationVar(&o.refreshInterval, "refresh-interval", time.Minute,
		"how often tokens about to expire are renewed in the background, 0 for never (env CREDPORT_REFRESH_INTERVAL)")
	f.DurationVar(&o.refreshBackoff, "refresh-backoff", 30*time.Second,
		"after a provider refused a refresh, how long reads make no new attempt (env CREDPORT_REFRESH_BACKOFF)")
	f.IntVar(&a.groupCommitMax, "group-commit-max", store.DefaultGroupCommitMax,
		"most concurrent imports committed together in one transaction (env CREDPORT_GROUP_COMMIT_MAX)")
	f.DurationVar(&o.webhookTimeout, "webhook-timeout", webhook.DefaultTimeout,
		"how long one webhook delivery attempt may take (env CREDPORT_WEBHOOK_TIMEOUT)")
	f.DurationVar(&o.webhookMaxAge, "webhook-max-age", webhook.DefaultMaxAge,
		"how long a webhook is retried before it is marked failed (env CREDPORT_WEBHOOK_MAX_AGE)")
	a.outboundFlag(f)
	return cmd
}

func (a *app) serve(ctx context.Context, o serveOptions) error {
	log := a.logger()
	a.mayCreateDatabase = true
	if a.groupCommitMax < 1 {
		return errors.New("--group-commit-max must be at least 1")
	}
	a.tuneGC()
	// A statement never waits for another process's lock longer than its request may last.
	a.busyTimeout = server.DefaultRequestTimeout
	db, err := a.openStoreWaiting(ctx, log)
	if err != nil {
		return err
	}
	defer db.Close()
	logDurability(ctx, log, db, store.MultiHost(a.databaseURL))
	sqlDB, err := db.SQL()
	if err != nil {
		return err
	}
	reg := server.DefaultRegistry()
	reg.MustRegister(collectors.NewDBStatsCollector(sqlDB, "credport"))
	if o.refreshWindow <= 0 || o.refreshBackoff <= 0 || o.refreshInterval < 0 {
		return errors.New("--refresh-window and --refresh-backoff must be positive, --refresh-interval not negative")
	}
	if o.maxInflight <= 0 || o.maxConnections <= 0 {
		return errors.New("--max-inflight-body-bytes and --max-connections must be positive")
	}
	providers, err := provider.Load(a.getenv(provider.ProvidersFileEnv))
	if err != nil {
		return err
	}
	api, err := server.NewAPI(server.Config{
		Store: db, Logger: log, Registry: reg, MetricsElsewhere: o.metricsListen != "", Providers: providers,
		MaxBodyBytes: o.maxBodyBytes, MaxBatchBodyBytes: o.maxBatchBytes, MaxInflightBodyBytes: o.maxInflight,
		RateLimit:     o.rateLimit,
		RefreshWindow: o.refreshWindow, RefreshBackoff: o.refreshBackoff,
		OutboundAllowPrivate: a.outboundAllowPrivate,
	})
	if err != nil {
		return err
	}
	if o.webhookTimeout <= 0 || o.webhookMaxAge <= 0 {
		return errors.New("--webhook-timeout and --webhook-max-age must be positive")
	}
	sender, err := webhook.New(webhook.Config{
		Store: db, Logger: log, Registry: reg, UserAgent: a.userAgent(),
		Timeout: o.webhookTimeout, MaxAge: o.webhookMaxAge, AllowPrivate: a.outboundAllowPrivate,
	})
	if err != nil {
		return err
	}
	// Webhooks are delivered until the server has stopped answering; then the attempts in
	// flight are released, before the database closes.
	webhookCtx, stopWebhooks := context.WithCancel(context.WithoutCancel(ctx))
	webhooksDone := make(chan struct{})
	go func() {
		defer close(webhooksDone)
		sender.Run(webhookCtx)
	}()
	defer func() {
		stopWebhooks()
		<-webhooksDone
	}()
	if o.refreshInterval > 0 {
		refreshCtx, stopRefresh := context.WithCancel(ctx)
		defer stopRefresh()
		go api.RunRefresh(refreshCtx, o.refreshInterval)
	}
	servers := []*server.HTTPServer{server.NewHTTPServer(api, server.HTTPLimits{MaxConnections: o.maxConnections})}
	addrs := []string{o.listen}
	if o.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, server.NewHTTPServer(mux, server.HTTPLimits{MaxConnections: o.maxConnections}))
		addrs = append(addrs, o.metricsListen)
	}
	// Every address is bound before any is served, so that a failure leaves nothing listening.
	listeners := make([]net.Listener, 0, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return fmt.Errorf("listen: %w", err)
		}
		listeners = append(listeners, ln)
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		log.Info("serving", "address", listeners[i].Addr().String(), "database", string(db.Dialect()), "metrics_only", i > 0)
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Stop accepting on every address, let in-flight requests finish, then close the database
	// (deferred above).
	log.Info("shutting down", "timeout", o.shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped")
	return nil
}

// logDurability says whether the PostgreSQL primary has a synchronous standby, and warns when it
// has none while the URL names several hosts: a failover could then lose acknowledged imports.
func logDurability(ctx context.Context, log *slog.Logger, db *store.DB, multiHost bool) {
	d, err := db.CheckDurability(ctx)
	switch {
	case err != nil:
		log.Warn("could not ask the primary about its synchronous standbys", "error", err)
	case !d.PostgreSQL:
	case d.Synchronous():
		log.Info("the primary has a synchronous standby", "synchronous_standby_names", d.SynchronousStandbyNames,
			"synchronous_standbys", d.SynchronousStandbys)
	case multiHost:
		log.Warn("the database URL names several hosts but the primary has no synchronous standby: a failover can lose acknowledged imports",
			"synchronous_standby_names", d.SynchronousStandbyNames, "synchronous_standbys", d.SynchronousStandbys)
	default:
		log.Info("the primary has no synchronous standby", "synchronous_standby_names", d.SynchronousStandbyNames)
	}
}

// openStoreWaiting opens the store, waiting with backoff while the database is unreachable, so
// that a server started before its database comes up on its own.
func (a *app) openStoreWaiting(ctx context.Context, log *slog.Logger) (*store.DB, error) {
	delay := 500 * time.Millisecond
	for {
		db, err := a.openStore(ctx, log)
		if err == nil || !errors.Is(err, store.ErrUnavailable) {
			return db, err
		}
		log.Warn("database unreachable, retrying", "in", delay, "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the database: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// tuneGC trades a little memory for CPU: a request allocates tens of kilobytes that die at once,
// so the collector runs a third as often as by default, with a soft memory limit that keeps the
// heap small. GOGC or GOMEMLIMIT in the environment win.
func (a *app) tuneGC() {
	if a.getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	if a.getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(48 << 20)
	}
}
