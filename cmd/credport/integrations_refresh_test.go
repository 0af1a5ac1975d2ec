package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestIntegrationsCreateTokenRefresh covers the token refresh settings of `integrations create`:
// --token-url, --token-auth and --scopes, the provider catalog that fills them in, and the file
// CREDPORT_PROVIDERS_FILE names.
func TestIntegrationsCreateTokenRefresh(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		dir := t.TempDir()
		providersFile := filepath.Join(dir, "providers.yaml")
		if err := os.WriteFile(providersFile, []byte(`# a GitHub Enterprise Server in place of github.com, and a provider of our own
github:
  token_url: https://ghe.example.test/login/oauth/access_token
acme:
  token_url: https://auth.acme.test/oauth2/token
  token_auth: basic
`), 0o600); err != nil {
			t.Fatal(err)
		}
		badFile := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(badFile, []byte("acme:\n  token_url: https://auth.acme.test/token\n  token_auth: header\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		secret := randomString("client-secret-")
		creds := []string{"--client-id", "the-client-id", "--client-secret", secret}
		type testCase struct {
			name          string
			providersFile string
			args          []string // after `integrations create --env ENV --unique-key k`
			wantErr       string
			wantStderr    string
			// wantList is the integration's line of `integrations list`; "" when the create fails
			// (and the environment must not exist then).
			wantList             string
			wantAuth, wantScopes string // stored token_auth and scopes
		}
		with := func(args ...string) []string { return append(args, creds...) }
		cases := []testCase{
			{name: "token URL, auth and scopes given",
				args:     with("--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "https://auth.custom.test/token", "--token-auth", "basic"),
				wantList: "k\tcustom\tOAUTH2\tthe-client-id\thttps://auth.custom.test/token", wantAuth: "basic"},
			{name: "token URL over the catalog's",
				args:     with("--provider", "google", "--auth-mode", "OAUTH2", "--token-url", "http://127.0.0.1:9/token"),
				wantList: "k\tgoogle\tOAUTH2\tthe-client-id\thttp://127.0.0.1:9/token", wantAuth: "body"},
			{name: "client credentials with scopes",
				args: []string{"--provider", "custom", "--auth-mode", "OAUTH2_CC", "--token-url", "https://auth.custom.test/token",
					"--scopes", "read:a write:b"},
				wantList: "k\tcustom\tOAUTH2_CC\t\thttps://auth.custom.test/token", wantAuth: "body", wantScopes: "read:a write:b"},
			{name: "catalog: google",
				args:     with("--provider", "google", "--auth-mode", "OAUTH2"),
				wantList: "k\tgoogle\tOAUTH2\tthe-client-id\thttps://oauth2.googleapis.com/token", wantAuth: "body"},
			{name: "catalog: notion authenticates with Basic",
				args:     with("--provider", "notion", "--auth-mode", "OAUTH2"),
				wantList: "k\tnotion\tOAUTH2\tthe-client-id\thttps://api.notion.com/v1/oauth/token", wantAuth: "basic"},
			{name: "catalog: --token-auth over the catalog's",
				args:     with("--provider", "zoom", "--auth-mode", "OAUTH2", "--token-auth", "body"),
				wantList: "k\tzoom\tOAUTH2\tthe-client-id\thttps://zoom.us/oauth/token", wantAuth: "body"},
			{name: "catalog: client credentials need no client id on the integration",
				args:     []string{"--provider", "salesforce", "--auth-mode", "OAUTH2_CC", "--scopes", "api"},
				wantList: "k\tsalesforce\tOAUTH2_CC\t\thttps://login.salesforce.com/services/oauth2/token", wantAuth: "body", wantScopes: "api"},
			{name: "catalog: OAUTH2 without client credentials is never refreshed",
				args:       []string{"--provider", "google", "--auth-mode", "OAUTH2"},
				wantStderr: "never refreshed",
				wantList:   "k\tgoogle\tOAUTH2\t\t"},
			{name: "catalog: unknown provider, client credentials",
				args:       []string{"--provider", "custom", "--auth-mode", "OAUTH2_CC"},
				wantStderr: "never refreshed",
				wantList:   "k\tcustom\tOAUTH2_CC\t\t"},
			{name: "providers file replaces an entry", providersFile: providersFile,
				args:     with("--provider", "github", "--auth-mode", "OAUTH2"),
				wantList: "k\tgithub\tOAUTH2\tthe-client-id\thttps://ghe.example.test/login/oauth/access_token", wantAuth: "body"},
			{name: "providers file adds an entry", providersFile: providersFile,
				args:     with("--provider", "acme", "--auth-mode", "OAUTH2"),
				wantList: "k\tacme\tOAUTH2\tthe-client-id\thttps://auth.acme.test/oauth2/token", wantAuth: "basic"},
			{name: "providers file keeps the other entries", providersFile: providersFile,
				args:     with("--provider", "slack", "--auth-mode", "OAUTH2"),
				wantList: "k\tslack\tOAUTH2\tthe-client-id\thttps://slack.com/api/oauth.v2.access", wantAuth: "body"},
			{name: "without the providers file, acme is unknown",
				args:    with("--provider", "acme", "--auth-mode", "OAUTH2"),
				wantErr: `provider "acme" is not in the catalog`},
			{name: "a catalog provider of another auth mode has no token URL",
				args:    with("--provider", "twitter", "--auth-mode", "OAUTH2"),
				wantErr: `provider "twitter" has no token URL in the catalog (its auth mode is OAUTH1)`},
			{name: "bad providers file", providersFile: badFile,
				args:    with("--provider", "github", "--auth-mode", "OAUTH2"),
				wantErr: badFile},
			{name: "missing providers file", providersFile: filepath.Join(dir, "missing.yaml"),
				args:    with("--provider", "github", "--auth-mode", "OAUTH2"),
				wantErr: "missing.yaml"},
			{name: "unknown provider with client credentials and no token URL",
				args:    with("--provider", "custom", "--auth-mode", "OAUTH2"),
				wantErr: "CREDPORT_PROVIDERS_FILE"},
			{name: "token URL on API_KEY",
				args:    []string{"--provider", "openai", "--auth-mode", "API_KEY", "--token-url", "https://auth.custom.test/token"},
				wantErr: "--token-url is for auth modes OAUTH2 and OAUTH2_CC only"},
			{name: "token auth on BASIC",
				args:    []string{"--provider", "jira", "--auth-mode", "BASIC", "--token-auth", "basic"},
				wantErr: "--token-auth is for auth modes OAUTH2 and OAUTH2_CC only"},
			{name: "scopes on OAUTH1",
				args:    []string{"--provider", "twitter", "--auth-mode", "OAUTH1", "--scopes", "a"},
				wantErr: "--scopes is for auth modes OAUTH2 and OAUTH2_CC only"},
			{name: "token URL not http(s)",
				args:    with("--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "ftp://auth.custom.test/token"),
				wantErr: "token URL"},
			{name: "token URL relative",
				args:    with("--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "/token"),
				wantErr: "token URL"},
			{name: "token URL with credentials",
				args:    with("--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "https://u:p@auth.custom.test/token"),
				wantErr: "without credentials"},
			{name: "bad token auth",
				args:    with("--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "https://auth.custom.test/token", "--token-auth", "header"),
				wantErr: `token auth "header"`},
			{name: "bad token auth with the catalog",
				args:    with("--provider", "google", "--auth-mode", "OAUTH2", "--token-auth", "Basic"),
				wantErr: `token auth "Basic"`},
			{name: "token URL for OAUTH2 without client id",
				args:    []string{"--provider", "custom", "--auth-mode", "OAUTH2", "--token-url", "https://auth.custom.test/token"},
				wantErr: "--token-url needs --client-id and --client-secret"},
			{name: "scopes without a token URL",
				args:    []string{"--provider", "custom", "--auth-mode", "OAUTH2_CC", "--scopes", "a"},
				wantErr: "need a token URL"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				env := fmt.Sprintf("refresh%d", i)
				if tc.providersFile != "" {
					env := map[string]string{"CREDPORT_PROVIDERS_FILE": tc.providersFile}
					for k, v := range c.env {
						env[k] = v
					}
					c.env = env
				}
				args := append([]string{"integrations", "create", "--env", env, "--unique-key", "k"}, tc.args...)
				out, stderr, err := c.run(args...)
				leaks := map[string]string{"client secret": secret}
				assertNoLeak(t, "create output", out+stderr+fmt.Sprint(err), leaks)
				list, listErr, listRunErr := c.run("integrations", "list", "--env", env)
				assertNoLeak(t, "list output", list+listErr, leaks)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
					if listRunErr == nil {
						t.Errorf("environment %s exists after a refused create: %q", env, list)
					}
					return
				}
				if err != nil {
					t.Fatalf("integrations create: %v\n%s", err, stderr)
				}
				if out != "k\t"+strings.Join(strings.Split(tc.wantList, "\t")[1:3], "\t")+"\n" {
					t.Errorf("stdout %q", out)
				}
				if tc.wantStderr != "" && !strings.Contains(stderr, tc.wantStderr) {
					t.Errorf("stderr %q, want it to say %q", stderr, tc.wantStderr)
				}
				if tc.wantStderr == "" && strings.Contains(stderr, "never refreshed") {
					t.Errorf("stderr %q says the tokens are never refreshed", stderr)
				}
				if listRunErr != nil {
					t.Fatalf("integrations list: %v\n%s", listRunErr, listErr)
				}
				if list != integrationsHeader+tc.wantList+"\n" {
					t.Errorf("integrations list:\n%q\nwant\n%q", list, integrationsHeader+tc.wantList+"\n")
				}
				stored := c.query(`SELECT COALESCE(i.token_auth, '') || '|' || COALESCE(i.scopes, '')
					FROM integrations i JOIN environments e ON e.id = i.environment_id WHERE e.name = $1`, env)
				if want := tc.wantAuth + "|" + tc.wantScopes; len(stored) != 1 || stored[0] != want {
					t.Errorf("stored token_auth|scopes %q, want %q", stored, want)
				}
			})
		}
		assertNoLeak(t, "the database", c.stored(), map[string]string{"client secret": secret})
	})
}
