package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGitignore: the files credport makes in a work tree (the SQLite database and its key, -wal
// and -shm files, the import's state file and failure report at their default paths) are ignored.
func TestGitignore(t *testing.T) {
	root := newRootCommand(func(string) string { return "" }, nil, nil)
	imp, _, err := root.Find([]string{"import"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"credport.db", "credport.db.key", "credport.db-wal", "credport.db-shm", "credport.db.bak", "data/credport.db"}
	for _, flag := range []string{"state", "report"} {
		f := imp.Flags().Lookup(flag)
		if f == nil {
			t.Fatalf("import has no --%s", flag)
		}
		paths = append(paths, f.DefValue)
	}
	for _, p := range paths {
		out, err := exec.Command("git", "-C", "../..", "check-ignore", "--no-index", "-v", p).CombinedOutput()
		if err != nil {
			t.Errorf("%s is not ignored: %v %s", p, err, strings.TrimSpace(string(out)))
		}
	}
}
