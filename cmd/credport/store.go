package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/credport/credport/store"
)

// withStore opens the database (migrating it), runs fn and closes the database again.
func (a *app) withStore(ctx context.Context, fn func(db *store.DB) error) error {
	db, err := a.openStore(ctx, a.logger())
	if err != nil {
		return err
	}
	return errors.Join(fn(db), db.Close())
}

// openStore opens the database and brings its schema up to date. It refuses a key ring that
// lacks a key some stored value was sealed with.
func (a *app) openStore(ctx context.Context, log *slog.Logger) (*store.DB, error) {
	return a.openStoreKeys(ctx, log, true)
}

// keySource is where the key ring came from.
type keySource struct {
	// file is the key file beside an SQLite database, used when CREDPORT_ENCRYPTION_KEY is unset.
	file string
	// newKey is a fresh key when that file does not exist. It is written only once the database
	// proves to hold no sealed value: a new key on a database that holds some would fork it.
	newKey string
}

// openStoreKeys opens the store with the configured keys, logs where they came from and checks
// that they open everything the database holds: when strict, a missing key is an error; when not
// (rekey, which reports each value it cannot open), a warning.
func (a *app) openStoreKeys(ctx context.Context, log *slog.Logger, strict bool) (*store.DB, error) {
	for {
		ring, src, err := a.keyring()
		if err != nil {
			return nil, err
		}
		if err := a.checkDatabaseExists(); err != nil {
			return nil, err
		}
		db, err := store.Open(ctx, store.Config{URL: a.databaseURL, Keys: ring, Logger: log, BusyTimeout: a.busyTimeout,
			GroupCommitMax: a.groupCommitMax})
		if err != nil {
			return nil, err
		}
		if src.newKey != "" {
			created, err := createKeyFile(ctx, db, src, log)
			if err != nil {
				return nil, errors.Join(err, db.Close())
			}
			if !created { // another process wrote the file first: start again with its key
				if err := db.Close(); err != nil {
					return nil, err
				}
				continue
			}
		}
		if src.file != "" {
			log.Info("encryption keys from the key file; CREDPORT_ENCRYPTION_KEY is unset", "key_file", src.file, "key_ids", ring.IDs())
		} else {
			log.Info("encryption keys from CREDPORT_ENCRYPTION_KEY", "key_ids", ring.IDs())
		}
		err = db.CheckKeys(ctx)
		var missing *store.MissingKeysError
		switch {
		case err == nil:
			return db, nil
		case !errors.As(err, &missing) || strict:
			return nil, errors.Join(missingKeysHint(err, src), db.Close())
		default:
			log.Warn("values sealed with keys that are not loaded cannot be opened", "missing_key_ids", missing.Missing)
			return db, nil
		}
	}
}

// checkDatabaseExists refuses, for every command but those that may create a database (serve,
// bootstrap, migrate), an SQLite file that does not exist: a command run in the wrong directory,
// or with the PostgreSQL URL forgotten, would otherwise make a stray empty database. PostgreSQL
// has nothing to create: the server refuses an unknown database itself.
func (a *app) checkDatabaseExists() error {
	if a.mayCreateDatabase || store.DialectOf(a.databaseURL) != store.DialectSQLite {
		return nil
	}
	path := store.SQLitePath(a.databaseURL)
	if path == "" || strings.HasPrefix(path, ":") { // ":memory:"
		return nil
	}
	_, err := os.Stat(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	abs, absErr := filepath.Abs(path)
	if absErr != nil {
		abs = path
	}
	return fmt.Errorf("no database at %s (%s): set CREDPORT_DATABASE_URL or --database to the database the server uses "+
		"(a postgres:// URL for PostgreSQL); `credport migrate`, `serve` or `bootstrap` create a new one", abs, a.databaseSource)
}

// missingKeysHint says, for a missing key, where the keys came from and what to do.
func missingKeysHint(err error, src keySource) error {
	var missing *store.MissingKeysError
	if !errors.As(err, &missing) {
		return err
	}
	if src.file != "" {
		return fmt.Errorf("%w: CREDPORT_ENCRYPTION_KEY is unset, so the keys came from the key file %s; "+
			"set CREDPORT_ENCRYPTION_KEY to every key the data needs (a rotation does not update the key file)", err, src.file)
	}
	return fmt.Errorf("%w: add them to CREDPORT_ENCRYPTION_KEY (the sealing key first, older keys after)", err)
}

// keyring reads CREDPORT_ENCRYPTION_KEY. Without it, and only on SQLite, the key lives in a file
// beside the database; when there is none, the ring holds a fresh key that createKeyFile writes.
func (a *app) keyring() (*store.Keyring, keySource, error) {
	if spec := a.getenv("CREDPORT_ENCRYPTION_KEY"); spec != "" {
		ring, err := store.ParseKeyring(spec)
		return ring, keySource{}, err
	}
	if store.DialectOf(a.databaseURL) != store.DialectSQLite {
		return nil, keySource{}, errors.New("CREDPORT_ENCRYPTION_KEY is required with PostgreSQL (base64 of 32 bytes; e.g. `openssl rand -base64 32`)")
	}
	src := keySource{file: filepath.Clean(store.SQLitePath(a.databaseURL) + ".key")}
	spec, err := store.ReadKeyFile(src.file)
	if errors.Is(err, fs.ErrNotExist) {
		src.newKey = store.NewKey()
		spec = src.newKey
	} else if err != nil {
		return nil, src, err
	}
	ring, err := store.ParseKeyring(spec)
	if err != nil {
		return nil, src, fmt.Errorf("key file %s: %w", src.file, err)
	}
	return ring, src, nil
}

// createKeyFile writes the fresh key of src beside a database that holds no sealed value, and
// refuses to for one that holds some. created is false when another process wrote the file first.
func createKeyFile(ctx context.Context, db *store.DB, src keySource, log *slog.Logger) (created bool, err error) {
	var missing *store.MissingKeysError
	if err := db.CheckKeys(ctx); errors.As(err, &missing) {
		if _, err := os.Stat(src.file); err == nil {
			return false, nil // another process made the file, then sealed with its key, meanwhile
		}
		return false, fmt.Errorf("the key file %s is missing, and the database holds values sealed with encryption key id(s) %s: "+
			"restore the key file, or set CREDPORT_ENCRYPTION_KEY to the keys; no new key was made", src.file, store.QuoteIDs(missing.Missing))
	} else if err != nil {
		return false, err
	}
	_, created, err = store.CreateKeyFile(src.file, src.newKey)
	if err != nil || !created {
		return false, err
	}
	log.Warn("no CREDPORT_ENCRYPTION_KEY set: created a key file beside the database; back it up, or set CREDPORT_ENCRYPTION_KEY in production",
		"key_file", src.file)
	return true, nil
}
