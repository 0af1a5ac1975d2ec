package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// sealedDataCommands are commands that open the database; each must refuse keys that lack one the
// data needs, before it writes anything.
var sealedDataCommands = [][]string{
	{"serve", "--listen", "127.0.0.1:0"},
	{"migrate"},
	{"bootstrap"},
	{"keys", "create", "--env", "dev"},
	{"keys", "list", "--env", "dev"},
	{"integrations", "create", "--env", "dev", "--unique-key", "other", "--provider", "github", "--auth-mode", "OAUTH2",
		"--client-id", "id", "--client-secret", "other-secret"},
	{"integrations", "list", "--env", "dev"},
}

// wantRefused runs every command of sealedDataCommands and wants each refused with an error that
// holds all of want, and nothing on stdout.
func wantRefused(t *testing.T, c *cli, want ...string) {
	t.Helper()
	for _, args := range sealedDataCommands {
		out, _, err := c.run(args...)
		if err == nil {
			t.Errorf("%s: no error, want a refusal", strings.Join(args, " "))
			continue
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q, want one containing %q", strings.Join(args, " "), err, w)
			}
		}
		if out != "" {
			t.Errorf("%s: stdout %q, want nothing", strings.Join(args, " "), out)
		}
	}
}

// keyLog is the start log record that says where the keys came from.
func keyLog(t *testing.T, stderr string) map[string]any {
	t.Helper()
	for _, rec := range logRecords(t, stderr) {
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "encryption keys from ") {
			return rec
		}
	}
	t.Fatalf("no log record says where the encryption keys came from:\n%s", stderr)
	return nil
}

// TestStartRefusesMissingKeys: after a rotation, a start with only the old key is refused by
// every command, serve included, naming the id of the key the data needs; with the new key,
// serve starts, says where its keys came from, and is ready.
func TestStartRefusesMissingKeys(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		keyA, keyB := "a:"+store.NewKey(), "b:"+store.NewKey()
		c.env["CREDPORT_ENCRYPTION_KEY"] = keyA
		c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github",
			"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret", "client-secret-in-clear")
		c.env["CREDPORT_ENCRYPTION_KEY"] = keyB + "," + keyA
		c.must("rekey")

		c.env["CREDPORT_ENCRYPTION_KEY"] = keyA
		wantRefused(t, c, `encryption key id(s) "b"`, `loaded keys ("a")`, "CREDPORT_ENCRYPTION_KEY")
		if got := c.query("SELECT CAST(COUNT(*) AS TEXT) FROM integrations"); len(got) != 1 || got[0] != "1" {
			t.Errorf("integrations %v after refused runs, want the one made before", got)
		}

		c.env["CREDPORT_ENCRYPTION_KEY"] = keyB
		s := startServe(t, c)
		client := &http.Client{Timeout: 5 * time.Second}
		waitReady(t, client, s.addr, s.done, s.stderr)
		resp, err := client.Get("http://" + s.addr + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/ready with the new key: %d, want 200", resp.StatusCode)
		}
		s.cancel()
		if err := s.wait(t, 15*time.Second); err != nil {
			t.Fatalf("serve: %v", err)
		}
		rec := keyLog(t, s.stderr.String())
		if rec["msg"] != "encryption keys from CREDPORT_ENCRYPTION_KEY" || rec["key_file"] != nil {
			t.Errorf("key source log %v, want CREDPORT_ENCRYPTION_KEY", rec)
		}
		if ids, _ := rec["key_ids"].([]any); len(ids) != 1 || ids[0] != "b" {
			t.Errorf("key source log names key ids %v, want [b]", rec["key_ids"])
		}
		assertNoLeak(t, "the log", s.stderr.String(), map[string]string{"key a": keyA[2:], "key b": keyB[2:]})
	})
}

// sqliteCLI is a CLI on a fresh SQLite database with no CREDPORT_ENCRYPTION_KEY.
func sqliteCLI(t *testing.T) (c *cli, keyFile string) {
	dbPath := filepath.Join(t.TempDir(), "credport.db")
	emptyDatabase(t, dbPath)
	return &cli{t: t, dbURL: dbPath, store: &sharedStore{t: t}, env: map[string]string{"CREDPORT_DATABASE_URL": dbPath}}, dbPath + ".key"
}

// TestSQLiteMissingKeyFile: a missing key file is made anew only for a database that holds no
// sealed value; otherwise every command refuses, naming the key id the data needs.
func TestSQLiteMissingKeyFile(t *testing.T) {
	t.Run("a database with sealed values", func(t *testing.T) {
		c, keyFile := sqliteCLI(t)
		c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github",
			"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret", "client-secret-in-clear")
		spec, err := store.ReadKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		ring, err := store.ParseKeyring(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, c, "key file "+keyFile+" is missing", `key id(s) "`+ring.PrimaryID()+`"`, "no new key was made")
		if _, err := os.Stat(keyFile); err == nil {
			t.Error("a key file was made beside a database that holds sealed values")
		}
		for _, sealed := range c.query("SELECT client_secret FROM integrations") {
			if id := store.SealedKeyID(sealed); id != ring.PrimaryID() {
				t.Errorf("a client secret is sealed with %q, want only the lost key %q", id, ring.PrimaryID())
			}
		}
	})
	t.Run("a database without sealed values", func(t *testing.T) {
		c, keyFile := sqliteCLI(t)
		c.must("keys", "create", "--env", "dev") // API keys are hashed, not sealed
		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := c.run("migrate")
		if err != nil {
			t.Fatalf("migrate: %v\n%s", err, stderr)
		}
		if w := warnings(t, stderr); len(w) != 1 || w[0]["key_file"] != keyFile {
			t.Errorf("warnings %v, want one about the new key file", w)
		}
		if _, err := store.ReadKeyFile(keyFile); err != nil {
			t.Errorf("no new key file: %v", err)
		}
	})
}

// TestSQLiteKeyFileAndVariable: moving from the key file to CREDPORT_ENCRYPTION_KEY, rotating,
// then starting without the variable is refused (the key file holds only the old key), and says
// which source it used; writing the new key into the key file moves back.
func TestSQLiteKeyFileAndVariable(t *testing.T) {
	c, keyFile := sqliteCLI(t)
	c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github",
		"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret", "client-secret-in-clear")
	fileKey, err := store.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fileRing, err := store.ParseKeyring(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	// To the variable: the key file's key as it is, then a rotation.
	c.env["CREDPORT_ENCRYPTION_KEY"] = fileKey
	_, stderr, err := c.run("integrations", "list", "--env", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if rec := keyLog(t, stderr); rec["msg"] != "encryption keys from CREDPORT_ENCRYPTION_KEY" {
		t.Errorf("with the variable set: %v", rec)
	}
	newKey := "new:" + store.NewKey()
	c.env["CREDPORT_ENCRYPTION_KEY"] = newKey + "," + fileKey
	c.must("rekey")

	delete(c.env, "CREDPORT_ENCRYPTION_KEY")
	wantRefused(t, c, `key id(s) "new"`, "CREDPORT_ENCRYPTION_KEY is unset, so the keys came from the key file "+keyFile)
	_, stderr, _ = c.run("migrate")
	rec := keyLog(t, stderr)
	if rec["key_file"] != keyFile || !strings.Contains(rec["msg"].(string), "CREDPORT_ENCRYPTION_KEY is unset") {
		t.Errorf("without the variable: key source log %v, want the key file %s", rec, keyFile)
	}
	if ids, _ := rec["key_ids"].([]any); len(ids) != 1 || ids[0] != fileRing.PrimaryID() {
		t.Errorf("key ids logged %v, want [%s]", rec["key_ids"], fileRing.PrimaryID())
	}

	// Back to the key file: it holds the new key.
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := c.run("integrations", "list", "--env", "dev"); err != nil {
		t.Fatalf("with the new key in the key file: %v\n%s", err, stderr)
	}
}
