// Package store persists environments, API keys, integrations and connections with GORM, on
// embedded SQLite by default and on PostgreSQL in production. Secrets are sealed before they are
// written and never leave this package in clear except to the caller that asked for them.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names the database engine behind a DB.
type Dialect string

const (
	DialectSQLite   Dialect = "sqlite"
	DialectPostgres Dialect = "postgres"
)

// DefaultDatabaseURL is the embedded database used when no URL is configured.
const DefaultDatabaseURL = "credport.db"

// DB is the store: one GORM handle, the key ring that seals secrets and a clock.
type DB struct {
	gorm    *gorm.DB
	dialect Dialect
	keys    *Keyring
	// group commits concurrent imports together.
	group *groupCommitter
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// wal checkpoints the SQLite WAL; nil on PostgreSQL.
	wal *walCheckpointer
}

// Config says where the database is and how secrets are sealed.
type Config struct {
	// URL is a postgres:// URL or an SQLite file path (optionally prefixed with sqlite: or file:).
	URL    string
	Keys   *Keyring
	Logger *slog.Logger
	// CheckpointTicks, when set, times the SQLite WAL checkpoints instead of a real ticker.
	CheckpointTicks <-chan time.Time
	// BusyTimeout is how long an SQLite statement waits for another process's write lock
	// (busy_timeout); default 10 s. A server keeps it within its request timeout.
	BusyTimeout time.Duration
	// GroupCommitMax caps how many concurrent imports are committed together; 0 means
	// DefaultGroupCommitMax.
	GroupCommitMax int
	// GroupCommitWriters is how many groups PostgreSQL may be writing at once; 0 means
	// DefaultGroupCommitWriters. SQLite, which has one writer, writes one group at a time.
	GroupCommitWriters int
	// RefuseUpsert, for tests only, makes the database refuse the imports it returns true for
	// (they are sent with an integration that does not exist).
	RefuseUpsert func(UpsertConnection) bool
}

// DialectOf tells which engine a database URL selects.
func DialectOf(dsn string) Dialect {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return DialectPostgres
	}
	return DialectSQLite
}

// SQLitePath is the file an SQLite URL names.
func SQLitePath(dsn string) string {
	if dsn == "" {
		dsn = DefaultDatabaseURL
	}
	dsn = strings.TrimPrefix(dsn, "sqlite:")
	dsn = strings.TrimPrefix(dsn, "file:")
	path, _, _ := strings.Cut(dsn, "?")
	return path
}

// Open connects to the database, brings its schema up to date and returns the store.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Keys == nil {
		return nil, errors.New("open store: no encryption key")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dialect := DialectOf(cfg.URL)
	gcfg := &gorm.Config{
		TranslateError: true,
		// Open pings on its own terms below, so that an unreachable server is ErrUnavailable.
		DisableAutomaticPing: true,
		Logger:               logger.Discard, // queries carry sealed secrets and hashes: never log them
		NowFunc:              func() time.Time { return time.Now().UTC() },
	}
	var (
		g   *gorm.DB
		err error
	)
	created := false
	switch dialect {
	case DialectPostgres:
		var pool *sql.DB
		if pool, err = openPostgres(cfg.URL); err != nil {
			return nil, fmt.Errorf("open %s database: %w", dialect, err)
		}
		g, err = gorm.Open(translating{postgres.New(postgres.Config{Conn: pool})}, gcfg)
	default:
		if created, err = createPrivateFile(SQLitePath(cfg.URL)); err != nil {
			return nil, fmt.Errorf("open %s database: %w", dialect, err)
		}
		g, err = gorm.Open(translating{sqlite.Open(sqliteDSN(cfg.URL, cfg.BusyTimeout))}, gcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if dialect == DialectSQLite {
		// One writer at a time is all SQLite allows; a single connection makes the process queue
		// its own writes instead of failing with "database is locked".
		sqlDB.SetMaxOpenConns(1)
	} else {
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(32)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	db := &DB{gorm: g, dialect: dialect, keys: cfg.Keys, Now: func() time.Time { return time.Now().UTC() }}
	if err := db.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := migrate(ctx, sqlDB, dialect, cfg.Logger); err != nil {
		_ = db.Close()
		return nil, err
	}
	if created {
		// SQLite gives its -wal and -shm files the database file's mode; make sure of it.
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Chmod(SQLitePath(cfg.URL)+suffix, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
				_ = db.Close()
				return nil, fmt.Errorf("open %s database: %w", dialect, err)
			}
		}
	}
	if dialect == DialectSQLite {
		db.wal = startWALCheckpoints(db, SQLitePath(cfg.URL), cfg.CheckpointTicks, cfg.Logger)
	}
	db.group = newGroupCommitter(sqlDB, dialect, db.now, cfg.GroupCommitMax, cfg.GroupCommitWriters, cfg.RefuseUpsert)
	return db, nil
}

// createPrivateFile creates an empty SQLite database file readable by its owner only (0600,
// whatever the umask), like the key file, unless it exists. It reports whether it created it.
func createPrivateFile(path string) (bool, error) {
	if path == "" || strings.HasPrefix(path, ":") { // ":memory:"
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return false, err
	}
	return true, f.Close()
}

// Dialect is the engine behind db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s database: %w", db.dialect, err)
	}
	return nil
}

// SQL is the connection pool, for its statistics.
func (db *DB) SQL() (*sql.DB, error) {
	return db.gorm.DB()
}

// Close commits the imports still queued and releases the database connections.
func (db *DB) Close() error {
	db.wal.stop()
	if db.group != nil {
		db.group.close()
	}
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// now is the store's clock at the precision both databases keep.
func (db *DB) now() time.Time {
	return db.Now().UTC().Truncate(time.Microsecond)
}

func sqliteDSN(dsn string, busyTimeout time.Duration) string {
	path := SQLitePath(dsn)
	// WAL lets readers run beside the writer; busy_timeout makes a second process (the CLI next to
	// a running server) wait for the lock instead of failing.
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout(busyTimeout).Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walSizeLimit))
	q.Add("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}
