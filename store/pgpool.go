package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens the PostgreSQL pool: pgx through database/sql, on a URL that may name
// several hosts (postgres://u@h1:p1,h2:p2/db?target_session_attrs=read-write), pgx connecting
// to whichever is the writable primary.
//
// After a failover, a connection that still reaches the old primary, now a standby (through a
// pgbouncer in front of it, say), answers every write with SQLSTATE 25006 (read-only
// transaction). The first such answer on any connection retires every connection opened before
// it: database/sql discards them when they are next taken from the pool, and the new ones are
// opened to the new primary.
func openPostgres(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(postgresDSN(dsn))
	if err != nil {
		// The URL may carry a password: say what is wrong, not the URL.
		var perr *pgconn.ParseConfigError
		if errors.As(err, &perr) && perr.Unwrap() != nil {
			return nil, fmt.Errorf("parse database URL: %w", perr.Unwrap())
		}
		return nil, errors.New("parse database URL: invalid")
	}
	gen := &poolGeneration{}
	cfg.Tracer = gen
	return stdlib.OpenDB(*cfg,
		stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
			c.PgConn().CustomData()[generationKey] = gen.n.Load()
			return nil
		}),
		stdlib.OptionResetSession(func(_ context.Context, c *pgx.Conn) error {
			if g, _ := c.PgConn().CustomData()[generationKey].(uint64); g < gen.n.Load() {
				return driver.ErrBadConn
			}
			return nil
		}),
	), nil
}

const generationKey = "credport.generation"

// poolGeneration counts the failovers the pool has noticed; a connection opened in an earlier
// generation is discarded. It sees every statement's outcome as pgx's query tracer.
type poolGeneration struct {
	n atomic.Uint64
}

func (g *poolGeneration) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (g *poolGeneration) TraceQueryEnd(_ context.Context, c *pgx.Conn, data pgx.TraceQueryEndData) {
	if !isReadOnly(data.Err) {
		return
	}
	if mine, _ := c.PgConn().CustomData()[generationKey].(uint64); mine == g.n.Load() {
		g.n.Add(1)
	}
}

// isReadOnly tells whether err is a standby refusing a write: the server this connection
// reaches is no longer the primary.
func isReadOnly(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "25006" // read_only_sql_transaction
}

// postgresDSN is the URL with the defaults credport needs: a connect timeout (per host of a
// multi-host URL), so that a host that does not answer is skipped within a request's deadline.
// Go's url package refuses some multi-host URLs, so the parameter is appended as text.
func postgresDSN(dsn string) string {
	base, query, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return dsn
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
	}
	return base + "?" + q.Encode()
}
