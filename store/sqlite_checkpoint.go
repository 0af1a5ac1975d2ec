package store

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// The SQLite WAL checkpoint policy. SQLite checkpoints by itself (wal_autocheckpoint, every 1000
// pages) when a write statement is stepped to its end, which is why a RETURNING row is read with
// scanReturning. The store adds, on a ticker of its own:
//   - every walCheckpointEvery a PASSIVE checkpoint, which copies the WAL into the database
//     without waiting for anyone, so that the next write starts the WAL over even if a write
//     ends without SQLite's checkpoint;
//   - journal_size_limit truncates the file to walSizeLimit whenever the WAL starts over;
//   - once the WAL has not changed for walIdleAfter, a TRUNCATE checkpoint empties the file.
const (
	walSizeLimit       = 64 << 20
	walCheckpointEvery = time.Second
	walIdleAfter       = 30 * time.Second
)

// walCheckpointer runs the policy until stopped.
type walCheckpointer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startWALCheckpoints checkpoints db's WAL at each tick of ticks, or of a real ticker when ticks
// is nil. A tick carries the time it stands for, which is how tests make the database idle.
func startWALCheckpoints(db *DB, path string, ticks <-chan time.Time, log *slog.Logger) *walCheckpointer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &walCheckpointer{cancel: cancel, done: make(chan struct{})}
	stopTicker := func() {}
	if ticks == nil {
		t := time.NewTicker(walCheckpointEvery)
		ticks, stopTicker = t.C, t.Stop
	}
	go func() {
		defer close(w.done)
		defer stopTicker()
		var (
			lastFrames, lastSize int64 = -1, -1
			lastChange           time.Time
		)
		for {
			var now time.Time
			select {
			case <-ctx.Done():
				return
			case now = <-ticks:
			}
			size := walFileSize(path + "-wal")
			frames, err := db.walCheckpoint(ctx, "PASSIVE")
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("WAL checkpoint", "error", err)
				}
				continue
			}
			if frames != lastFrames || size != lastSize || lastChange.IsZero() {
				lastFrames, lastSize, lastChange = frames, size, now
				continue
			}
			if size > 0 && now.Sub(lastChange) >= walIdleAfter {
				if _, err := db.walCheckpoint(ctx, "TRUNCATE"); err != nil {
					if ctx.Err() == nil {
						log.Warn("WAL checkpoint", "mode", "TRUNCATE", "error", err)
					}
					continue
				}
				lastFrames, lastSize, lastChange = -1, -1, time.Time{}
			}
		}
	}()
	return w
}

// stop ends the checkpoints and waits for the one under way.
func (w *walCheckpointer) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode) and returns the frames the WAL holds.
func (db *DB) walCheckpoint(ctx context.Context, mode string) (int64, error) {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return 0, err
	}
	var busy, frames, done int64
	if err := sqlDB.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done); err != nil {
		return 0, err
	}
	return frames, nil
}

// walFileSize is the size of the WAL file, 0 when there is none.
func walFileSize(path string) int64 {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return 0
	}
	return st.Size()
}

// scanReturning scans the one row of a write statement's RETURNING clause into dest and steps
// the statement to its end before closing it. A statement closed after its first row, as
// sql.Row does, commits without running SQLite's auto-checkpoint, and the WAL then grows for as
// long as the writes last.
func scanReturning(rows *sql.Rows, dest ...any) error {
	if !rows.Next() {
		err := rows.Err()
		_ = rows.Close()
		if err == nil {
			err = sql.ErrNoRows
		}
		return err
	}
	err := rows.Scan(dest...)
	if rows.Next() { // steps the statement to its end
		err = errors.Join(err, errors.New("more than one row returned"))
	}
	return errors.Join(err, rows.Err(), rows.Close())
}
