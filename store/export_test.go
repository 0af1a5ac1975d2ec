package store

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// ExplainListConnections is the query plan of one list page, as text. On PostgreSQL sequential
// scans are disabled for the statement, so that a table
// of a few test rows shows the index the planner can use on a large one.
func (db *DB) ExplainListConnections(ctx context.Context, in ListConnections) (string, error) {
	query, args, err := db.listConnectionsQuery(in)
	if err != nil {
		return "", err
	}
	var lines []string
	err = db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		explain := "EXPLAIN QUERY PLAN "
		if db.dialect == DialectPostgres {
			explain = "EXPLAIN "
			if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
				return err
			}
		}
		rows, err := tx.Raw(explain+query, args...).Rows()
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			return err
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			lines = append(lines, fmt.Sprint(vals[len(vals)-1]))
		}
		return rows.Err()
	})
	return strings.Join(lines, "\n"), err
}

// OnGroupTaken makes the group commit of db call f with the connection ids of each group it has
// taken, before writing it. Set it before the first import.
func OnGroupTaken(db *DB, f func(connectionIDs []string)) {
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	db.group.taken = f
}

// WriteGroupsBesideFrom makes the group commit of db write a second group beside one from n
// queued rows on. Set it before the first import.
func WriteGroupsBesideFrom(db *DB, n int) {
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	db.group.parallelFrom = n
}
