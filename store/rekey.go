package store

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"gorm.io/gorm"
)

// RekeyProgress is where a Rekey run stands, table by table.
type RekeyProgress struct {
	// KeyID is the id of the primary key, the one values are re-sealed with.
	KeyID        string
	Connections  RekeyCount
	Integrations RekeyCount
}

// RekeyCount counts the sealed values of one table (for integrations, client secrets and private
// keys together).
type RekeyCount struct {
	// Total is the number of values not sealed with the primary key when the run started.
	Total int64
	// Done is the number of values this run re-sealed with the primary key.
	Done int64
	// Skipped is the number of values another writer replaced between this run's read and its
	// update; they are left as that writer stored them.
	Skipped int64
	// Failed is the number of values the key ring could not open (a key it lacks, or a value that
	// does not belong to its row); each is reported and left as it is.
	Failed int64
	// Remaining is the number of values still to visit. In the result of a run that finished, it
	// is counted again in the database: the values still not sealed with the primary key (for
	// example written meanwhile by a server that seals with an older key), the failed ones aside.
	// A next run re-seals them.
	Remaining int64
}

func (c *RekeyCount) update() {
	c.Remaining = max(c.Total-c.Done-c.Skipped-c.Failed, 0)
}

// RekeyFailure is a value Rekey could not open. It names the row, never the value.
type RekeyFailure struct {
	Table, Column string
	// ID is the row's primary key.
	ID          int64
	Environment string
	// Integration is the integration's unique key (provider_config_key).
	Integration string
	// ConnectionID is empty for an integration.
	ConnectionID string
	// KeyID is the id of the key the value names.
	KeyID string
	Err   error
}

// rekeyTarget is one sealed column and how to rebuild the AAD its values are bound to.
type rekeyTarget struct {
	table  string
	column string
	// owner selects, as owner and connection_id, the columns the AAD is made of.
	owner string
	aad   func(r rekeyRow) []byte
	count *RekeyCount
}

type rekeyRow struct {
	ID            int64
	EnvironmentID int64
	Owner         string
	ConnectionID  string
	Sealed        string
}

// Rekey re-seals with the key ring's primary key every connection's credentials and every
// integration's client secret and GitHub App private key that another key of the ring sealed. It works in batches of
// batchSize rows, each in a short transaction of its own, and calls progress after each batch.
//
// Only values not on the primary key are read, so a run that stopped (cancelled, crashed) is
// resumed by running it again. Each row is updated only if it still holds the value that was
// read, so a write made meanwhile (an import by a running server) is never overwritten; such a
// row is counted as skipped. A value the ring cannot open is counted as failed, passed to failed
// (which may be nil) and left as it is; the run goes on. On error the progress made so far is
// returned with it.
func (db *DB) Rekey(ctx context.Context, batchSize int, progress func(RekeyProgress), failed func(RekeyFailure)) (RekeyProgress, error) {
	p := RekeyProgress{KeyID: db.keys.PrimaryID()}
	if batchSize < 1 {
		return p, fmt.Errorf("rekey: batch size %d, want at least 1", batchSize)
	}
	targets := []rekeyTarget{
		{
			table: "integrations", column: "client_secret", owner: "unique_key AS owner, '' AS connection_id",
			aad:   func(r rekeyRow) []byte { return integrationAAD(r.EnvironmentID, r.Owner) },
			count: &p.Integrations,
		},
		{
			table: "integrations", column: "private_key", owner: "unique_key AS owner, '' AS connection_id",
			aad:   func(r rekeyRow) []byte { return appKeyAAD(r.EnvironmentID, r.Owner) },
			count: &p.Integrations,
		},
		{
			table: "connections", column: "credentials", owner: "provider_config_key AS owner, connection_id",
			aad:   func(r rekeyRow) []byte { return connectionAAD(r.EnvironmentID, r.Owner, r.ConnectionID) },
			count: &p.Connections,
		},
		{
			table: "webhook_settings", column: "signing_key", owner: "'' AS owner, '' AS connection_id",
			aad:   func(r rekeyRow) []byte { return webhookKeyAAD(r.EnvironmentID) },
			count: &p.Integrations,
		},
	}
	prefix := sealPrefix + ":" + p.KeyID + ":"
	for _, t := range targets {
		n, err := db.countNotOnKey(ctx, t, prefix)
		if err != nil {
			return p, err
		}
		t.count.Total += n
		t.count.update()
	}
	for _, t := range targets {
		var lastID int64
		for {
			if err := ctx.Err(); err != nil {
				return p, fmt.Errorf("rekey %s: %w", t.table, err)
			}
			n, err := db.rekeyBatch(ctx, t, prefix, batchSize, &lastID, failed)
			if err != nil {
				return p, err
			}
			if n == 0 {
				break
			}
			t.count.update()
			if progress != nil {
				progress(p)
			}
			if n < batchSize {
				break
			}
		}
	}
	for _, t := range targets {
		t.count.Remaining = 0
	}
	for _, t := range targets {
		n, err := db.countNotOnKey(ctx, t, prefix)
		if err != nil {
			return p, err
		}
		t.count.Remaining += n
	}
	for _, c := range []*RekeyCount{&p.Integrations, &p.Connections} {
		c.Remaining = max(c.Remaining-c.Failed, 0) // the failed values are still not on the key
	}
	return p, nil
}

// notOnKey is the SQL condition "the column holds a value not sealed with the key of prefix";
// its arguments are the length of prefix in characters, then prefix.
func notOnKey(column string) string {
	return column + " IS NOT NULL AND substr(" + column + ", 1, ?) <> ?"
}

func (db *DB) countNotOnKey(ctx context.Context, t rekeyTarget, prefix string) (int64, error) {
	var n int64
	err := db.gorm.WithContext(ctx).
		Raw("SELECT count(*) FROM "+t.table+" WHERE "+notOnKey(t.column), utf8.RuneCountInString(prefix), prefix).
		Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("rekey %s: count: %w", t.table, err)
	}
	return n, nil
}

// rekeyBatch re-seals, in one transaction, up to batchSize values after row *lastID that are not
// on the primary key, and moves *lastID past them. It returns how many rows it read.
func (db *DB) rekeyBatch(ctx context.Context, t rekeyTarget, prefix string, batchSize int, lastID *int64, failed func(RekeyFailure)) (int, error) {
	var rows []rekeyRow
	var done, skipped int64
	var failures []RekeyFailure
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Raw("SELECT id, environment_id, "+t.owner+", "+t.column+" AS sealed FROM "+t.table+
			" WHERE id > ? AND "+notOnKey(t.column)+" ORDER BY id LIMIT ?",
			*lastID, utf8.RuneCountInString(prefix), prefix, batchSize).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		for _, r := range rows {
			aad := t.aad(r)
			plain, err := db.keys.Open(r.Sealed, aad)
			if err != nil {
				f := RekeyFailure{Table: t.table, Column: t.column, ID: r.ID, Integration: r.Owner, ConnectionID: r.ConnectionID,
					KeyID: SealedKeyID(r.Sealed), Err: err}
				if err := tx.Raw("SELECT name FROM environments WHERE id = ?", r.EnvironmentID).Scan(&f.Environment).Error; err != nil {
					return fmt.Errorf("row %d: environment: %w", r.ID, err)
				}
				failures = append(failures, f)
				continue
			}
			sealed, err := db.keys.Seal(plain, aad)
			if err != nil {
				return fmt.Errorf("row %d: %w", r.ID, err)
			}
			res := tx.Exec("UPDATE "+t.table+" SET "+t.column+" = ? WHERE id = ? AND "+t.column+" = ?",
				sealed, r.ID, r.Sealed)
			if res.Error != nil {
				return fmt.Errorf("row %d: update: %w", r.ID, res.Error)
			}
			if res.RowsAffected == 1 {
				done++
			} else {
				skipped++
			}
		}
		return nil
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return 0, fmt.Errorf("rekey %s: %w", t.table, err)
	}
	if len(rows) > 0 {
		*lastID = rows[len(rows)-1].ID
	}
	t.count.Done += done
	t.count.Skipped += skipped
	t.count.Failed += int64(len(failures))
	if failed != nil {
		for _, f := range failures {
			failed(f)
		}
	}
	return len(rows), nil
}
