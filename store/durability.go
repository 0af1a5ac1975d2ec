package store

import (
	"context"
	"fmt"
	"strings"
)

// Durability is what the PostgreSQL primary says about its standbys: whether a commit waits for
// a synchronous standby, so that a failover keeps every acknowledged write.
type Durability struct {
	// PostgreSQL is false on SQLite, which has no standby to ask about.
	PostgreSQL bool
	// SynchronousStandbyNames is the primary's synchronous_standby_names ("" when commits wait
	// for no standby).
	SynchronousStandbyNames string
	// SynchronousStandbys counts the standbys streaming from it as sync or quorum.
	SynchronousStandbys int
}

// Synchronous tells whether a commit is acknowledged only once a standby holds it.
func (d Durability) Synchronous() bool {
	return d.SynchronousStandbyNames != "" && d.SynchronousStandbys > 0
}

// CheckDurability asks the PostgreSQL primary about its synchronous standbys; SQLite has none,
// and answers the zero Durability.
func (db *DB) CheckDurability(ctx context.Context) (Durability, error) {
	var d Durability
	if db.dialect != DialectPostgres {
		return d, nil
	}
	// One statement, so that it works through a pgbouncer in transaction pooling as well.
	row := db.gorm.WithContext(ctx).Raw(`SELECT current_setting('synchronous_standby_names'),
       (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))`).Row()
	if err := row.Scan(&d.SynchronousStandbyNames, &d.SynchronousStandbys); err != nil {
		return Durability{}, fmt.Errorf("check durability: %w", dbError(err))
	}
	d.SynchronousStandbyNames = strings.TrimSpace(d.SynchronousStandbyNames)
	d.PostgreSQL = true
	return d, nil
}

// MultiHost tells whether a PostgreSQL URL names more than one host: the operator expects a
// failover.
func MultiHost(dsn string) bool {
	if DialectOf(dsn) != DialectPostgres {
		return false
	}
	rest := dsn[strings.Index(dsn, "://")+3:]
	rest, _, _ = strings.Cut(rest, "/")
	rest, _, _ = strings.Cut(rest, "?")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return strings.Contains(rest, ",")
}
