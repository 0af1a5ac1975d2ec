package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

func TestIntegrationsCreate(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		type testCase struct {
			name string
			// before are commands run first; in them and in args, "ENV" stands for the case's
			// own environment.
			before   [][]string
			args     []string // after `integrations create`
			wantErr  string
			wantOut  string
			wantList []string // `integrations list --env ENV` afterwards; nil: ENV does not exist
			secret   string   // a client secret that must not be shown
		}
		create := func(flags ...string) []string {
			return append([]string{"integrations", "create"}, flags...)
		}
		cases := []testCase{
			{name: "without client credentials",
				args:     []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2"},
				wantOut:  "github\tgithub\tOAUTH2\n",
				wantList: []string{"github\tgithub\tOAUTH2\t\t"}},
			{name: "with client credentials",
				args: []string{"--env", "ENV", "--unique-key", "gh-app", "--provider", "github", "--auth-mode", "OAUTH2",
					"--client-id", "the-client-id", "--client-secret", "s3cr3t-client-value"},
				wantOut:  "gh-app\tgithub\tOAUTH2\n",
				wantList: []string{"gh-app\tgithub\tOAUTH2\tthe-client-id\thttps://github.com/login/oauth/access_token"},
				secret:   "s3cr3t-client-value"},
			{name: "auth mode in lower case",
				args:     []string{"--env", "ENV", "--unique-key", "cc", "--provider", "salesforce", "--auth-mode", "oauth2_cc"},
				wantOut:  "cc\tsalesforce\tOAUTH2_CC\n",
				wantList: []string{"cc\tsalesforce\tOAUTH2_CC\t\thttps://login.salesforce.com/services/oauth2/token"}},
			{name: "duplicate unique key",
				before:   [][]string{create("--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")},
				args:     []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2"},
				wantErr:  "already exists",
				wantList: []string{"github\tgithub\tOAUTH2\t\t"}},
			{name: "duplicate unique key, other provider and mode",
				before:   [][]string{create("--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")},
				args:     []string{"--env", "ENV", "--unique-key", "github", "--provider", "gitlab", "--auth-mode", "API_KEY"},
				wantErr:  "already exists",
				wantList: []string{"github\tgithub\tOAUTH2\t\t"}},
			{name: "same unique key in another environment",
				before:   [][]string{create("--env", "ENV-other", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2")},
				args:     []string{"--env", "ENV", "--unique-key", "github", "--provider", "gitlab", "--auth-mode", "API_KEY"},
				wantOut:  "github\tgitlab\tAPI_KEY\n",
				wantList: []string{"github\tgitlab\tAPI_KEY\t\t"}},
			{name: "unknown auth mode",
				args:    []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH3"},
				wantErr: `unknown auth mode "OAUTH3"`},
			{name: "auth mode with spaces",
				args:    []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", " OAUTH2"},
				wantErr: "unknown auth mode"},
			{name: "client id without client secret",
				args: []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2",
					"--client-id", "the-client-id"},
				wantErr: "--client-id and --client-secret go together"},
			{name: "client secret without client id",
				args: []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2",
					"--client-secret", "s3cr3t-client-value"},
				wantErr: "--client-id and --client-secret go together",
				secret:  "s3cr3t-client-value"},
			{name: "missing env",
				args:    []string{"--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2"},
				wantErr: "--env is required"},
			{name: "missing unique key",
				args:    []string{"--env", "ENV", "--provider", "github", "--auth-mode", "OAUTH2"},
				wantErr: "--unique-key is required"},
			{name: "missing provider",
				args:    []string{"--env", "ENV", "--unique-key", "github", "--auth-mode", "OAUTH2"},
				wantErr: "--provider is required"},
			{name: "missing auth mode",
				args:    []string{"--env", "ENV", "--unique-key", "github", "--provider", "github"},
				wantErr: "--auth-mode is required"},
			{name: "positional argument",
				args:    []string{"--env", "ENV", "--unique-key", "github", "--provider", "github", "--auth-mode", "OAUTH2", "extra"},
				wantErr: "extra"},
		}
		// APP needs a GitHub App: TestIntegrationsCreateGitHubApp.
		for _, mode := range []string{"OAUTH1", "OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC", "TBA", "NONE"} {
			key := strings.ToLower(mode)
			cases = append(cases, testCase{name: "auth mode " + mode,
				args:     []string{"--env", "ENV", "--unique-key", key, "--provider", "p", "--auth-mode", mode},
				wantOut:  key + "\tp\t" + mode + "\n",
				wantList: []string{key + "\tp\t" + mode + "\t\t"}})
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				env := fmt.Sprintf("env%d", i)
				expand := func(args []string) []string {
					out := make([]string, len(args))
					for j, a := range args {
						out[j] = strings.ReplaceAll(a, "ENV", env)
					}
					return out
				}
				for _, cmd := range tc.before {
					c.must(expand(cmd)...)
				}
				out, stderr, createErr := c.run(append([]string{"integrations", "create"}, expand(tc.args)...)...)
				if tc.wantErr != "" {
					if createErr == nil || !strings.Contains(createErr.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", createErr, tc.wantErr)
					}
				} else if createErr != nil {
					t.Fatalf("integrations create: %v\n%s", createErr, stderr)
				}
				if out != tc.wantOut {
					t.Errorf("stdout = %q, want %q", out, tc.wantOut)
				}
				list, listErr, err := c.run("integrations", "list", "--env", env)
				if tc.wantList == nil {
					if err == nil {
						t.Errorf("environment %q exists after a refused create: %q", env, list)
					}
				} else {
					if err != nil {
						t.Fatalf("integrations list: %v\n%s", err, listErr)
					}
					if want := integrationsHeader + strings.Join(tc.wantList, "\n") + "\n"; list != want {
						t.Errorf("integrations list:\n%q\nwant\n%q", list, want)
					}
				}
				if tc.secret != "" {
					assertNoLeak(t, "create output", out+stderr+fmt.Sprint(createErr), map[string]string{"client secret": tc.secret})
					assertNoLeak(t, "list output", list+listErr, map[string]string{"client secret": tc.secret})
				}
			})
		}
	})
}

func TestIntegrationsList(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		for _, args := range [][]string{
			{"--env", "dev", "--unique-key", "zeta", "--provider", "github", "--auth-mode", "OAUTH2", "--client-id", "zeta-id", "--client-secret", "zeta-secret-value"},
			{"--env", "dev", "--unique-key", "alpha", "--provider", "stripe", "--auth-mode", "API_KEY"},
			{"--env", "dev", "--unique-key", "mid", "--provider", "salesforce", "--auth-mode", "OAUTH2_CC", "--client-id", "mid-id", "--client-secret", "mid-secret-value"},
			{"--env", "prod", "--unique-key", "other", "--provider", "github", "--auth-mode", "OAUTH1"},
		} {
			c.must(append([]string{"integrations", "create"}, args...)...)
		}
		c.must("keys", "create", "--env", "empty")
		cases := []struct {
			name    string
			args    []string
			want    string
			wantErr string
		}{
			{name: "by unique key, with client ids", args: []string{"--env", "dev"},
				want: "alpha\tstripe\tAPI_KEY\t\t\nmid\tsalesforce\tOAUTH2_CC\tmid-id\thttps://login.salesforce.com/services/oauth2/token\nzeta\tgithub\tOAUTH2\tzeta-id\thttps://github.com/login/oauth/access_token\n"},
			{name: "another environment", args: []string{"--env", "prod"}, want: "other\tgithub\tOAUTH1\t\t\n"},
			{name: "environment without integrations", args: []string{"--env", "empty"}, want: ""},
			{name: "unknown environment", args: []string{"--env", "nope"}, wantErr: "not found"},
			{name: "missing env", wantErr: "--env is required"},
			{name: "positional argument", args: []string{"--env", "dev", "extra"}, wantErr: "extra"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				out, stderr, err := c.run(append([]string{"integrations", "list"}, tc.args...)...)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("integrations list: %v\n%s", err, stderr)
				}
				if out != integrationsHeader+tc.want {
					t.Errorf("stdout:\n%q\nwant\n%q", out, integrationsHeader+tc.want)
				}
				assertNoLeak(t, "list output", out+stderr, map[string]string{
					"zeta client secret": "zeta-secret-value", "mid client secret": "mid-secret-value"})
			})
		}
	})
}

func TestIntegrationClientSecretSealed(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		cases := []struct {
			name      string
			clientID  string
			secret    string
			wantValue bool // a client_secret is stored
		}{
			{name: "with client secret", clientID: randomString("client-id-"), secret: randomString("client-secret-"), wantValue: true},
			{name: "long client secret", clientID: randomString("client-id-"),
				secret: strings.Repeat(randomString("long-secret-"), 40), wantValue: true},
			{name: "without client credentials"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				key := fmt.Sprintf("integration-%d", i)
				args := []string{"integrations", "create", "--env", "dev", "--unique-key", key, "--provider", "github", "--auth-mode", "OAUTH2"}
				if tc.clientID != "" {
					args = append(args, "--client-id", tc.clientID, "--client-secret", tc.secret)
				}
				c.must(args...)
				stored := c.query("SELECT client_secret FROM integrations WHERE unique_key = $1", key)
				if len(stored) != 1 {
					t.Fatalf("%d integrations %q stored, want 1", len(stored), key)
				}
				if !tc.wantValue {
					if stored[0] != "" {
						t.Errorf("client_secret = %q, want none", stored[0])
					}
					return
				}
				if !strings.HasPrefix(stored[0], "v1:test:") {
					t.Errorf("client_secret = %.40q..., want a value sealed with the test key (v1:test:...)", stored[0])
				}
				dump := c.stored()
				if !strings.Contains(dump, tc.clientID) {
					t.Fatalf("the database scan does not find the client id %q: it does not read what is stored", tc.clientID)
				}
				assertNoLeak(t, "the database", dump, map[string]string{"client secret": tc.secret})
			})
		}
	})
}

// integrationsHeader is the header row of `integrations list`.
const integrationsHeader = "UNIQUE_KEY\tPROVIDER\tAUTH_MODE\tCLIENT_ID\tTOKEN_URL\n"
