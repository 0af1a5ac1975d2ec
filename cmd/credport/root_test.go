package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// migrationFiles is the number of migrations of a dialect.
func migrationFiles(t *testing.T, d store.Dialect) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "store", "migrations", string(d), "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations of %s: %v, %v", d, files, err)
	}
	return len(files)
}

// applied is the number of migrations the one "migrations applied" log record in stderr counts,
// 0 without one. More than one record for a run fails the test.
func applied(t *testing.T, stderr string) int {
	t.Helper()
	n, records := 0, 0
	for _, rec := range logRecords(t, stderr) {
		if strings.HasPrefix(fmt.Sprint(rec["msg"]), "migration") {
			records++
			if rec["msg"] != "migrations applied" {
				t.Errorf("migration log record %v, want one \"migrations applied\" summary", rec)
				continue
			}
			count, _ := rec["applied"].(float64)
			n = int(count)
		}
	}
	if records > 1 {
		t.Errorf("%d migration log records, want one summary:\n%s", records, stderr)
	}
	return n
}

func TestMigrate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		files := migrationFiles(t, c.dialect())
		var secret string
		// The steps run in order on one database.
		steps := []struct {
			name        string
			before      func(c *cli)
			wantApplied int
		}{
			{name: "first run applies every migration", wantApplied: files},
			{name: "second run applies none", wantApplied: 0},
			{name: "a run on a database with data keeps it", before: func(c *cli) {
				secret = strings.TrimSpace(c.must("keys", "create", "--env", "dev"))
			}, wantApplied: 0},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				c := c.in(t)
				if st.before != nil {
					st.before(c)
				}
				out, stderr, err := c.run("migrate")
				if err != nil {
					t.Fatalf("migrate: %v\n%s", err, stderr)
				}
				if out != "" {
					t.Errorf("stdout = %q, want nothing", out)
				}
				if n := applied(t, stderr); n != st.wantApplied {
					t.Errorf("%d migrations applied, want %d\n%s", n, st.wantApplied, stderr)
				}
				c.stored() // fails when a table is missing (PostgreSQL)
				for _, table := range []string{"environments", "api_keys", "integrations", "connections"} {
					c.query("SELECT CAST(COUNT(*) AS TEXT) FROM " + table) // fails when the table is missing
				}
				if secret != "" {
					if _, err := c.lookupKey(secret); err != nil {
						t.Errorf("the key made before migrate: %v", err)
					}
				}
			})
		}
	})
}

func TestMigrateConcurrently(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		const runs = 4
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			total    int
			failures []string
		)
		for range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out, errOut syncBuffer
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				err := run(ctx, []string{"migrate"}, c.getenv(), &out, &errOut)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures = append(failures, err.Error())
					return
				}
				total += applied(t, errOut.String())
			}()
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d of %d concurrent migrate runs failed: %q", len(failures), runs, failures)
		}
		if want := migrationFiles(t, c.dialect()); total != want {
			t.Errorf("concurrent runs applied %d migrations in all, want each of the %d once", total, want)
		}
	})
}

// warnings are the WARN log records in stderr.
func warnings(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range logRecords(t, stderr) {
		if rec["level"] == "WARN" {
			out = append(out, rec)
		}
	}
	return out
}

func TestSQLiteKeyFile(t *testing.T) {
	const clientSecret = "key-file-client-secret"
	createIntegration := []string{"integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github",
		"--auth-mode", "OAUTH2", "--client-id", "cid", "--client-secret", clientSecret}
	fixedKey := store.NewKey()
	cases := []struct {
		name     string
		prefix   string                     // before the database path in CREDPORT_DATABASE_URL
		envKey   string                     // CREDPORT_ENCRYPTION_KEY
		keyFile  string                     // content of the key file before the first run; "" for none
		dbFile   bool                       // an empty database file exists before the first run
		args     []string                   // the first run
		wantErr  string                     // of the first run
		wantFile bool                       // a key file exists after the first run
		wantWarn bool                       // the first run warns about it
		wantKey  func(file string) string   // the key that seals, given the key file's content
		check    func(t *testing.T, c *cli) // more checks after the first run
	}{
		{name: "migrate makes the key file", args: []string{"migrate"}, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "keys create makes the key file", dbFile: true, args: []string{"keys", "create", "--env", "dev"}, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "integrations create makes the key file", dbFile: true, args: createIntegration, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "keys create without a database makes neither", args: []string{"keys", "create", "--env", "dev"},
			wantErr: "no database at"},
		{name: "bootstrap makes the key file", args: []string{"bootstrap"}, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "sqlite: URL", prefix: "sqlite:", args: []string{"migrate"}, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "file: URL", prefix: "file:", args: []string{"migrate"}, wantFile: true, wantWarn: true,
			wantKey: func(file string) string { return file }},
		{name: "an existing key file is used as it is", keyFile: fixedKey + "\n", args: []string{"migrate"}, wantFile: true,
			wantKey: func(string) string { return fixedKey }},
		{name: "key file with a bad key", keyFile: "not a key\n", args: []string{"migrate"}, wantErr: "not base64", wantFile: true},
		{name: "CREDPORT_ENCRYPTION_KEY set: no key file", envKey: storetest.TestKey, args: []string{"migrate"},
			wantKey: func(string) string { return storetest.TestKey }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "credport.db")
			keyPath := dbPath + ".key"
			c := &cli{t: t, dbURL: tc.prefix + dbPath, store: &sharedStore{t: t},
				env: map[string]string{"CREDPORT_DATABASE_URL": tc.prefix + dbPath}}
			if tc.envKey != "" {
				c.env["CREDPORT_ENCRYPTION_KEY"] = tc.envKey
			}
			if tc.dbFile {
				emptyDatabase(t, dbPath)
			}
			if tc.keyFile != "" {
				if err := os.WriteFile(keyPath, []byte(tc.keyFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, stderr, err := c.run(tc.args...)
			firstStderr := stderr
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(tc.args, " "), err, stderr)
			}

			warns := warnings(t, stderr)
			if tc.wantWarn {
				if len(warns) != 1 {
					t.Fatalf("%d warnings, want 1 about the key file:\n%s", len(warns), stderr)
				}
				msg, _ := warns[0]["msg"].(string)
				if !strings.Contains(msg, "CREDPORT_ENCRYPTION_KEY") || warns[0]["key_file"] != keyPath {
					t.Errorf("warning %v: want one naming CREDPORT_ENCRYPTION_KEY and key_file %s", warns[0], keyPath)
				}
			} else if len(warns) != 0 {
				t.Errorf("warnings %v, want none", warns)
			}

			info, statErr := os.Stat(keyPath)
			if !tc.wantFile {
				if statErr == nil {
					t.Errorf("a key file %s was made", keyPath)
				}
			} else {
				if statErr != nil {
					t.Fatalf("key file: %v", statErr)
				}
				if perm := info.Mode().Perm(); perm != 0o600 {
					t.Errorf("key file mode %v, want 0600", perm)
				}
			}
			if tc.wantErr != "" {
				return
			}
			var file []byte
			if tc.wantFile {
				file, err = os.ReadFile(keyPath)
				if err != nil {
					t.Fatal(err)
				}
				if tc.keyFile == "" {
					raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(file)))
					if err != nil || len(raw) != 32 {
						t.Errorf("key file holds %d bytes (%v), want base64 of 32 bytes", len(raw), err)
					}
				}
			}

			// A later run uses the same key without a warning and leaves the file alone.
			c.must("integrations", "create", "--env", "later", "--unique-key", "later", "--provider", "github",
				"--auth-mode", "OAUTH2", "--client-id", "cid", "--client-secret", clientSecret)
			_, stderr, err = c.run("integrations", "list", "--env", "later")
			if err != nil {
				t.Fatal(err)
			}
			if w := warnings(t, stderr); len(w) != 0 {
				t.Errorf("a later run warns again: %v", w)
			}
			if tc.wantFile {
				again, err := os.ReadFile(keyPath)
				if err != nil || string(again) != string(file) {
					t.Errorf("the key file changed: %q, then %q (%v)", file, again, err)
				}
			}
			ring, err := store.ParseKeyring(tc.wantKey(strings.TrimSpace(string(file))))
			if err != nil {
				t.Fatal(err)
			}
			for _, sealed := range c.query("SELECT client_secret FROM integrations") {
				if id := store.SealedKeyID(sealed); id != ring.PrimaryID() {
					t.Errorf("client secret sealed with key %q, want %q", id, ring.PrimaryID())
				}
			}
			key := tc.wantKey(strings.TrimSpace(string(file)))
			if _, b64, ok := strings.Cut(key, ":"); ok {
				key = b64
			}
			assertNoLeak(t, "the database", c.stored(), map[string]string{"client secret": clientSecret, "encryption key": key})
			assertNoLeak(t, "the log", stderr+firstStderr, map[string]string{"client secret": clientSecret, "encryption key": key})
		})
	}
}

func TestEncryptionKeyErrors(t *testing.T) {
	commands := [][]string{
		{"migrate"},
		{"serve", "--listen", "127.0.0.1:0"},
		{"bootstrap"},
		{"keys", "create", "--env", "dev"},
		{"keys", "list", "--env", "dev"},
		{"keys", "revoke", "--env", "dev", "1"},
		{"integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2"},
		{"integrations", "list", "--env", "dev"},
	}
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	cases := []struct {
		name    string
		backend string // "" for both
		key     string
		wantErr string
	}{
		{name: "PostgreSQL without a key", backend: "postgres", key: "",
			wantErr: "CREDPORT_ENCRYPTION_KEY is required with PostgreSQL"},
		{name: "a key that is not base64", key: "not-a-key!", wantErr: "not base64"},
		{name: "a key of 16 bytes", key: short, wantErr: "16 bytes, want 32"},
		{name: "a key id used twice", key: "a:" + store.NewKey() + ",a:" + store.NewKey(), wantErr: `id "a" used twice`},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b) // every case leaves the database untouched
		for _, tc := range cases {
			if tc.backend != "" && tc.backend != b.Name {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				c.env = map[string]string{"CREDPORT_DATABASE_URL": c.dbURL, "CREDPORT_ENCRYPTION_KEY": tc.key}
				for _, args := range commands {
					out, _, err := c.run(args...)
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("%s: err = %v, want one containing %q", strings.Join(args, " "), err, tc.wantErr)
					}
					if out != "" {
						t.Errorf("%s: stdout = %q, want nothing", strings.Join(args, " "), out)
					}
				}
				// Nothing touched the database: the error comes before the schema.
				var tables []string
				if c.dialect() == store.DialectPostgres {
					tables = c.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
				} else if _, err := os.Stat(store.SQLitePath(c.dbURL)); err == nil {
					tables = c.query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
				}
				if len(tables) != 0 {
					t.Errorf("tables %v exist after refused runs, want none", tables)
				}
				if c.dialect() == store.DialectSQLite {
					if _, err := os.Stat(store.SQLitePath(c.dbURL) + ".key"); err == nil {
						t.Error("a key file was made beside the database although CREDPORT_ENCRYPTION_KEY is set")
					}
				}
			})
		}
	})
}
