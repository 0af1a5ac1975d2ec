package server

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/credport/credport/gen"
)

// Health answers liveness without touching the database.
func (s *Server) Health(context.Context, gen.HealthRequestObject) (gen.HealthResponseObject, error) {
	return gen.Health200JSONResponse{Result: gen.Ok}, nil
}

// readyTimeout bounds the database ping of a readiness check.
const readyTimeout = 2 * time.Second

// Ready answers 200 while the database answers and 503 while it does not.
func (s *Server) Ready(ctx context.Context, _ gen.ReadyRequestObject) (gen.ReadyResponseObject, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "error", err)
		return nil, newError(http.StatusServiceUnavailable, "service_unavailable", "The database is unavailable")
	}
	return gen.Ready200JSONResponse{Result: gen.Ok}, nil
}

// Metrics serves the Prometheus metrics, unless they have an address of their own.
func (s *Server) Metrics(context.Context, gen.MetricsRequestObject) (gen.MetricsResponseObject, error) {
	if s.metricsElsewhere {
		return nil, newError(http.StatusNotFound, "not_found", "Metrics are served on their own address")
	}
	text, err := exposition(s.gatherer)
	if err != nil {
		return nil, err
	}
	return gen.Metrics200TextResponse(text), nil
}

// OpenapiSpec serves the contract the server validates with.
func (s *Server) OpenapiSpec(context.Context, gen.OpenapiSpecRequestObject) (gen.OpenapiSpecResponseObject, error) {
	return gen.OpenapiSpec200ApplicationyamlResponse{
		Body:          bytes.NewReader(s.specYAML),
		ContentLength: int64(len(s.specYAML)),
	}, nil
}
