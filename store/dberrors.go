package store

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	sqlite3 "modernc.org/sqlite/lib"
)

// dbError translates what the database drivers return into the store's sentinels, so that no
// caller of the store has to know a driver's errors. The driver's error stays in the chain, for
// the logs. GORM passes every error it records through it (translating.Translate); the statements
// whose errors GORM does not see (Row, Rows, the group committer's) call it themselves.
func dbError(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrUnavailable):
		return err
	case isForeignKeyViolation(err):
		return fmt.Errorf("%w: %w", ErrParentNotFound, err)
	case isUnreachable(err), isBusy(err), isFailingOver(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// isForeignKeyViolation tells whether err is a database refusing a row whose parent is gone,
// whether GORM translated it or not.
func isForeignKeyViolation(err error) bool {
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503" // foreign_key_violation
	}
	var liteErr *gosqlite.Error
	return errors.As(err, &liteErr) && liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// isUnreachable tells whether err means the database could not be reached, or stopped answering.
// A connection that the database side closes mid-query surfaces from pgx as io.ErrUnexpectedEOF.
func isUnreachable(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isFailingOver tells whether err is PostgreSQL, or a pgbouncer in front of it, saying that it
// cannot serve this connection now, as during a failover: a standby refusing a write (the primary
// was demoted), a server shutting down or starting up, a connection exception (class 08, which
// is how pgbouncer tells that its server connection died), or any FATAL error, which ends the
// session.
func isFailingOver(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch {
	case pgErr.Code == "25006", // read_only_sql_transaction
		pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // admin/crash shutdown, cannot connect now
		strings.HasPrefix(pgErr.Code, "08"),
		pgErr.Severity == "FATAL", pgErr.Severity == "PANIC":
		return true
	}
	return false
}

// translating is a dialector whose errors, as GORM records them, are the store's (dbError).
type translating struct {
	gorm.Dialector
}

// Translate is GORM's hook for the errors it records, with TranslateError set.
func (d translating) Translate(err error) error {
	if t, ok := d.Dialector.(gorm.ErrorTranslator); ok {
		err = t.Translate(err)
	}
	return dbError(err)
}

// SavePoint and RollbackTo keep the wrapped dialector's nested transactions.
func (d translating) SavePoint(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).SavePoint(tx, name)
}

func (d translating) RollbackTo(tx *gorm.DB, name string) error {
	return d.Dialector.(gorm.SavePointerDialectorInterface).RollbackTo(tx, name)
}
