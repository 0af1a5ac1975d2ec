package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// exportIntegrations are the integrations both databases of the round trip hold.
var exportIntegrations = [][]string{
	{"--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2", "--client-id", "cid", "--client-secret", "cs",
		"--token-url", "https://github.test/token"},
	{"--unique-key", "stripe", "--provider", "stripe", "--auth-mode", "API_KEY"},
	{"--unique-key", "jira", "--provider", "jira", "--auth-mode", "BASIC"},
	{"--unique-key", "public", "--provider", "public", "--auth-mode", "NONE"},
}

// exportRecords are import bodies of every kind the integrations take, with every optional field.
func exportRecords() []string {
	var recs []string
	for i := range 12 {
		switch i % 4 {
		case 0:
			recs = append(recs, fmt.Sprintf(`{"provider_config_key":"github","connection_id":"gh-%d","credentials":{"type":"OAUTH2",`+
				`"access_token":"gho_%d","refresh_token":"ghr_%d","expires_at":"2030-01-02T03:04:05+02:00"},`+
				`"metadata":{"n":%d,"nested":{"a":[1,2]}},"connection_config":{"region":"eu"},`+
				`"end_user":{"id":"u%d","email":"u%d@example.com","display_name":"User %d"},"tags":{"team":"a"}}`, i, i, i, i, i, i, i))
		case 1:
			recs = append(recs, fmt.Sprintf(`{"provider_config_key":"stripe","connection_id":"sk-%d","credentials":{"type":"API_KEY","apiKey":"sk_live_%d"}}`, i, i))
		case 2:
			recs = append(recs, fmt.Sprintf(`{"provider_config_key":"jira","connection_id":"jira-%d","credentials":{"type":"BASIC","username":"u%d","password":"p\"w<%d>"},"tags":{"env":"prod"}}`, i, i, i))
		default:
			recs = append(recs, fmt.Sprintf(`{"provider_config_key":"public","connection_id":"pub-%d","credentials":{"type":"NONE"},"metadata":{"x":true}}`, i))
		}
	}
	return recs
}

// serveAndImport runs a server on c's database and imports file into environment env of it
// with `credport import`.
func serveAndImport(t *testing.T, c *cli, env, file string) {
	t.Helper()
	key := strings.TrimSpace(c.must("keys", "create", "--env", env, "--name", "import"))
	s := startServe(t, c, "--refresh-interval", "0")
	waitReady(t, &http.Client{Timeout: 5 * time.Second}, s.addr, s.done, s.stderr)
	dir := t.TempDir()
	imp := c.in(t)
	imp.env = map[string]string{"CREDPORT_API_KEY": key}
	if _, stderr, err := imp.run("import", "--url", "http://"+s.addr, "--state", filepath.Join(dir, "state"),
		"--report", filepath.Join(dir, "report.jsonl"), file); err != nil {
		report, _ := os.ReadFile(filepath.Join(dir, "report.jsonl"))
		t.Fatalf("import %s: %v\n%s\n%s", file, err, stderr, report)
	}
	s.cancel()
	if err := s.wait(t, 15*time.Second); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.stderr)
	}
}

// sortedLines are the lines of a file, sorted.
func sortedLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// TestExportRoundTrip: what `credport export` writes from SQLite, `credport import` puts into
// PostgreSQL through a server, and an export of that is the same, line for line once sorted.
func TestExportRoundTrip(t *testing.T) {
	backends := storetest.Backends()
	src, dst := newCLI(t, backends[0]), newCLI(t, backends[1])
	if src.dialect() != store.DialectSQLite || dst.dialect() != store.DialectPostgres {
		t.Fatalf("backends %s, %s: want SQLite, then PostgreSQL", backends[0].Name, backends[1].Name)
	}
	dir := t.TempDir()
	input := filepath.Join(dir, "input.jsonl")
	recs := exportRecords()
	if err := os.WriteFile(input, []byte(strings.Join(recs, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*cli{src, dst} {
		for _, in := range exportIntegrations {
			c.must(append([]string{"integrations", "create", "--env", "dev"}, in...)...)
		}
	}
	// Another environment's connections stay out of an export of dev.
	src.must("integrations", "create", "--env", "other", "--unique-key", "stripe", "--provider", "stripe", "--auth-mode", "API_KEY")
	other := filepath.Join(dir, "other.jsonl")
	if err := os.WriteFile(other, []byte(`{"provider_config_key":"stripe","connection_id":"elsewhere","credentials":{"type":"API_KEY","apiKey":"k"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serveAndImport(t, src, "dev", input)
	serveAndImport(t, src, "other", other)

	first := filepath.Join(dir, "first.jsonl")
	_, stderr, err := src.run("export", "--env", "dev", "--output", first)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf("export: %d connections", len(recs))) {
		t.Errorf("export said %q, want the count %d", stderr, len(recs))
	}
	info, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("export file mode %v, want 0600", perm)
	}
	// Each line is its input record, credentials opened, as an import reads it.
	byID := map[string]map[string]any{}
	for _, line := range sortedLines(t, first) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		byID[rec["connection_id"].(string)] = rec
	}
	if len(byID) != len(recs) {
		t.Fatalf("export wrote %d connections, want %d (those of dev only)", len(byID), len(recs))
	}
	for _, r := range recs {
		var want map[string]any
		if err := json.Unmarshal([]byte(r), &want); err != nil {
			t.Fatal(err)
		}
		got := byID[want["connection_id"].(string)]
		if creds, _ := want["credentials"].(map[string]any); creds["expires_at"] != nil {
			creds["expires_at"] = "2030-01-02T01:04:05Z" // stored in UTC
		}
		if tags, _ := want["tags"].(map[string]any); want["end_user"] != nil { // the end user's tags join the tags
			eu := want["end_user"].(map[string]any)
			tags["end_user_id"], tags["end_user_email"], tags["end_user_display_name"] = eu["id"], eu["email"], eu["display_name"]
		}
		wantJSON, _ := json.Marshal(want)
		gotJSON, _ := json.Marshal(got)
		if string(wantJSON) != string(gotJSON) {
			t.Errorf("exported\n%s\nwant\n%s", gotJSON, wantJSON)
		}
	}

	serveAndImport(t, dst, "dev", first)
	second := filepath.Join(dir, "second.jsonl")
	dst.must("export", "--env", "dev", "--output", second)
	if a, b := sortedLines(t, first), sortedLines(t, second); !slices.Equal(a, b) {
		t.Errorf("the export of the import of an export differs:\n%s\nthen\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}

	// Without --env, every environment, to standard output.
	all := src.must("export")
	if n := strings.Count(all, "\n"); n != len(recs)+1 || !strings.Contains(all, `"connection_id":"elsewhere"`) {
		t.Errorf("export of every environment wrote %d lines, want %d with the other environment's", n, len(recs)+1)
	}
	if _, _, err := src.run("export", "--env", "nope"); err == nil || !strings.Contains(err.Error(), `environment "nope"`) {
		t.Errorf("export of an unknown environment: %v", err)
	}
	help := src.must("export", "--help")
	if !strings.Contains(help, "SECRET IN CLEAR") || !strings.Contains(help, "0600") {
		t.Errorf("export --help does not say that the output holds secrets:\n%s", help)
	}
}
