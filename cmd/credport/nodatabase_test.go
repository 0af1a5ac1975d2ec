package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// nonCreators are commands that work on an existing database and must never create one.
var nonCreators = [][]string{
	{"keys", "create", "--env", "dev"},
	{"keys", "list", "--env", "dev"},
	{"keys", "revoke", "--env", "dev", "1"},
	{"integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "NONE"},
	{"integrations", "list", "--env", "dev"},
	{"integrations", "show", "--env", "dev", "github"},
	{"integrations", "update", "--env", "dev", "github", "--client-id", "x"},
	{"integrations", "delete", "--env", "dev", "github", "--yes"},
	{"environments", "list"},
	{"rekey"},
	{"export"},
}

// TestOnlyCreatorsCreateDatabase: in a directory without a database, every command but serve,
// bootstrap and migrate refuses, naming the file it looked for and where its path came from, and
// leaves no file behind (neither a database nor a key file).
func TestOnlyCreatorsCreateDatabase(t *testing.T) {
	sources := []struct {
		name    string
		env     func(path string) map[string]string
		flag    func(path string) []string
		wantSrc string
	}{
		{name: "CREDPORT_DATABASE_URL", env: func(p string) map[string]string { return map[string]string{"CREDPORT_DATABASE_URL": p} },
			wantSrc: "from CREDPORT_DATABASE_URL"},
		{name: "--database", flag: func(p string) []string { return []string{"--database", p} }, wantSrc: "from --database"},
		{name: "default", wantSrc: "neither CREDPORT_DATABASE_URL nor --database is set"},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			path := filepath.Join(dir, "credport.db")
			for _, key := range []string{"", storetest.TestKey} { // the key file path and the CREDPORT_ENCRYPTION_KEY path
				env := map[string]string{"CREDPORT_ENCRYPTION_KEY": key}
				if src.env != nil {
					for k, v := range src.env(path) {
						env[k] = v
					}
				}
				c := &cli{t: t, store: &sharedStore{t: t}, env: env}
				for _, args := range nonCreators {
					if src.flag != nil {
						args = append(append([]string{}, args...), src.flag(path)...)
					}
					out, stderr, err := c.run(args...)
					if err == nil || !strings.Contains(err.Error(), "no database at "+path) || !strings.Contains(err.Error(), src.wantSrc) ||
						!strings.Contains(err.Error(), "CREDPORT_DATABASE_URL") {
						t.Errorf("%s: err = %v, want one naming %s and %q", strings.Join(args, " "), err, path, src.wantSrc)
					}
					if out != "" || stderr != "" {
						t.Errorf("%s: printed %q and logged %q, want nothing", strings.Join(args, " "), out, stderr)
					}
					entries, _ := os.ReadDir(dir)
					if len(entries) != 0 {
						t.Fatalf("%s made %v", strings.Join(args, " "), entries)
					}
				}
			}
			// A creator makes the database, after which the others work on it.
			c := &cli{t: t, store: &sharedStore{t: t}, env: map[string]string{}}
			if src.env != nil {
				c.env = src.env(path)
			}
			args := []string{"migrate"}
			if src.flag != nil {
				args = append(args, src.flag(path)...)
			}
			c.must(args...)
			for _, f := range []string{path, path + ".key"} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("migrate did not make %s: %v", f, err)
				}
			}
			args = []string{"keys", "list", "--env", "dev"}
			if src.flag != nil {
				args = append(args, src.flag(path)...)
			}
			if _, _, err := c.run(args...); err == nil || !strings.Contains(err.Error(), `environment "dev"`) {
				t.Errorf("keys list after migrate: %v, want environment not found", err)
			}
		})
	}
}
