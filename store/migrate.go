package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations
var migrations embed.FS

// sqliteMigrateAttempts bounds the attempts of one process to migrate an SQLite file that other
// processes migrate at the same time: each attempt gets at least one migration further.
const sqliteMigrateAttempts = 20

// migrate applies the embedded, versioned migrations of the dialect. On PostgreSQL it holds an
// advisory lock so that replicas starting together apply each migration once.
func migrate(ctx context.Context, sqlDB *sql.DB, dialect Dialect, log *slog.Logger) error {
	fsys, err := fs.Sub(migrations, "migrations/"+string(dialect))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var opts []goose.ProviderOption
	gooseDialect := goose.DialectSQLite3
	if dialect == DialectPostgres {
		gooseDialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	provider, err := goose.NewProvider(gooseDialect, sqlDB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if dialect == DialectPostgres {
		// Only applying migrations takes the session-level lock. A replica that finds the schema
		// up to date takes none, so that it may run through a pgbouncer in transaction pooling,
		// where a session lock would outlive its session; `credport migrate` connects directly.
		pending, err := provider.HasPending(ctx)
		if err != nil {
			return fmt.Errorf("migrate %s database: %w", dialect, dbError(err))
		}
		if !pending {
			return nil
		}
	}
	results, err := provider.Up(ctx)
	// SQLite has no advisory lock: another process that raced this one to a new file may have
	// applied a migration between our version check and our attempt, and with several racing,
	// again on the next attempt. Look again while attempts remain; what each attempt applied
	// before it failed counts too. A migration that is really broken fails every attempt.
	for attempt := 1; err != nil && dialect == DialectSQLite && attempt < sqliteMigrateAttempts; attempt++ {
		var applied []*goose.MigrationResult
		if partial := (*goose.PartialError)(nil); errors.As(err, &partial) {
			applied = partial.Applied
		}
		var more []*goose.MigrationResult
		more, err = provider.Up(ctx)
		results = append(append(results, applied...), more...)
	}
	if err != nil {
		return fmt.Errorf("migrate %s database: %w", dialect, err)
	}
	// One line for the run, not one a migration: a new database gets every migration at once.
	if len(results) > 0 {
		var took time.Duration
		for _, r := range results {
			took += r.Duration
		}
		log.InfoContext(ctx, "migrations applied", "applied", len(results), "version", results[len(results)-1].Source.Version,
			"duration", took)
	}
	return nil
}
