package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit: imports that arrive while the database commits others wait, and are then
// committed together, in one transaction and one multi-row statement per shape of request (which
// optional fields it sent): on PostgreSQL with one array parameter per column, so that the
// statement is prepared once; on SQLite as a VALUES list. A lone import is committed at once;
// nothing ever waits to fill a group. Per-row work that needs no database (validation, sealing)
// stays in each caller's goroutine, and so does building its answer.
//
// The rules:
//   - A group holds at most max rows, and never two of one (environment, provider config key,
//     connection id): ON CONFLICT DO UPDATE cannot touch a row twice in one statement. The later
//     import waits for the next group, so imports of one connection apply in arrival order.
//   - On PostgreSQL, once enough rows wait (parallelGroupRows), several groups may be written at
//     once, each by a writer of its own, so that the database works on more than one core; a row
//     whose key is in a group being written waits for that group to finish, for the same reason.
//   - Rows are written in key order, so two servers committing groups on one database lock rows
//     in the same order and cannot deadlock each other.
//   - A row the database refuses fails alone: the group is retried without it.
//   - A caller whose context ends while it is still queued gets the context's error, and its row
//     is not written. Once its group has been taken, it waits for the commit (bounded by the
//     latest deadline in the group) and answers what happened to its row.

// DefaultGroupCommitMax is the most imports committed together when the configuration sets none.
const DefaultGroupCommitMax = 500

// DefaultGroupCommitWriters is how many groups PostgreSQL writes at once when the configuration
// sets none: while one statement's rows travel or are scanned, another runs.
const DefaultGroupCommitWriters = 2

// parallelGroupRows is how many rows must be queued for a second group to be written beside
// one: below it the rows wait for that one and form a larger group, which costs the database
// less per row than two small ones.
const parallelGroupRows = 64

// GroupCommitStats describes the group commit of imports since the store was opened.
type GroupCommitStats struct {
	// Groups counts the groups committed (or attempted) and Rows the imports they held.
	Groups, Rows int64
	// Largest is the most imports one group held.
	Largest int
	// RowByRow counts the groups written again one row a statement, to find a row the database
	// refused.
	RowByRow int64
	// Waiting counts the imports queued for the next group now.
	Waiting int
}

// GroupCommitStats is what the group commit of imports has done so far.
func (db *DB) GroupCommitStats() GroupCommitStats {
	g := db.group
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Waiting = len(g.queue)
	return s
}

// rowKey is the unique key of a connection.
type rowKey struct {
	environmentID     int64
	providerConfigKey string
	connectionID      string
}

func (k rowKey) compare(o rowKey) int {
	return cmp.Or(cmp.Compare(k.environmentID, o.environmentID),
		cmp.Compare(k.providerConfigKey, o.providerConfigKey), cmp.Compare(k.connectionID, o.connectionID))
}

// upsertFlags say which optional fields an import sent; rows of one statement share them.
type upsertFlags struct {
	mergeConfig, config, metadata, tags, endUser bool
}

// returnedRow is what the upsert returned for one row.
type returnedRow struct {
	id                                  int64
	connectionConfig, metadata, tags    string
	endUser                             *string
	createdAt, updatedAt, lastFetchedAt time.Time
	created                             bool
}

// pendingUpsert is one import in the committer's hands.
type pendingUpsert struct {
	ctx    context.Context
	in     UpsertConnection
	sealed string
	key    rowKey
	flags  upsertFlags
	// taken is set, under the committer's lock, when the row joins a group.
	taken bool
	// done is closed once row and err are final.
	done chan struct{}
	row  returnedRow
	err  error
}

func (p *pendingUpsert) finish(row returnedRow, err error) {
	p.row, p.err = row, dbError(err)
	close(p.done)
}

// groupCommitter queues imports and commits them in groups, from its writers (see run).
type groupCommitter struct {
	sql     *sql.DB
	dialect Dialect
	now     func() time.Time
	max     int
	// refuse, for tests, makes the database refuse the rows it picks; taken, for tests, sees
	// the connection ids of each group before it is written.
	refuse          func(UpsertConnection) bool
	taken           func(connectionIDs []string)
	oneSQL, manySQL string

	mu    sync.Mutex
	queue []*pendingUpsert
	// writing holds the keys of the groups being written, by writers of them.
	writing map[rowKey]struct{}
	writers int
	// parallelFrom is parallelGroupRows, or what a test sets.
	parallelFrom int
	closed       bool
	stats        GroupCommitStats

	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newGroupCommitter(sqlDB *sql.DB, dialect Dialect, now func() time.Time, max, writers int, refuse func(UpsertConnection) bool) *groupCommitter {
	if max <= 0 {
		max = DefaultGroupCommitMax
	}
	if writers <= 0 {
		writers = DefaultGroupCommitWriters
	}
	g := &groupCommitter{
		sql: sqlDB, dialect: dialect, now: now, max: max, refuse: refuse,
		oneSQL:  upsertOneSQL(dialect),
		writing: map[rowKey]struct{}{}, parallelFrom: parallelGroupRows,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if dialect == DialectPostgres {
		g.manySQL = upsertManySQL()
	} else {
		writers = 1
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(g.run)
	}
	go func() {
		wg.Wait()
		close(g.stopped)
	}()
	return g
}

// close commits what is queued, then stops the committer; later imports fail.
func (g *groupCommitter) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		<-g.stopped
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	<-g.stopped
}

// upsert queues p and waits for its answer.
func (g *groupCommitter) upsert(ctx context.Context, p *pendingUpsert) (returnedRow, error) {
	if err := ctx.Err(); err != nil {
		return returnedRow{}, err
	}
	in := p.in
	p.ctx, p.done = ctx, make(chan struct{})
	p.key = rowKey{in.EnvironmentID, in.Integration.UniqueKey, in.ConnectionID}
	p.flags = upsertFlags{
		mergeConfig: in.ConnectionConfig != nil && in.MergeConnectionConfig, config: in.ConnectionConfig != nil,
		metadata: in.Metadata != nil, tags: in.Tags != nil, endUser: in.EndUser != nil,
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return returnedRow{}, fmt.Errorf("%w: the store is closed", ErrUnavailable)
	}
	g.queue = append(g.queue, p)
	g.mu.Unlock()
	g.poke()

	select {
	case <-p.done:
	case <-ctx.Done():
		g.mu.Lock()
		if !p.taken {
			// Still queued: the row is not sent.
			g.queue = slices.DeleteFunc(g.queue, func(q *pendingUpsert) bool { return q == p })
			g.mu.Unlock()
			return returnedRow{}, ctx.Err()
		}
		g.mu.Unlock()
		// Its group is committing: answer what the commit does.
		<-p.done
	}
	return p.row, p.err
}

// run is one writer: it writes the groups it takes until the queue holds none it may take.
func (g *groupCommitter) run() {
	for {
		select {
		case <-g.wake:
		case <-g.stop:
			g.drain()
			return
		}
		g.drain()
	}
}

func (g *groupCommitter) drain() {
	for group := g.take(); len(group) > 0; group = g.take() {
		g.commit(group)
		g.mu.Lock()
		for _, p := range group {
			delete(g.writing, p.key)
		}
		g.writers--
		g.mu.Unlock()
	}
}

// poke wakes a writer, unless one is due to look at the queue already.
func (g *groupCommitter) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// take moves the next group out of the queue: up to max rows in arrival order, skipping (and
// leaving queued) a row whose key is already in the group or in a group being written. A row
// whose context has ended is answered with its error and dropped. While a group is being
// written, it takes another only from a queue of parallelFrom rows or more, and wakes another
// writer when that many stay queued.
func (g *groupCommitter) take() []*pendingUpsert {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 || g.writers > 0 && len(g.queue) < g.parallelFrom {
		return nil
	}
	var (
		group []*pendingUpsert
		keys  map[rowKey]struct{}
		rest  = g.queue[:0]
	)
	for _, p := range g.queue {
		if err := p.ctx.Err(); err != nil {
			p.taken = true
			p.finish(returnedRow{}, err)
			continue
		}
		if _, busy := g.writing[p.key]; !busy && len(group) < g.max {
			if _, dup := keys[p.key]; !dup {
				if keys == nil {
					keys = make(map[rowKey]struct{}, min(len(g.queue), g.max))
				}
				keys[p.key] = struct{}{}
				p.taken = true
				group = append(group, p)
				continue
			}
		}
		rest = append(rest, p)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	for _, p := range group {
		g.writing[p.key] = struct{}{}
	}
	if len(group) > 0 && len(g.queue) >= g.parallelFrom {
		g.poke()
	}
	if len(group) > 0 {
		g.writers++
		g.stats.Groups++
		g.stats.Rows += int64(len(group))
		g.stats.Largest = max(g.stats.Largest, len(group))
	}
	return group
}

// groupContext bounds a group's commit by the latest deadline of its callers, and by none when
// one of them has none. It is never cancelled by a caller: the others' rows are in the same
// transaction.
func groupContext(group []*pendingUpsert) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, p := range group {
		d, ok := p.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// transientRetries bounds how often a group is retried after a transient failure (isTransient).
const transientRetries = 3

// commit writes a group and answers each of its rows.
func (g *groupCommitter) commit(group []*pendingUpsert) {
	if g.taken != nil {
		ids := make([]string, len(group))
		for i, p := range group {
			ids[i] = p.in.ConnectionID
		}
		g.taken(ids)
	}
	ctx, cancel := groupContext(group)
	defer cancel()
	slices.SortFunc(group, func(a, b *pendingUpsert) int { return a.key.compare(b.key) })
	now := g.now()
	live := group
	perRow := false // find the row a multi-row statement failed on
	transient := 0
	for len(live) > 0 {
		var (
			rows []returnedRow
			bad  = -1
			err  error
		)
		switch {
		case len(live) == 1:
			rows, err = g.upsertAlone(ctx, live[0], now)
			if err != nil {
				bad = 0
			}
		case !perRow:
			rows, err = g.upsertMany(ctx, live, now)
		default:
			rows, bad, err = g.upsertEach(ctx, live, now)
		}
		if err == nil {
			for i, p := range live {
				p.finish(rows[i], nil)
			}
			return
		}
		if isTransient(err) && transient < transientRetries && ctx.Err() == nil {
			transient++
			continue
		}
		refused := g.refused(err) && ctx.Err() == nil
		if bad >= 0 && refused {
			// The database refused this row: the others go again without it.
			live[bad].finish(returnedRow{}, err)
			live = slices.Delete(slices.Clone(live), bad, bad+1)
			perRow = false
			continue
		}
		if !perRow && len(live) > 1 && refused {
			perRow = true
			g.mu.Lock()
			g.stats.RowByRow++
			g.mu.Unlock()
			continue
		}
		if !refused && lostConnection(err) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		for _, p := range live {
			p.finish(returnedRow{}, err)
		}
		return
	}
}

// isTransient tells a failure that says nothing about the rows and may not recur: a deadlock or
// serialization failure on PostgreSQL, or a statement that was never sent.
func isTransient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40P01" || pgErr.Code == "40001"
	}
	return pgconn.SafeToRetry(err)
}

// refused tells whether the database itself answered err to a statement, so that it may be the
// fault of one of its rows; a lost connection is not. SQLite runs in the process: every failure
// is its answer.
func (g *groupCommitter) refused(err error) bool {
	if g.dialect != DialectPostgres {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// lostConnection tells an error of a database connection that closed under a statement or a
// transaction.
func lostConnection(err error) bool {
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone)
}
