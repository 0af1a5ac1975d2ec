package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestFailoverErrorsAreUnavailable: what PostgreSQL and pgbouncer answer while a primary fails
// over is ErrUnavailable (a 503 with Retry-After), not an unexpected error (a 500); errors of the
// statement itself are not.
func TestFailoverErrorsAreUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  *pgconn.PgError
		want bool
	}{
		{"demoted primary", &pgconn.PgError{Severity: "ERROR", Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}, true},
		{"pgbouncer lost its server", &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "server conn crashed?"}, true},
		{"pgbouncer query_wait_timeout", &pgconn.PgError{Severity: "ERROR", Code: "08P01", Message: "query_wait_timeout"}, true},
		{"shutting down", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{"starting up", &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}, true},
		{"syntax", &pgconn.PgError{Severity: "ERROR", Code: "42601", Message: "syntax error"}, false},
		{"unique", &pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := errors.Is(dbError(fmt.Errorf("query: %w", tt.err)), ErrUnavailable)
			if got != tt.want {
				t.Fatalf("ErrUnavailable %v, want %v", got, tt.want)
			}
		})
	}
}
