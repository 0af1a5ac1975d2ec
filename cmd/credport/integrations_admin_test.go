package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// addConnections stores n connections of integration key of env, as imports do.
func (c *cli) addConnections(env, key string, n int) {
	c.t.Helper()
	ctx := context.Background()
	envID, err := c.db().EnvironmentID(ctx, env)
	if err != nil {
		c.t.Fatal(err)
	}
	in, err := c.db().FindIntegration(ctx, envID, key)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range n {
		if _, err := c.db().UpsertConnection(ctx, store.UpsertConnection{EnvironmentID: envID, Integration: in,
			ConnectionID: fmt.Sprintf("%s-%d", key, i), Credentials: json.RawMessage(`{"type":"API_KEY","apiKey":"k"}`)}); err != nil {
			c.t.Fatal(err)
		}
	}
}

func TestIntegrationsUpdate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		const secret = "update-client-secret-value"
		secretFile := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The quick start's integration: no client credentials, so no token URL.
		c.must("integrations", "create", "--env", "dev", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")
		c.must("integrations", "create", "--env", "dev", "--unique-key", "stripe", "--provider", "stripe", "--auth-mode", "API_KEY")
		c.must("integrations", "create", "--env", "dev", "--unique-key", "busy", "--provider", "stripe", "--auth-mode", "API_KEY")
		c.addConnections("dev", "busy", 2)

		// The steps run in order on one database.
		steps := []struct {
			name    string
			args    []string // after `integrations update`
			wantErr string
			want    map[string]any // fields of `integrations show --json` afterwards (of the last key in args)
			show    string
		}{
			{name: "client credentials take the catalog's token URL", show: "github",
				args: []string{"github", "--env", "dev", "--client-id", "cid", "--client-secret-file", secretFile},
				want: map[string]any{"client_id": "cid", "has_client_secret": true, "token_url": "https://github.com/login/oauth/access_token"}},
			{name: "token URL", show: "github", args: []string{"github", "--env", "dev", "--token-url", "https://auth.example.test/token", "--token-auth", "basic"},
				want: map[string]any{"client_id": "cid", "token_url": "https://auth.example.test/token", "token_auth": "basic"}},
			{name: "nothing to change", args: []string{"github", "--env", "dev"}, wantErr: "nothing to change"},
			{name: "the auth mode cannot change", args: []string{"github", "--env", "dev", "--auth-mode", "API_KEY"}, wantErr: "cannot change"},
			{name: "the current auth mode is accepted", show: "github", args: []string{"github", "--env", "dev", "--auth-mode", "oauth2", "--scopes", ""},
				want: map[string]any{"auth_mode": "OAUTH2"}},
			{name: "the provider cannot change", args: []string{"github", "--env", "dev", "--provider", "gitlab"}, wantErr: "cannot change"},
			{name: "app flags on an OAuth integration", args: []string{"github", "--env", "dev", "--app-id", "1"}, wantErr: "APP only"},
			{name: "token flags on an API key integration", args: []string{"stripe", "--env", "dev", "--token-url", "https://x.test"},
				wantErr: "OAUTH2 and OAUTH2_CC only"},
			{name: "client id without a secret", args: []string{"stripe", "--env", "dev", "--client-id", "x"}, wantErr: "go together"},
			{name: "rename", show: "payments", args: []string{"stripe", "--env", "dev", "--unique-key", "payments"},
				want: map[string]any{"unique_key": "payments", "provider": "stripe", "connections": float64(0)}},
			{name: "rename with connections", args: []string{"busy", "--env", "dev", "--unique-key", "idle"}, wantErr: "connections"},
			{name: "rename onto another", args: []string{"payments", "--env", "dev", "--unique-key", "github"}, wantErr: `integration "github": already exists`},
			{name: "unknown integration", args: []string{"nope", "--env", "dev", "--client-id", "x", "--client-secret", "y"}, wantErr: "not found"},
			{name: "unknown environment", args: []string{"github", "--env", "nope", "--client-id", "x", "--client-secret", "y"}, wantErr: "not found"},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				c := c.in(t)
				out, stderr, err := c.run(append([]string{"integrations", "update"}, st.args...)...)
				if st.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), st.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, st.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("integrations update: %v\n%s", err, stderr)
				}
				if !strings.Contains(out, "unique key:") {
					t.Errorf("update printed %q, want the integration", out)
				}
				var got map[string]any
				if err := json.Unmarshal([]byte(c.must("integrations", "show", "--env", "dev", st.show, "--json")), &got); err != nil {
					t.Fatal(err)
				}
				for k, v := range st.want {
					if got[k] != v {
						t.Errorf("%s = %v, want %v (%v)", k, got[k], v, got)
					}
				}
				assertNoLeak(t, "update output", out+stderr, map[string]string{"client secret": secret})
			})
		}
		// The secret is sealed, and the server's store opens it.
		assertNoLeak(t, "the database", c.stored(), map[string]string{"client secret": secret})
		envID, err := c.db().EnvironmentID(context.Background(), "dev")
		if err != nil {
			t.Fatal(err)
		}
		in, err := c.db().FindIntegration(context.Background(), envID, "github")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.db().IntegrationClientSecret(context.Background(), in); err != nil || got != secret {
			t.Errorf("client secret %q (%v), want the file's without its newline", got, err)
		}
	})
}

func TestIntegrationsShow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2",
			"--client-id", "cid", "--client-secret", "show-secret-value")
		c.addConnections("dev", "gh", 3)
		out := c.must("integrations", "show", "--env", "dev", "gh")
		for _, want := range []string{"unique key:    gh\n", "auth mode:     OAUTH2\n", "client id:     cid\n",
			"client secret: set (sealed)\n", "token url:     https://github.com/login/oauth/access_token\n", "connections:   3\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("show printed\n%s\nwant a line %q", out, want)
			}
		}
		assertNoLeak(t, "show output", out+c.must("integrations", "show", "--env", "dev", "gh", "--json"),
			map[string]string{"client secret": "show-secret-value"})
		for _, args := range [][]string{{"--env", "dev", "nope"}, {"--env", "nope", "gh"}} {
			if _, _, err := c.run(append([]string{"integrations", "show"}, args...)...); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("show %v: %v, want not found", args, err)
			}
		}
	})
}

func TestIntegrationsDelete(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		for _, key := range []string{"empty", "busy", "other"} {
			c.must("integrations", "create", "--env", "dev", "--unique-key", key, "--provider", "stripe", "--auth-mode", "API_KEY")
		}
		c.addConnections("dev", "busy", 3)
		c.addConnections("dev", "other", 1)
		connections := func() int {
			return len(c.query("SELECT connection_id FROM connections"))
		}
		steps := []struct {
			name       string
			args       []string // after `integrations delete`
			wantErr    string
			wantStderr string
			left       int // connections left in the database
			terminal   bool
		}{
			{name: "connections refuse a delete", args: []string{"busy", "--env", "dev"},
				wantErr: `integration "busy" of environment "dev" has 3 connections: nothing deleted; --force`, left: 4},
			{name: "--force without --yes off a terminal", args: []string{"busy", "--env", "dev", "--force"},
				wantErr: "add --yes", left: 4, terminal: true},
			{name: "--force --yes", args: []string{"busy", "--env", "dev", "--force", "--yes"},
				wantStderr: `deleted integration "busy" of environment "dev" and its 3 connections`, left: 1},
			{name: "an integration without connections", args: []string{"empty", "--env", "dev"},
				wantStderr: `deleted integration "empty" of environment "dev"`, left: 1},
			{name: "gone", args: []string{"busy", "--env", "dev"}, wantErr: "not found", left: 1},
			{name: "missing env", args: []string{"other"}, wantErr: "--env is required", left: 1},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				if st.terminal && isatty.IsTerminal(os.Stdin.Fd()) {
					t.Skip("standard input is a terminal: the command would ask")
				}
				c := c.in(t)
				_, stderr, err := c.run(append([]string{"integrations", "delete"}, st.args...)...)
				if st.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), st.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, st.wantErr)
					}
				} else if err != nil {
					t.Fatalf("delete: %v\n%s", err, stderr)
				}
				if !strings.Contains(stderr, st.wantStderr) {
					t.Errorf("stderr %q, want %q", stderr, st.wantStderr)
				}
				if n := connections(); n != st.left {
					t.Errorf("%d connections left, want %d", n, st.left)
				}
			})
		}
		list := c.must("integrations", "list", "--env", "dev")
		if list != integrationsHeader+"other\tstripe\tAPI_KEY\t\t\n" {
			t.Errorf("integrations left:\n%s", list)
		}
	})
}

func TestEnvironmentsList(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.must("keys", "create", "--env", "prod")
		c.must("keys", "create", "--env", "prod", "--name", "old")
		c.must("keys", "revoke", "--env", "prod", "old")
		c.must("integrations", "create", "--env", "prod", "--unique-key", "a", "--provider", "stripe", "--auth-mode", "API_KEY")
		c.must("integrations", "create", "--env", "prod", "--unique-key", "b", "--provider", "stripe", "--auth-mode", "API_KEY")
		c.addConnections("prod", "a", 2)
		c.addConnections("prod", "b", 1)
		c.must("integrations", "create", "--env", "dev", "--unique-key", "a", "--provider", "stripe", "--auth-mode", "API_KEY")

		out := c.must("environments", "list")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		want := []string{"NAME\tKEYS\tINTEGRATIONS\tCONNECTIONS\tCREATED", "dev\t0\t1\t0\t", "prod\t1\t2\t3\t"}
		if len(lines) != len(want) {
			t.Fatalf("environments list:\n%s", out)
		}
		for i := range want {
			if !strings.HasPrefix(lines[i], want[i]) {
				t.Errorf("line %d = %q, want it to start %q", i, lines[i], want[i])
			}
		}
		var envs []map[string]any
		if err := json.Unmarshal([]byte(c.must("environments", "list", "--json")), &envs); err != nil {
			t.Fatal(err)
		}
		if len(envs) != 2 || envs[1]["name"] != "prod" || envs[1]["keys"] != float64(1) || envs[1]["revoked_keys"] != float64(1) ||
			envs[1]["integrations"] != float64(2) || envs[1]["connections"] != float64(3) {
			t.Errorf("environments list --json = %v", envs)
		}
	})
}

// TestListJSON: every list command takes --json, an array (empty, not null, when there is
// nothing), with no secret in it.
func TestListJSON(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		secret := strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "ci", "--scope", "environment:connections:create"))
		c.must("integrations", "create", "--env", "dev", "--unique-key", "gh", "--provider", "github", "--auth-mode", "OAUTH2",
			"--client-id", "cid", "--client-secret", "json-client-secret")
		c.must("keys", "create", "--env", "empty")
		cases := []struct {
			args  []string
			check func(t *testing.T, items []map[string]any)
		}{
			{args: []string{"keys", "list", "--env", "dev"}, check: func(t *testing.T, items []map[string]any) {
				if len(items) != 1 || items[0]["name"] != "ci" || items[0]["revoked_at"] != nil || items[0]["id"] == nil {
					t.Errorf("keys = %v", items)
				}
				if scopes, _ := items[0]["scopes"].([]any); len(scopes) != 1 || scopes[0] != "environment:connections:create" {
					t.Errorf("scopes = %v", items[0]["scopes"])
				}
			}},
			{args: []string{"integrations", "list", "--env", "dev"}, check: func(t *testing.T, items []map[string]any) {
				if len(items) != 1 || items[0]["unique_key"] != "gh" || items[0]["client_id"] != "cid" || items[0]["has_client_secret"] != true {
					t.Errorf("integrations = %v", items)
				}
			}},
			{args: []string{"integrations", "list", "--env", "empty"}, check: func(t *testing.T, items []map[string]any) {
				if items == nil || len(items) != 0 {
					t.Errorf("integrations of an empty environment = %v, want []", items)
				}
			}},
		}
		for _, tc := range cases {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				out := c.in(t).must(append(tc.args, "--json")...)
				var items []map[string]any
				if err := json.Unmarshal([]byte(out), &items); err != nil {
					t.Fatalf("%q: %v", out, err)
				}
				tc.check(t, items)
				assertNoLeak(t, "--json output", out, map[string]string{"key secret": secret, "key hash": store.HashSecret(secret),
					"client secret": "json-client-secret"})
			})
		}
	})
}

// TestIntegrationsDeleteConfirm: on a terminal, --force without --yes asks, and deletes only on
// a yes.
func TestIntegrationsDeleteConfirm(t *testing.T) {
	c := newCLI(t, storetest.Backends()[0])
	c.must("integrations", "create", "--env", "dev", "--unique-key", "busy", "--provider", "stripe", "--auth-mode", "API_KEY")
	c.addConnections("dev", "busy", 2)
	for _, tc := range []struct {
		answer  string
		wantErr string
		left    int
	}{
		{answer: "n\n", wantErr: "not confirmed", left: 2},
		{answer: "\n", wantErr: "not confirmed", left: 2},
		{answer: "y\n", left: 0},
	} {
		t.Run(strings.TrimSpace(tc.answer), func(t *testing.T) {
			pt, tty := openPTY(t)
			if _, err := pt.WriteString(tc.answer); err != nil {
				t.Fatal(err)
			}
			go func() { _, _ = io.Copy(io.Discard, pt) }() // the terminal's echo
			var out, errOut bytes.Buffer
			a := &app{getenv: c.getenv(), stdout: &out, stderr: &errOut, now: time.Now, stdin: tty}
			root := newRoot(a)
			root.SetArgs([]string{"integrations", "delete", "busy", "--env", "dev", "--force"})
			err := root.ExecuteContext(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("delete: %v\n%s", err, errOut.String())
			}
			if !strings.Contains(errOut.String(), `Delete integration "busy" of environment "dev" and its 2 connections? [y/N]`) {
				t.Errorf("stderr %q, want the question", errOut.String())
			}
			if n := len(c.query("SELECT connection_id FROM connections")); n != tc.left {
				t.Errorf("%d connections left, want %d", n, tc.left)
			}
		})
	}
}
