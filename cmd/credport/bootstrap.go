package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store"
)

func (a *app) bootstrapCommand() *cobra.Command {
	var env, listen string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "On a database without API keys, create a full-access key and show how to use it",
		Long: "On a database that has no API key yet, creates environment --env with a full-access key,\n" +
			"prints its secret once with ready-to-paste examples, and exits. Otherwise it does nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			a.mayCreateDatabase = true
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				n, err := db.CountAPIKeys(cmd.Context())
				if err != nil {
					return err
				}
				if n > 0 {
					// Standard output stays empty, so that a script that captures the secret gets none.
					_, err = fmt.Fprintf(a.stderr, bootstrapDoneText, n, env)
					return err
				}
				_, secret, err := db.CreateAPIKey(cmd.Context(), env, "bootstrap", []string{contract.FullAccess})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, bootstrapText, env, secret, env, clientBaseURL(listen))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "dev", "environment to create")
	cmd.Flags().StringVar(&listen, "listen", envOr(a.getenv, "CREDPORT_LISTEN", "127.0.0.1:3003"), "address the server will listen on, for the example")
	return cmd
}

// clientBaseURL is the URL by which a client on this machine reaches a server listening on
// listen: an unspecified host (":3003", "0.0.0.0:3003", "[::]:3003") is reached as localhost.
func clientBaseURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// bootstrapDoneText says why bootstrap did nothing and how to make another key.
const bootstrapDoneText = `bootstrap: nothing to do, the database has %d API key(s) (revoked ones included); bootstrap makes the first one only.
Create another key with:

    credport keys create --env %s --name NAME

`

const bootstrapText = `
Created environment %q with a full-access API key. This is the only time its secret is shown:

    export CREDPORT_API_KEY=%s

Create an integration, then import a connection into it:

    ./bin/credport integrations create --env %s --unique-key github --provider github --auth-mode OAUTH2

    curl -sS -X POST %s/connections \
      -H "Authorization: Bearer $CREDPORT_API_KEY" \
      -H 'Content-Type: application/json' \
      -d '{"provider_config_key":"github","connection_id":"user-1","credentials":{"type":"OAUTH2","access_token":"gho_example","refresh_token":"ghr_example"}}'

`
