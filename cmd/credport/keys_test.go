package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// secretLine is the whole stdout of `keys create`: the secret and a newline.
var secretLine = regexp.MustCompile(`^cp_[A-Za-z0-9_-]{20,}\n$`)

// keyLine is one line of `keys list`.
type keyLine struct {
	id      int64
	name    string
	scopes  string
	created time.Time
	state   string
}

// listKeys runs `keys list --env env` and parses its lines.
func (c *cli) listKeys(env string) []keyLine {
	c.t.Helper()
	out := c.must("keys", "list", "--env", env)
	var keys []keyLine
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "ID\tNAME\tSCOPES\tCREATED\tSTATE" {
		c.t.Fatalf("keys list starts with %q, want the header row", lines[0])
	}
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			c.t.Fatalf("keys list line %q: %d fields, want 5", line, len(f))
		}
		id, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			c.t.Fatalf("keys list line %q does not start with an id: %v", line, err)
		}
		created, err := time.Parse(time.RFC3339, f[3])
		if err != nil {
			c.t.Fatalf("keys list line %q: created: %v", line, err)
		}
		keys = append(keys, keyLine{id: id, name: f[1], scopes: f[2], created: created, state: f[4]})
	}
	return keys
}

// lookupKey finds the live key with this secret, as the server's authentication does.
func (c *cli) lookupKey(secret string) (store.APIKey, error) {
	c.t.Helper()
	return c.db().FindAPIKeyBySecretHash(context.Background(), store.HashSecret(secret))
}

func TestKeysCreate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		c.must("migrate")
		cases := []struct {
			name       string
			args       []string // after `keys create`; "ENV" stands for the case's own environment
			wantErr    string
			wantName   string
			wantScopes string
		}{
			{name: "no scope is full access", args: []string{"--env", "ENV"},
				wantName: "default", wantScopes: "environment:*"},
			{name: "name and scopes", args: []string{"--env", "ENV", "--name", "ci",
				"--scope", "environment:connections:create", "--scope", "environment:connections:read"},
				wantName: "ci", wantScopes: "environment:connections:create,environment:connections:read"},
			{name: "wildcard scope", args: []string{"--scope", "environment:connections:*", "--env", "ENV"},
				wantName: "default", wantScopes: "environment:connections:*"},
			{name: "every read-side scope", args: []string{"--env", "ENV",
				"--scope", "environment:connections:read_credentials", "--scope", "environment:connections:list",
				"--scope", "environment:connections:update", "--scope", "environment:connections:delete"},
				wantName: "default", wantScopes: "environment:connections:read_credentials,environment:connections:list,environment:connections:update,environment:connections:delete"},
			{name: "integrations scopes", args: []string{"--env", "ENV",
				"--scope", "environment:integrations:list", "--scope", "environment:integrations:read",
				"--scope", "environment:integrations:read_credentials", "--scope", "environment:integrations:create",
				"--scope", "environment:integrations:update", "--scope", "environment:integrations:delete"},
				wantName: "default", wantScopes: "environment:integrations:list,environment:integrations:read,environment:integrations:read_credentials," +
					"environment:integrations:create,environment:integrations:update,environment:integrations:delete"},
			{name: "integrations wildcard", args: []string{"--env", "ENV", "--scope", "environment:integrations:*"},
				wantName: "default", wantScopes: "environment:integrations:*"},
			{name: "unknown integrations scope", args: []string{"--env", "ENV", "--scope", "environment:integrations:destroy"},
				wantErr: `unknown scope "environment:integrations:destroy"`},
			{name: "unknown scope", args: []string{"--env", "ENV", "--scope", "environment:connections:destroy"},
				wantErr: `unknown scope "environment:connections:destroy"`},
			{name: "unknown scope among known ones", args: []string{"--env", "ENV",
				"--scope", "environment:connections:create", "--scope", "admin"},
				wantErr: `unknown scope "admin"`},
			{name: "empty scope", args: []string{"--env", "ENV", "--scope", ""}, wantErr: "unknown scope"},
			{name: "missing env", args: []string{"--name", "ci"}, wantErr: "--env is required"},
			{name: "blank env", args: []string{"--env", "  "}, wantErr: "--env is required"},
			{name: "positional argument", args: []string{"--env", "ENV", "extra"}, wantErr: "extra"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				env := fmt.Sprintf("env%d", i)
				args := []string{"keys", "create"}
				for _, a := range tc.args {
					args = append(args, strings.ReplaceAll(a, "ENV", env))
				}
				before := c.countKeys()
				out, stderr, err := c.run(args...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
					if out != "" {
						t.Errorf("stdout = %q, want nothing", out)
					}
					if n := c.countKeys(); n != before {
						t.Errorf("%d keys after a refused create, want %d", n, before)
					}
					if _, _, err := c.run("keys", "list", "--env", env); err == nil {
						t.Errorf("environment %q exists after a refused create", env)
					}
					return
				}
				if err != nil {
					t.Fatalf("keys create: %v\n%s", err, stderr)
				}
				if !secretLine.MatchString(out) {
					t.Fatalf("stdout = %q, want only a secret starting with cp_ on one line", out)
				}
				secret := strings.TrimSpace(out)
				assertNoLeak(t, "stderr", stderr, map[string]string{"API key secret": secret})

				keys := c.listKeys(env)
				if len(keys) != 1 {
					t.Fatalf("keys list --env %s: %d keys, want 1", env, len(keys))
				}
				k := keys[0]
				if k.name != tc.wantName || k.scopes != tc.wantScopes || k.state != "active" {
					t.Errorf("listed %+v, want name %q, scopes %q, active", k, tc.wantName, tc.wantScopes)
				}
				if time.Since(k.created) > time.Minute || time.Until(k.created) > time.Minute {
					t.Errorf("created %v, want about now", k.created)
				}

				got, err := c.lookupKey(secret)
				if err != nil {
					t.Fatalf("the printed secret does not authenticate: %v", err)
				}
				if got.ID != k.id || got.Environment != env || strings.Join(got.Scopes, ",") != tc.wantScopes {
					t.Errorf("secret resolves to %+v, want id %d in %q with %q", got, k.id, env, tc.wantScopes)
				}
			})
		}
	})
}

func TestKeysList(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		var secrets []string
		for _, env := range []string{"dev", "prod", "dev"} {
			secrets = append(secrets, strings.TrimSpace(c.must("keys", "create", "--env", env, "--name", "k-"+env)))
		}
		if secrets[0] == secrets[2] {
			t.Fatal("two keys got the same secret")
		}
		cases := []struct {
			name    string
			args    []string
			wantErr string
			wantIDs int // lines expected
		}{
			{name: "two keys", args: []string{"--env", "dev"}, wantIDs: 2},
			{name: "one key", args: []string{"--env", "prod"}, wantIDs: 1},
			{name: "unknown environment", args: []string{"--env", "nope"}, wantErr: "not found"},
			{name: "missing env", args: nil, wantErr: "--env is required"},
			{name: "positional argument", args: []string{"--env", "dev", "extra"}, wantErr: "extra"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				out, stderr, err := c.run(append([]string{"keys", "list"}, tc.args...)...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("keys list: %v\n%s", err, stderr)
				}
				for i, s := range secrets {
					assertNoLeak(t, "keys list output", out+stderr, map[string]string{
						fmt.Sprintf("secret %d", i): s, fmt.Sprintf("secret hash %d", i): store.HashSecret(s),
					})
				}
				keys := c.listKeys(tc.args[1])
				if len(keys) != tc.wantIDs {
					t.Fatalf("%d keys listed, want %d:\n%s", len(keys), tc.wantIDs, out)
				}
				for i, k := range keys {
					if k.name != "k-"+tc.args[1] {
						t.Errorf("key %d named %q: a key of another environment is listed", k.id, k.name)
					}
					if i > 0 && k.id <= keys[i-1].id {
						t.Errorf("ids %d then %d: want one key a line, oldest first", keys[i-1].id, k.id)
					}
				}
			})
		}
	})
}

func TestKeysRevoke(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		secret := map[string]string{
			"dev1":  strings.TrimSpace(c.must("keys", "create", "--env", "dev")),
			"dev2":  strings.TrimSpace(c.must("keys", "create", "--env", "dev")),
			"dev3":  strings.TrimSpace(c.must("keys", "create", "--env", "dev", "--name", "ci")),
			"prod1": strings.TrimSpace(c.must("keys", "create", "--env", "prod")),
		}
		id := map[string]string{}
		for i, k := range c.listKeys("dev") {
			id[fmt.Sprintf("dev%d", i+1)] = strconv.FormatInt(k.id, 10)
		}
		id["prod1"] = strconv.FormatInt(c.listKeys("prod")[0].id, 10)

		// The cases run in order on one database; revoked says which keys are revoked after each.
		cases := []struct {
			name    string
			args    []string // after `keys revoke`; a key's label stands for its id
			wantErr string
			revoked []string
		}{
			{name: "a name two active keys share", args: []string{"--env", "dev", "default"}, wantErr: `2 active API keys of environment "dev" are named "default"`},
			{name: "revoke", args: []string{"--env", "dev", "dev1"}, revoked: []string{"dev1"}},
			{name: "revoke again", args: []string{"--env", "dev", "dev1"}, revoked: []string{"dev1"}},
			{name: "unknown id", args: []string{"--env", "dev", "999999"}, wantErr: "not found", revoked: []string{"dev1"}},
			{name: "id of another environment", args: []string{"--env", "dev", "prod1"}, wantErr: "not found",
				revoked: []string{"dev1"}},
			{name: "unknown environment", args: []string{"--env", "nope", "dev2"}, wantErr: "not found",
				revoked: []string{"dev1"}},
			{name: "unknown name", args: []string{"--env", "dev", "abc"}, wantErr: `no API key with id or active key with name "abc"`, revoked: []string{"dev1"}},
			{name: "name of another environment's key", args: []string{"--env", "prod", "ci"}, wantErr: "not found", revoked: []string{"dev1"}},
			{name: "by name", args: []string{"--env", "dev", "ci"}, revoked: []string{"dev1", "dev3"}},
			{name: "by name, once revoked", args: []string{"--env", "dev", "ci"}, wantErr: "not found", revoked: []string{"dev1", "dev3"}},
			{name: "missing env", args: []string{"dev2"}, wantErr: "--env is required", revoked: []string{"dev1", "dev3"}},
			{name: "missing id", args: []string{"--env", "dev"}, wantErr: "arg", revoked: []string{"dev1", "dev3"}},
			{name: "revoke in the key's environment", args: []string{"--env", "prod", "prod1"},
				revoked: []string{"dev1", "dev3", "prod1"}},
		}
		var firstRevokedAt string
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				args := []string{"keys", "revoke"}
				for _, a := range tc.args {
					if v, ok := id[a]; ok {
						a = v
					}
					args = append(args, a)
				}
				out, stderr, err := c.run(args...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
				} else if err != nil {
					t.Fatalf("keys revoke: %v\n%s", err, stderr)
				}
				if out != "" {
					t.Errorf("stdout = %q, want nothing", out)
				}
				listed := map[string]string{}
				for _, env := range []string{"dev", "prod"} {
					for _, k := range c.listKeys(env) {
						listed[strconv.FormatInt(k.id, 10)] = k.state
					}
				}
				for label, sec := range secret {
					wantRevoked := inList(tc.revoked, label)
					state := listed[id[label]]
					if wantRevoked != strings.HasPrefix(state, "revoked ") {
						t.Errorf("key %s listed as %q, want revoked=%v", label, state, wantRevoked)
					}
					if wantRevoked {
						at := strings.TrimPrefix(state, "revoked ")
						if _, err := time.Parse(time.RFC3339, at); err != nil {
							t.Errorf("key %s: revoked at %q: %v", label, at, err)
						}
						if label == "dev1" {
							if firstRevokedAt == "" {
								firstRevokedAt = at
							} else if at != firstRevokedAt {
								t.Errorf("revoking again moved revoked_at from %s to %s", firstRevokedAt, at)
							}
						}
					} else if state != "active" {
						t.Errorf("key %s listed as %q, want active", label, state)
					}
					_, err := c.lookupKey(sec)
					if wantRevoked && !errors.Is(err, store.ErrNotFound) {
						t.Errorf("revoked key %s still authenticates (err %v)", label, err)
					}
					if !wantRevoked && err != nil {
						t.Errorf("live key %s does not authenticate: %v", label, err)
					}
				}
			})
		}
	})
}
