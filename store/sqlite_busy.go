package store

import (
	"errors"
	"time"
)

// defaultBusyTimeout is how long a command waits for the write lock of another process, such
// as a running server.
const defaultBusyTimeout = 10 * time.Second

// sqliteBusyTimeout is the busy_timeout to open SQLite with. SQLite's wait for a lock ignores the
// statement's context, and the store has a single connection: a statement that waits longer
// than a request may last holds up every request queued behind it past its deadline. A server
// therefore passes its request timeout.
func sqliteBusyTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultBusyTimeout
	}
	return max(d, time.Millisecond)
}

// sqliteBusy is SQLite's result code for a lock held by another connection.
const sqliteBusy = 5

// isBusy tells whether err is SQLite giving up on a lock that another process held for longer
// than the busy timeout: the database is there but busy, so the request may be retried.
func isBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == sqliteBusy
}
