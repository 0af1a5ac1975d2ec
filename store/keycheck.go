package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
)

// MissingKeysError says which ids of the keys that sealed stored values the key ring lacks.
type MissingKeysError struct {
	// Missing are the ids the stored values need and the ring lacks; Loaded are the ring's ids.
	Missing, Loaded []string
}

func (e *MissingKeysError) Error() string {
	return fmt.Sprintf("the database holds values sealed with encryption key id(s) %s, which the loaded keys (%s) lack",
		QuoteIDs(e.Missing), QuoteIDs(e.Loaded))
}

// QuoteIDs lists key ids for a message.
func QuoteIDs(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

// IDs are the ids of the ring's keys, the sealing one first.
func (k *Keyring) IDs() []string {
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// MissingKeyIDs are the key ids listed in sealing_keys that the key ring lacks. It reads a table
// of a few rows, so readiness checks may call it. An id listed there may have lost its last value
// since; CheckKeys tells.
func (db *DB) MissingKeyIDs(ctx context.Context) ([]string, error) {
	listed, err := listedKeyIDs(db.gorm.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	return db.lacking(listed), nil
}

// CheckKeys returns a *MissingKeysError when stored values were sealed with keys the ring lacks.
// When sealing_keys lists such an id, the sealed columns are read in full to confirm it, and ids
// no value uses any more are removed from the list, so the check is cheap except after one.
func (db *DB) CheckKeys(ctx context.Context) error {
	missing, err := db.MissingKeyIDs(ctx)
	if err != nil || len(missing) == 0 {
		return err
	}
	err = db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if db.dialect == DialectPostgres {
			// Writers that found their key id listed hold a share lock on the table until they
			// commit: waiting for them means their values are seen below. Later ones wait for this
			// transaction, then list their id again if it was removed.
			if err := tx.Exec("LOCK TABLE sealing_keys IN ACCESS EXCLUSIVE MODE").Error; err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		} // SQLite: the transaction holds the database's write lock from its start.
		listed, err := listedKeyIDs(tx)
		if err != nil {
			return err
		}
		if missing = db.lacking(listed); len(missing) == 0 {
			return nil // another process removed them meanwhile
		}
		var used []string
		if err := tx.Raw(db.usedKeyIDsSQL()).Scan(&used).Error; err != nil {
			return fmt.Errorf("read key ids in use: %w", err)
		}
		var unused []string
		for _, id := range listed {
			if !slices.Contains(used, id) {
				unused = append(unused, id)
			}
		}
		if len(unused) > 0 {
			if err := tx.Exec("DELETE FROM sealing_keys WHERE key_id IN ?", unused).Error; err != nil {
				return fmt.Errorf("remove unused key ids: %w", err)
			}
		}
		missing = db.lacking(used)
		return nil
	})
	if err != nil {
		return fmt.Errorf("check encryption keys: %w", err)
	}
	if len(missing) > 0 {
		return &MissingKeysError{Missing: missing, Loaded: db.keys.IDs()}
	}
	return nil
}

// lacking are the ids among ids that the key ring lacks, sorted.
func (db *DB) lacking(ids []string) []string {
	have := db.keys.IDs()
	var out []string
	for _, id := range ids {
		if !slices.Contains(have, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func listedKeyIDs(tx *gorm.DB) ([]string, error) {
	var ids []string
	if err := tx.Raw("SELECT key_id FROM sealing_keys").Scan(&ids).Error; err != nil {
		return nil, fmt.Errorf("read sealing key ids: %w", err)
	}
	return ids, nil
}

// usedKeyIDsSQL reads the distinct key ids of every sealed column (a full read of each table).
func (db *DB) usedKeyIDsSQL() string {
	keyID := func(col string) string {
		if db.dialect == DialectPostgres {
			return "sealing_key_id(" + col + ")"
		}
		return "CASE WHEN substr(" + col + ", 1, 3) = 'v1:' AND instr(substr(" + col + ", 4), ':') > 1 " +
			"THEN substr(" + col + ", 4, instr(substr(" + col + ", 4), ':') - 1) END"
	}
	return "SELECT k FROM (SELECT " + keyID("credentials") + " AS k FROM connections" +
		" UNION SELECT " + keyID("client_secret") + " FROM integrations" +
		" UNION SELECT " + keyID("private_key") + " FROM integrations) ids WHERE k IS NOT NULL"
}
