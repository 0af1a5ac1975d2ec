package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
)

// rekeyRun runs the CLI on the SQLite database dbPath with CREDPORT_ENCRYPTION_KEY set to keys.
func rekeyRun(t *testing.T, dbPath, keys string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	env := map[string]string{
		"CREDPORT_DATABASE_URL":   dbPath,
		"CREDPORT_ENCRYPTION_KEY": keys,
		"CREDPORT_LOG_FORMAT":     "text",
	}
	var out, errOut bytes.Buffer
	// Each reading of the clock is a progress interval later: a progress line after every batch.
	a := &app{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errOut, now: steppingClock(rekeyProgressEvery)}
	root := newRoot(a)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// steppingClock is a clock that moves on by step at each reading.
func steppingClock(step time.Duration) func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}

func rekeyOpenStore(t *testing.T, dbPath, keys string) *store.DB {
	t.Helper()
	ring, err := store.ParseKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), store.Config{URL: dbPath, Keys: ring})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func keyID(t *testing.T, key string) string {
	t.Helper()
	ring, err := store.ParseKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return ring.PrimaryID()
}

// rekeyLines are the lines of out that the rekey command writes, without log lines.
func rekeyLines(out string) []string {
	var lines []string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "rekey: ") {
			lines = append(lines, strings.TrimSuffix(line, "\n"))
		}
	}
	return lines
}

func TestRekeyCommand(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "credport.db")
	emptyDatabase(t, dbPath)
	keyA, keyB, keyC := store.NewKey(), store.NewKey(), store.NewKey()
	idA, idB, idC := keyID(t, keyA), keyID(t, keyB), keyID(t, keyC)
	connFailure := func(i int) string {
		return fmt.Sprintf(`rekey: cannot open the credentials of connection row %d (environment "dev", integration "github", connection id "user-%d", key id %q): sealed with an unknown encryption key: %s`,
			i, i-1, idA, idA)
	}
	const clientSecret = "client-secret-in-clear"

	apiKey, _, err := rekeyRun(t, dbPath, keyA, "keys", "create", "--env", "dev")
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	if _, _, err := rekeyRun(t, dbPath, keyA, "integrations", "create", "--env", "dev", "--unique-key", "github",
		"--provider", "github", "--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret", clientSecret); err != nil {
		t.Fatalf("integrations create: %v", err)
	}
	secrets := []string{clientSecret}
	withA := rekeyOpenStore(t, dbPath, keyA)
	integrations, err := withA.ListIntegrations(ctx, "dev")
	if err != nil || len(integrations) != 1 {
		t.Fatalf("list integrations: %v, %v", integrations, err)
	}
	in := integrations[0]
	credentials := map[string]string{}
	for i := range 5 {
		id := fmt.Sprintf("user-%d", i)
		token := fmt.Sprintf("token-in-clear-%d", i)
		credentials[id] = `{"type":"OAUTH2","access_token":"` + token + `"}`
		secrets = append(secrets, token)
		if _, err := withA.UpsertConnection(ctx, store.UpsertConnection{
			EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id, Credentials: json.RawMessage(credentials[id]),
		}); err != nil {
			t.Fatalf("import %s: %v", id, err)
		}
	}
	if err := withA.Close(); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name       string
		keys       string
		args       []string
		wantErr    string
		wantStderr []string
		wantStdout []string
		// then checks the database after the step.
		then func(t *testing.T)
	}{
		{
			name:    "a batch size under 1",
			keys:    keyB + "," + keyA,
			args:    []string{"rekey", "--batch-size", "0"},
			wantErr: "--batch-size 0",
		},
		{
			// Each value is named, the run goes to the end and fails with their count.
			name:    "the new key alone cannot open values the old key sealed",
			keys:    keyB,
			args:    []string{"rekey", "--batch-size", "4"},
			wantErr: "6 values could not be opened",
			wantStderr: []string{
				fmt.Sprintf(`rekey: cannot open the client_secret of integration row 1 (environment "dev", integration "github", key id %q): sealed with an unknown encryption key: %s`, idA, idA),
				"rekey: connections 0/5, integrations 1/1",
				connFailure(1), connFailure(2), connFailure(3), connFailure(4),
				"rekey: connections 4/5, integrations 1/1",
				connFailure(5),
				"rekey: connections 5/5, integrations 1/1",
			},
			wantStdout: []string{"rekey: connections 0 re-sealed, 0 skipped, 5 failed; integrations 0 re-sealed, 0 skipped, 1 failed"},
		},
		{
			name: "new key first, old key after",
			keys: keyB + "," + keyA,
			args: []string{"rekey", "--batch-size", "2"},
			wantStderr: []string{
				"rekey: connections 0/5, integrations 1/1",
				"rekey: connections 2/5, integrations 1/1",
				"rekey: connections 4/5, integrations 1/1",
				"rekey: connections 5/5, integrations 1/1",
			},
			wantStdout: []string{
				"rekey: connections 5 re-sealed, 0 skipped, 0 failed; integrations 1 re-sealed, 0 skipped, 0 failed",
				`rekey: every value is sealed with key "` + idB + `"; the other keys can leave CREDPORT_ENCRYPTION_KEY`,
			},
		},
		{
			name: "again: nothing left",
			keys: keyB + "," + keyA,
			args: []string{"rekey"},
			wantStdout: []string{
				"rekey: connections 0 re-sealed, 0 skipped, 0 failed; integrations 0 re-sealed, 0 skipped, 0 failed",
				`rekey: every value is sealed with key "` + idB + `"; the other keys can leave CREDPORT_ENCRYPTION_KEY`,
			},
			then: func(t *testing.T) {
				withB := rekeyOpenStore(t, dbPath, keyB)
				defer withB.Close()
				for id, want := range credentials {
					got, err := withB.ConnectionCredentials(ctx, in.EnvironmentID, "github", id)
					if err != nil || string(got) != want {
						t.Errorf("with only the new key, %s reads %s, %v; want %s", id, got, err, want)
					}
				}
				if _, err := withB.FindAPIKeyBySecretHash(ctx, store.HashSecret(strings.TrimSpace(apiKey))); err != nil {
					t.Errorf("with only the new key, the API key: %v", err)
				}
			},
		},
		{
			// Rekey opens every value to re-seal it, so this run proves that the new key alone
			// opens them all, the client secret included.
			name: "the new key alone opens everything: rotate again without the old key",
			keys: keyC + "," + keyB,
			args: []string{"rekey", "--batch-size", "10"},
			wantStderr: []string{
				"rekey: connections 0/5, integrations 1/1",
				"rekey: connections 5/5, integrations 1/1",
			},
			wantStdout: []string{
				"rekey: connections 5 re-sealed, 0 skipped, 0 failed; integrations 1 re-sealed, 0 skipped, 0 failed",
				`rekey: every value is sealed with key "` + idC + `"; the other keys can leave CREDPORT_ENCRYPTION_KEY`,
			},
		},
	}
	for _, st := range steps {
		stdout, stderr, err := rekeyRun(t, dbPath, st.keys, st.args...)
		if st.wantErr == "" && err != nil {
			t.Fatalf("%s: %v\n%s", st.name, err, stderr)
		}
		if st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)) {
			t.Fatalf("%s: error %v, want one containing %q", st.name, err, st.wantErr)
		}
		if got := rekeyLines(stderr); fmt.Sprint(got) != fmt.Sprint(st.wantStderr) {
			t.Errorf("%s: stderr lines\n%q\nwant\n%q", st.name, got, st.wantStderr)
		}
		if got := rekeyLines(stdout); fmt.Sprint(got) != fmt.Sprint(st.wantStdout) {
			t.Errorf("%s: stdout lines\n%q\nwant\n%q", st.name, got, st.wantStdout)
		}
		for _, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s: output shows a secret in clear", st.name)
			}
		}
		if st.then != nil {
			st.then(t)
		}
	}
}
