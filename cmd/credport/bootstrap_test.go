package main

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

var (
	anySecret   = regexp.MustCompile(`cp_[A-Za-z0-9_-]+`)
	curlBody    = regexp.MustCompile(`-d '(\{.*\})'`)
	uniqueKeyIn = regexp.MustCompile(`--unique-key (\S+)`)
)

func TestBootstrap(t *testing.T) {
	cases := []struct {
		name   string
		before func(c *cli)
		env    map[string]string // added to the CLI's environment
		args   []string          // after `bootstrap`
		// sqliteOnly: the case is about the printed URL alone, which no database changes
		sqliteOnly bool
		wantErr    string
		printed    bool
		// when printed: the environment made and the server URL in the curl example
		wantEnv, wantURL string
		wantKeys         int // keys in the database afterwards
	}{
		{name: "empty database", printed: true, wantEnv: "dev", wantURL: "http://127.0.0.1:3003", wantKeys: 1},
		{name: "env and listen flags", args: []string{"--env", "prod", "--listen", "10.1.2.3:8080"},
			printed: true, wantEnv: "prod", wantURL: "http://10.1.2.3:8080", wantKeys: 1},
		{name: "listen address from CREDPORT_LISTEN", sqliteOnly: true, env: map[string]string{"CREDPORT_LISTEN": "127.0.0.1:9999"},
			printed: true, wantEnv: "dev", wantURL: "http://127.0.0.1:9999", wantKeys: 1},
		{name: "listen on every interface, port only", sqliteOnly: true, args: []string{"--listen", ":3003"},
			printed: true, wantEnv: "dev", wantURL: "http://localhost:3003", wantKeys: 1},
		{name: "listen on every IPv4 interface", sqliteOnly: true, env: map[string]string{"CREDPORT_LISTEN": "0.0.0.0:8080"},
			printed: true, wantEnv: "dev", wantURL: "http://localhost:8080", wantKeys: 1},
		{name: "listen on every IPv6 interface", sqliteOnly: true, args: []string{"--listen", "[::]:8080"},
			printed: true, wantEnv: "dev", wantURL: "http://localhost:8080", wantKeys: 1},
		{name: "listen on IPv6 loopback", sqliteOnly: true, args: []string{"--listen", "[::1]:8080"},
			printed: true, wantEnv: "dev", wantURL: "http://[::1]:8080", wantKeys: 1},
		{name: "migrated database without keys", before: func(c *cli) {
			c.must("migrate")
			c.must("integrations", "create", "--env", "dev", "--unique-key", "x", "--provider", "x", "--auth-mode", "NONE")
		}, printed: true, wantEnv: "dev", wantURL: "http://127.0.0.1:3003", wantKeys: 1},
		{name: "empty env", before: func(c *cli) { c.must("migrate") }, args: []string{"--env", ""},
			wantErr: "--env is required", wantKeys: 0},
		{name: "after bootstrap", before: func(c *cli) { c.must("bootstrap", "--env", "first") }, wantKeys: 1},
		{name: "a key exists in another environment", before: func(c *cli) {
			c.must("keys", "create", "--env", "ops")
		}, wantKeys: 1},
		{name: "only a revoked key", before: func(c *cli) {
			c.must("keys", "create", "--env", "ops")
			c.must("keys", "revoke", "--env", "ops", strconv.FormatInt(c.listKeys("ops")[0].id, 10))
		}, wantKeys: 1},
	}
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, tc := range cases {
			if tc.sqliteOnly && b.Name != "sqlite" {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				c := newCLI(t, b)
				for k, v := range tc.env {
					c.env[k] = v
				}
				if tc.before != nil {
					tc.before(c)
				}
				out, stderr, err := c.run(append([]string{"bootstrap"}, tc.args...)...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
				} else if err != nil {
					t.Fatalf("bootstrap: %v\n%s", err, stderr)
				}
				if n := c.countKeys(); n != tc.wantKeys {
					t.Errorf("%d keys after bootstrap, want %d", n, tc.wantKeys)
				}
				if !tc.printed {
					if out != "" {
						t.Errorf("stdout = %q, want nothing", out)
					}
					if tc.wantErr == "" {
						assertBootstrapDone(t, stderr, "dev")
					}
					for _, env := range []string{"dev", ""} {
						if _, _, err := c.run("keys", "list", "--env", env); err == nil {
							t.Errorf("bootstrap made environment %q", env)
						}
					}
					if envs := c.query("SELECT name FROM environments WHERE name NOT IN ('ops', 'first')"); len(envs) != 0 {
						t.Errorf("bootstrap made environments %q", envs)
					}
					return
				}

				secrets := anySecret.FindAllString(out, -1)
				if len(secrets) != 1 {
					t.Fatalf("stdout shows %d secrets, want 1:\n%s", len(secrets), out)
				}
				secret := secrets[0]
				if !strings.Contains(out, "export CREDPORT_API_KEY="+secret+"\n") {
					t.Errorf("stdout does not export the secret as CREDPORT_API_KEY:\n%s", out)
				}
				assertNoLeak(t, "stderr", stderr, map[string]string{"API key secret": secret})

				keys := c.listKeys(tc.wantEnv)
				if len(keys) != 1 || keys[0].name != "bootstrap" || keys[0].scopes != "environment:*" || keys[0].state != "active" {
					t.Errorf("keys of %s: %+v, want one active full-access key named bootstrap", tc.wantEnv, keys)
				}
				if k, err := c.lookupKey(secret); err != nil || k.Environment != tc.wantEnv {
					t.Errorf("the printed secret resolves to %+v, %v; want a key of %s", k, err, tc.wantEnv)
				}

				// The integrations line is a command that works as printed.
				var createLine, curlLines string
				for _, line := range strings.Split(out, "\n") {
					switch {
					case strings.Contains(line, "integrations create"):
						createLine = strings.TrimSpace(line)
					case strings.Contains(line, "curl") || curlLines != "" && strings.TrimSpace(line) != "":
						curlLines += line + "\n"
					}
				}
				if createLine == "" {
					t.Fatalf("no `integrations create` line in:\n%s", out)
				}
				if !strings.Contains(createLine, "--env "+tc.wantEnv+" ") {
					t.Errorf("integrations line %q does not name environment %s", createLine, tc.wantEnv)
				}
				_, cmdline, ok := strings.Cut(createLine, "credport ")
				if !ok {
					t.Fatalf("integrations line %q does not run credport", createLine)
				}
				if got := c.must(strings.Fields(cmdline)...); !strings.HasPrefix(got, "github\t") {
					t.Errorf("the printed integrations command printed %q", got)
				}

				// The curl example posts to the server's address with the exported key, and its body
				// names the integration created above.
				for _, want := range []string{
					"curl ", "-X POST " + tc.wantURL + "/connections ",
					`-H "Authorization: Bearer $CREDPORT_API_KEY"`, "-H 'Content-Type: application/json'",
				} {
					if !strings.Contains(curlLines, want) {
						t.Errorf("curl example lacks %q:\n%s", want, curlLines)
					}
				}
				m := curlBody.FindStringSubmatch(curlLines)
				if m == nil {
					t.Fatalf("curl example has no -d '{...}' body:\n%s", curlLines)
				}
				var body struct {
					ProviderConfigKey string `json:"provider_config_key"`
					Credentials       struct {
						Type string `json:"type"`
					} `json:"credentials"`
				}
				if err := json.Unmarshal([]byte(m[1]), &body); err != nil {
					t.Fatalf("curl body %s: %v", m[1], err)
				}
				uk := uniqueKeyIn.FindStringSubmatch(createLine)
				if uk == nil || body.ProviderConfigKey != uk[1] || body.Credentials.Type != "OAUTH2" ||
					!strings.Contains(createLine, "--auth-mode OAUTH2") {
					t.Errorf("curl body %s does not match the integration %q", m[1], createLine)
				}

				// Once is all: a second run prints nothing and makes no key.
				again, stderr, err := c.run(append([]string{"bootstrap"}, tc.args...)...)
				if err != nil {
					t.Fatalf("second bootstrap: %v\n%s", err, stderr)
				}
				if again != "" {
					t.Errorf("second bootstrap printed %q, want nothing", again)
				}
				assertBootstrapDone(t, stderr, tc.wantEnv)
				if n := c.countKeys(); n != tc.wantKeys {
					t.Errorf("%d keys after a second bootstrap, want %d", n, tc.wantKeys)
				}
			})
		}
	})
}

// assertBootstrapDone checks that a bootstrap that found keys says so on stderr and shows the
// command that makes another key in env.
func assertBootstrapDone(t *testing.T, stderr, env string) {
	t.Helper()
	if !strings.Contains(stderr, "the database has") || !strings.Contains(stderr, "API key(s)") ||
		!strings.Contains(stderr, "credport keys create --env "+env+" ") {
		t.Errorf("bootstrap on a database with keys said %q, want that keys exist and `credport keys create --env %s`", stderr, env)
	}
}
