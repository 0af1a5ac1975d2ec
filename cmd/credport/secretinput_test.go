package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// runStdin runs one command of c with stdin as standard input.
func (c *cli) runStdin(stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(c.getenv(), &out, &errOut)
	cmd.SetIn(stdin)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// TestIntegrationSecretsFromFileOrStdin: the client secret and the GitHub App private key can come
// from a file or standard input instead of the command line, and are stored sealed as given.
func TestIntegrationSecretsFromFileOrStdin(t *testing.T) {
	appKey := providertest.AppKey(t)
	pemData := providertest.PKCS1PEM(appKey)
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		c := newCLI(t, b)
		secret := randomString("client-secret-")
		cases := []struct {
			name string
			// args come after --env dev --unique-key NAME --provider github; FILE:x is a file
			// holding x. SECRET in args, stdin and wantSecret stands for a secret of the case's own.
			args  []string
			stdin string
			// wantSecret is the client secret stored; wantAppKey says a private key is stored.
			wantSecret string
			wantAppKey bool
			wantErr    string
			wantExit   int
		}{
			{name: "client secret from a file", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret-file", "FILE:SECRET\n"},
				wantSecret: "SECRET"},
			{name: "client secret from standard input", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret-file", "-"},
				stdin: "SECRET\r\n", wantSecret: "SECRET"},
			{name: "client secret with spaces kept", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret-file", "-"},
				stdin: " SECRET ", wantSecret: " SECRET "},
			{name: "private key from standard input", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "-"},
				stdin: string(pemData), wantAppKey: true},
			{name: "private key from standard input, client secret from a file", args: []string{"--auth-mode", "APP", "--app-id", "1",
				"--private-key-file", "-", "--client-id", "id", "--client-secret-file", "FILE:SECRET\n"},
				stdin: string(pemData), wantAppKey: true, wantSecret: "SECRET"},

			{name: "both secret flags", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret", "x", "--client-secret-file", "-"},
				stdin: "y", wantErr: "not both", wantExit: exitUsage},
			{name: "both from standard input", args: []string{"--auth-mode", "APP", "--app-id", "1", "--private-key-file", "-",
				"--client-id", "id", "--client-secret-file", "-"}, stdin: string(pemData), wantErr: "cannot both read standard input", wantExit: exitUsage},
			{name: "an empty secret", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret-file", "-"},
				stdin: "\n", wantErr: "--client-secret-file -: empty", wantExit: 1},
			{name: "no such file", args: []string{"--auth-mode", "OAUTH2", "--client-id", "id", "--client-secret-file", "/nonexistent/secret"},
				wantErr: "no such file", wantExit: 1},
			{name: "a secret without a client id", args: []string{"--auth-mode", "OAUTH2", "--client-secret-file", "-"},
				stdin: "s", wantErr: "go together", wantExit: 1},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := c.in(t)
				name := fmt.Sprintf("integration-%d", i)
				own := strings.NewReplacer("SECRET", fmt.Sprintf("%s-%d", secret, i))
				args := []string{"integrations", "create", "--env", "dev", "--unique-key", name, "--provider", "github"}
				for _, a := range tc.args {
					if content, ok := strings.CutPrefix(a, "FILE:"); ok {
						a = writeFile(t, "secret", []byte(own.Replace(content)))
					}
					args = append(args, a)
				}
				out, errOut, err := c.runStdin(strings.NewReader(own.Replace(tc.stdin)), args...)
				assertNoLeak(t, "the output", out+errOut, map[string]string{"client secret": secret})
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) || exitCode(err) != tc.wantExit {
						t.Fatalf("error %v (exit %d), want one containing %q (exit %d)", err, exitCode(err), tc.wantErr, tc.wantExit)
					}
					if got := c.query("SELECT unique_key FROM integrations WHERE unique_key = $1", name); len(got) != 0 {
						t.Errorf("integration %s created", name)
					}
					return
				}
				if err != nil {
					t.Fatalf("integrations create: %v\n%s", err, errOut)
				}
				list, err := c.db().ListIntegrations(context.Background(), "dev")
				if err != nil {
					t.Fatal(err)
				}
				var in store.Integration
				for _, l := range list {
					if l.UniqueKey == name {
						in = l
					}
				}
				got, err := c.db().IntegrationClientSecret(context.Background(), in)
				if want := own.Replace(tc.wantSecret); err != nil || got != want {
					t.Errorf("client secret %q, %v; want %q", got, err, want)
				}
				key, err := c.db().AppPrivateKey(context.Background(), in)
				if tc.wantAppKey && (err != nil || !key.Equal(appKey)) {
					t.Errorf("private key: %v, want the one sent", err)
				}
			})
		}
		assertNoLeak(t, "the database", c.stored(), map[string]string{"client secret": secret})
	})
}
