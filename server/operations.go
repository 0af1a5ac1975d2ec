package server

import (
	"bytes"
	"context"
	"time"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// Health answers liveness without touching the database.
func (s *Server) Health(context.Context, gen.HealthRequestObject) (gen.HealthResponseObject, error) {
	return gen.Health200JSONResponse{Result: gen.HealthResultOk}, nil
}

// readyTimeout bounds the database ping of a readiness check.
const readyTimeout = 2 * time.Second

// KeyChecker names the ids of keys that stored values were sealed with and the server lacks.
type KeyChecker interface {
	MissingKeyIDs(ctx context.Context) ([]string, error)
}

// DurabilityChecker tells whether the PostgreSQL primary has a synchronous standby.
type DurabilityChecker interface {
	CheckDurability(ctx context.Context) (store.Durability, error)
}

// Ready answers 200 while the database answers and the server holds every key its values were
// sealed with, 503 otherwise: a server that cannot open what it stores is not ready. On
// PostgreSQL it tells whether the primary has a synchronous standby, as a detail only.
func (s *Server) Ready(ctx context.Context, _ gen.ReadyRequestObject) (gen.ReadyResponseObject, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "error", err)
		return nil, errDatabaseUnavailable("The database is unavailable")
	}
	if keys, ok := s.store.(KeyChecker); ok {
		missing, err := keys.MissingKeyIDs(ctx)
		if err != nil {
			s.log.WarnContext(ctx, "not ready", "error", err)
			return nil, errDatabaseUnavailable("The database is unavailable")
		}
		if len(missing) > 0 {
			s.log.WarnContext(ctx, "not ready: stored values are sealed with encryption keys this server lacks", "missing_key_ids", missing)
			return nil, errServiceUnavailable("Stored values are sealed with encryption keys this server lacks")
		}
	}
	ready := gen.Ready200JSONResponse{Result: gen.ReadinessResultOk}
	if d, ok := s.store.(DurabilityChecker); ok {
		if dur, err := d.CheckDurability(ctx); err == nil && dur.PostgreSQL {
			sync := dur.Synchronous()
			ready.SynchronousStandby = &sync
		}
	}
	return ready, nil
}

// Metrics serves the Prometheus metrics, unless they have an address of their own.
func (s *Server) Metrics(context.Context, gen.MetricsRequestObject) (gen.MetricsResponseObject, error) {
	if s.metricsElsewhere {
		return nil, apiError(gen.ErrorCodeNotFound, "Metrics are served on their own address")
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
