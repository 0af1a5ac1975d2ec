package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/credport/credport/server"
)

func (a *app) serveCommand() *cobra.Command {
	var listen, metricsListen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), listen, metricsListen)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", envOr(a.getenv, "CREDPORT_LISTEN", "127.0.0.1:3003"),
		"address to listen on (env CREDPORT_LISTEN)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", a.getenv("CREDPORT_METRICS_LISTEN"),
		"serve /metrics on this address only, not on the API address (env CREDPORT_METRICS_LISTEN)")
	return cmd
}

func (a *app) serve(ctx context.Context, listen, metricsListen string) error {
	log := a.logger()
	db, err := a.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer db.Close()
	sqlDB, err := db.SQL()
	if err != nil {
		return err
	}
	reg := server.DefaultRegistry()
	reg.MustRegister(collectors.NewDBStatsCollector(sqlDB, "credport"))
	e, err := server.New(server.Config{Store: db, Logger: log, Registry: reg, MetricsElsewhere: metricsListen != ""})
	if err != nil {
		return err
	}
	servers := []*http.Server{{Handler: e, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}}
	listeners := []string{listen}
	if metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, metricsListen)
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		ln, err := net.Listen("tcp", listeners[i])
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		log.Info("serving", "address", ln.Addr().String(), "database", string(db.Dialect()), "metrics_only", i > 0)
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}
