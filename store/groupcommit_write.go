package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The statements of the group commit: one row, rows one statement each in a transaction, and
// rows many to a statement.

// integrationIDOf is the integration id row p is sent with: one that does not exist when the
// test hook wants the database to refuse it.
func (g *groupCommitter) integrationIDOf(p *pendingUpsert) int64 {
	if g.refuse != nil && g.refuse(p.in) {
		return 0
	}
	return p.in.Integration.ID
}

// querier is a pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// upsertOne writes one row in one statement.
func (g *groupCommitter) upsertOne(ctx context.Context, q querier, p *pendingUpsert, now time.Time) (returnedRow, error) {
	in := p.in
	var (
		r        returnedRow
		key      rowKey
		inserted bool
	)
	dest := []any{&r.id, &r.connectionConfig, &r.metadata, &r.tags, &r.endUser, &r.createdAt, &r.updatedAt, &r.lastFetchedAt,
		&key.environmentID, &key.providerConfigKey, &key.connectionID}
	if g.dialect == DialectPostgres {
		dest = append(dest, &inserted)
	}
	rows, err := q.QueryContext(ctx, g.oneSQL,
		in.EnvironmentID, g.integrationIDOf(p), in.Integration.UniqueKey, in.ConnectionID, p.sealed,
		in.CredentialsExpiresAt, jsonOr(in.ConnectionConfig, "{}"), jsonOr(in.Metadata, "{}"), jsonOr(in.Tags, "{}"), endUserOf(in),
		now, now, now,
		p.flags.mergeConfig, p.flags.config, p.flags.metadata, p.flags.tags, p.flags.endUser,
	)
	if err == nil {
		err = scanReturning(rows, dest...)
	}
	if err != nil {
		return returnedRow{}, err
	}
	r.created = inserted
	if g.dialect != DialectPostgres {
		// An update keeps created_at, so only an insert leaves it equal to this statement's time.
		r.created = r.createdAt.Equal(now)
	}
	return r, nil
}

// upsertAlone writes one row and its webhook events in one transaction.
func (g *groupCommitter) upsertAlone(ctx context.Context, p *pendingUpsert, now time.Time) ([]returnedRow, error) {
	tx, err := g.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	r, err := g.upsertOne(ctx, tx, p, now)
	if err != nil {
		return nil, err
	}
	out := []returnedRow{r}
	if err := g.queueEvents(ctx, tx, []*pendingUpsert{p}, out, now); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// queueEvents writes the creation and override webhooks of the rows written, in their
// transaction.
func (g *groupCommitter) queueEvents(ctx context.Context, tx execQuerier, rows []*pendingUpsert, out []returnedRow, now time.Time) error {
	events := make([]pendingEvent, 0, len(rows))
	for i, p := range rows {
		if p.in.NoWebhooks {
			continue
		}
		op := WebhookOverride
		if out[i].created {
			op = WebhookCreation
		}
		events = append(events, pendingEvent{
			environmentID: p.in.EnvironmentID, integration: p.in.Integration, connectionID: p.in.ConnectionID,
			connectionRow: out[i].id, operation: op, tags: out[i].tags, endUser: out[i].endUser,
			override: p.in.WebhookURLOverride,
		})
	}
	return queueEvents(ctx, tx, g.dialect, now, events)
}

// upsertEach writes the rows one statement each, in one transaction. When a statement fails it
// returns the index of its row.
func (g *groupCommitter) upsertEach(ctx context.Context, rows []*pendingUpsert, now time.Time) ([]returnedRow, int, error) {
	tx, err := g.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, -1, err
	}
	defer func() { _ = tx.Rollback() }()
	var q querier = tx
	if g.dialect == DialectSQLite {
		stmt, err := tx.PrepareContext(ctx, g.oneSQL)
		if err != nil {
			return nil, -1, err
		}
		defer stmt.Close()
		q = stmtQuerier{stmt}
	}
	out := make([]returnedRow, len(rows))
	for i, p := range rows {
		if out[i], err = g.upsertOne(ctx, q, p, now); err != nil {
			return nil, i, err
		}
	}
	if err := g.queueEvents(ctx, tx, rows, out, now); err != nil {
		return nil, -1, err
	}
	if err := tx.Commit(); err != nil {
		return nil, -1, err
	}
	return out, -1, nil
}

// stmtQuerier runs a prepared statement, whatever query it is given.
type stmtQuerier struct{ stmt *sql.Stmt }

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.stmt.QueryContext(ctx, args...)
}

// sqliteStatementRows bounds the rows of one SQLite statement, whose parameters are limited
// to 32766.
const sqliteStatementRows = 1000

// upsertMany writes the rows with one multi-row statement per shape of request (and on SQLite
// per sqliteStatementRows rows), in one transaction with the rows' webhook events.
func (g *groupCommitter) upsertMany(ctx context.Context, rows []*pendingUpsert, now time.Time) ([]returnedRow, error) {
	// Rows of one shape, in key order.
	var shapes []upsertFlags
	byShape := map[upsertFlags][]int{}
	for i, p := range rows {
		if _, ok := byShape[p.flags]; !ok {
			shapes = append(shapes, p.flags)
		}
		byShape[p.flags] = append(byShape[p.flags], i)
	}
	var statements [][]int
	for _, f := range shapes {
		idx := byShape[f]
		if g.dialect == DialectPostgres {
			statements = append(statements, idx)
			continue
		}
		statements = append(statements, slices.Collect(slices.Chunk(idx, sqliteStatementRows))...)
	}
	out := make([]returnedRow, len(rows))
	tx, err := g.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	for _, idx := range statements {
		if err := g.upsertRows(ctx, tx, rows, idx, now, out); err != nil {
			return nil, err
		}
	}
	if err := g.queueEvents(ctx, tx, rows, out, now); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// queryer is a pool or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// upsertRows writes rows[idx], which share their flags, in one statement and puts what it
// returned for each in out at the row's index.
func (g *groupCommitter) upsertRows(ctx context.Context, q queryer, rows []*pendingUpsert, idx []int, now time.Time, out []returnedRow) error {
	query, args := g.manyStatement(rows, idx, now)
	at := make(map[rowKey]int, len(idx))
	for _, i := range idx {
		at[rows[i].key] = i
	}
	res, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer res.Close()
	seen := 0
	for res.Next() {
		var (
			r   returnedRow
			key rowKey
		)
		dest := []any{&r.id, &r.connectionConfig, &r.metadata, &r.tags, &r.endUser, &r.createdAt, &r.updatedAt, &r.lastFetchedAt,
			&key.environmentID, &key.providerConfigKey, &key.connectionID}
		if g.dialect == DialectPostgres {
			dest = append(dest, &r.created)
		}
		if err := res.Scan(dest...); err != nil {
			return err
		}
		if g.dialect != DialectPostgres {
			r.created = r.createdAt.Equal(now)
		}
		i, ok := at[key]
		if !ok {
			return fmt.Errorf("the upsert returned connection %q, which it was not sent", key.connectionID)
		}
		out[i] = r
		seen++
	}
	if err := res.Err(); err != nil {
		return err
	}
	if seen != len(idx) {
		return fmt.Errorf("the upsert returned %d of %d rows", seen, len(idx))
	}
	return nil
}

// manyStatement is the statement writing rows[idx] and its parameters: on PostgreSQL the fixed
// text of upsertManySQL with one array per column, on SQLite a VALUES list of the rows.
func (g *groupCommitter) manyStatement(rows []*pendingUpsert, idx []int, now time.Time) (string, []any) {
	f := rows[idx[0]].flags
	flags := []any{f.mergeConfig, f.config, f.metadata, f.tags, f.endUser}
	if g.dialect != DialectPostgres {
		var values strings.Builder
		values.WriteString("VALUES ")
		args := make([]any, 0, 13*len(idx)+len(flags))
		for j, i := range idx {
			if j > 0 {
				values.WriteString(",\n    ")
			}
			values.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			p := rows[i]
			in := p.in
			args = append(args, in.EnvironmentID, g.integrationIDOf(p), in.Integration.UniqueKey, in.ConnectionID, p.sealed,
				in.CredentialsExpiresAt, jsonOr(in.ConnectionConfig, "{}"), jsonOr(in.Metadata, "{}"), jsonOr(in.Tags, "{}"), endUserOf(in),
				now, now, now)
		}
		query := UpsertStatement{
			Table: "connections", Rows: values.String(),
			MergeConfig: "?", HasConfig: "?", HasMetadata: "?", HasTags: "?", HasEndUser: "?",
		}.SQL(g.dialect)
		return query, append(args, flags...)
	}
	n := len(idx)
	var (
		envIDs, integrationIDs  = make([]int64, n), make([]int64, n)
		keys, connIDs, creds    = make([]string, n), make([]string, n), make([]string, n)
		expires                 = make([]*time.Time, n)
		configs, metadata, tags = make([]string, n), make([]string, n), make([]string, n)
		endUsers                = make([]*string, n)
	)
	for j, i := range idx {
		p := rows[i]
		in := p.in
		envIDs[j], integrationIDs[j], keys[j], connIDs[j], creds[j] =
			in.EnvironmentID, g.integrationIDOf(p), in.Integration.UniqueKey, in.ConnectionID, p.sealed
		expires[j] = in.CredentialsExpiresAt
		configs[j], metadata[j], tags[j] = jsonOr(in.ConnectionConfig, "{}"), jsonOr(in.Metadata, "{}"), jsonOr(in.Tags, "{}")
		endUsers[j] = endUserOf(in)
	}
	args := []any{now, now, now, envIDs, integrationIDs, keys, connIDs, creds, expires, configs, metadata, tags, endUsers}
	return g.manySQL, append(args, flags...)
}

// endUserOf is the end_user value of an import: NULL when it sent none.
func endUserOf(in UpsertConnection) *string {
	if in.EndUser == nil {
		return nil
	}
	s := string(in.EndUser)
	return &s
}
