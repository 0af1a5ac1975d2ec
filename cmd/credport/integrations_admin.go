package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/credport/credport/store"
)

// integrationJSON is an integration as --json prints it; its secrets only as whether it has them.
type integrationJSON struct {
	Environment     string    `json:"environment"`
	UniqueKey       string    `json:"unique_key"`
	Provider        string    `json:"provider"`
	AuthMode        string    `json:"auth_mode"`
	ClientID        string    `json:"client_id"`
	HasClientSecret bool      `json:"has_client_secret"`
	AppID           string    `json:"app_id"`
	APIBaseURL      string    `json:"api_base_url"`
	HasPrivateKey   bool      `json:"has_private_key"`
	TokenURL        string    `json:"token_url"`
	TokenAuth       string    `json:"token_auth"`
	Scopes          string    `json:"scopes"`
	Connections     *int64    `json:"connections,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// newIntegrationJSON is in as printed; connections < 0 leaves the count out.
func newIntegrationJSON(env string, in store.Integration, connections int64) integrationJSON {
	out := integrationJSON{Environment: env, UniqueKey: in.UniqueKey, Provider: in.Provider, AuthMode: in.AuthMode,
		ClientID: in.ClientID, HasClientSecret: in.HasClientSecret, AppID: in.AppID, APIBaseURL: in.APIBaseURL,
		HasPrivateKey: in.HasPrivateKey, TokenURL: in.TokenURL, TokenAuth: in.TokenAuth, Scopes: in.Scopes,
		CreatedAt: in.CreatedAt.UTC(), UpdatedAt: in.UpdatedAt.UTC()}
	if connections >= 0 {
		out.Connections = &connections
	}
	return out
}

// printIntegration writes one integration as "field: value" lines, or as JSON.
func (a *app) printIntegration(env string, in store.Integration, connections int64, asJSON bool) error {
	v := newIntegrationJSON(env, in, connections)
	if asJSON {
		return printJSON(a.stdout, v)
	}
	set := func(b bool) string {
		if b {
			return "set (sealed)"
		}
		return "not set"
	}
	lines := [][2]string{
		{"environment", env}, {"unique key", in.UniqueKey}, {"provider", in.Provider}, {"auth mode", in.AuthMode},
		{"client id", in.ClientID}, {"client secret", set(in.HasClientSecret)},
	}
	if in.AuthMode == "APP" {
		lines = append(lines, [2]string{"app id", in.AppID}, [2]string{"api base url", in.APIBaseURL},
			[2]string{"private key", set(in.HasPrivateKey)})
	}
	if in.AuthMode == "OAUTH2" || in.AuthMode == "OAUTH2_CC" {
		tokenURL := in.TokenURL
		if tokenURL == "" {
			tokenURL = "none: tokens are stored but never refreshed"
		}
		lines = append(lines, [2]string{"token url", tokenURL}, [2]string{"token auth", in.TokenAuth}, [2]string{"scopes", in.Scopes})
	}
	if connections >= 0 {
		lines = append(lines, [2]string{"connections", fmt.Sprint(connections)})
	}
	lines = append(lines, [2]string{"created", v.CreatedAt.Format(time.RFC3339)}, [2]string{"updated", v.UpdatedAt.Format(time.RFC3339)})
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%-14s %s\n", l[0]+":", l[1])
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

// findIntegration is integration key of environment env, with the environment's id.
func findIntegration(cmd *cobra.Command, db *store.DB, env, key string) (int64, store.Integration, error) {
	envID, err := db.EnvironmentID(cmd.Context(), env)
	if err != nil {
		return 0, store.Integration{}, err
	}
	in, err := db.FindIntegration(cmd.Context(), envID, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, store.Integration{}, fmt.Errorf("integration %q in environment %q: %w", key, env, store.ErrNotFound)
	}
	return envID, in, err
}

func (a *app) integrationsShowCommand() *cobra.Command {
	var env string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show UNIQUE_KEY",
		Short: "Show one integration and its count of connections (its secrets only as set or not)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				envID, in, err := findIntegration(cmd, db, env, args[0])
				if err != nil {
					return err
				}
				n, err := db.CountIntegrationConnections(cmd.Context(), envID, in.UniqueKey)
				if err != nil {
					return err
				}
				return a.printIntegration(env, in, n, asJSON)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, for scripts")
	return cmd
}

func (a *app) integrationsUpdateCommand() *cobra.Command {
	var env, newKey, provider, authMode, clientID, clientSecret, secretFile, appID, keyFile, apiBaseURL string
	var tokenURL, tokenAuth, scopes string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "update UNIQUE_KEY",
		Short: "Change an integration: client credentials, GitHub App, token URL, scopes, or its unique key",
		Long: "Changes what the flags given say and keeps the rest, as PATCH /integrations/{uniqueKey} does.\n" +
			"--unique-key renames the integration, which is refused while it has connections. The provider\n" +
			"and auth mode cannot change (delete the integration and create it again); --provider and\n" +
			"--auth-mode are accepted when they name the current ones. Giving client credentials to an\n" +
			"OAUTH2 integration without a token URL takes the token URL from the provider catalog, as\n" +
			"create does. A running server sees the change within seconds.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			changed := 0
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if f.Name != "env" && f.Name != "json" && f.Name != "database" {
					changed++
				}
			})
			if changed == 0 {
				return usageError("nothing to change: give at least one flag (see --help)")
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				envID, cur, err := findIntegration(cmd, db, env, args[0])
				if err != nil {
					return err
				}
				if cmd.Flags().Changed("provider") && provider != cur.Provider {
					return fmt.Errorf("--provider: integration %q is of provider %q, which cannot change: delete it and create it again", cur.UniqueKey, cur.Provider)
				}
				if cmd.Flags().Changed("auth-mode") && !strings.EqualFold(authMode, cur.AuthMode) {
					return fmt.Errorf("--auth-mode: integration %q has auth mode %s, which cannot change: delete it and create it again", cur.UniqueKey, cur.AuthMode)
				}
				if cmd.Flags().Changed("api-base-url") && apiBaseURL != cur.APIBaseURL {
					return fmt.Errorf("--api-base-url cannot change: delete integration %q and create it again", cur.UniqueKey)
				}
				// What create would be given, for the checks create makes.
				in := store.NewIntegration{Environment: env, UniqueKey: cur.UniqueKey, Provider: cur.Provider, AuthMode: cur.AuthMode,
					ClientID: clientID, ClientSecret: clientSecret, AppID: appID, APIBaseURL: cur.APIBaseURL,
					TokenURL: tokenURL, TokenAuth: tokenAuth, Scopes: scopes}
				up := store.IntegrationUpdate{EnvironmentID: envID, UniqueKey: cur.UniqueKey}
				if err := readClientSecret(cmd, &in, secretFile, keyFile); err != nil {
					return err
				}
				if cmd.Flags().Changed("client-id") || in.ClientSecret != "" {
					if in.ClientID == "" || in.ClientSecret == "" {
						return fmt.Errorf("--client-id and --client-secret go together (the secret inline or from --client-secret-file)")
					}
					up.ClientID, up.ClientSecret = &in.ClientID, &in.ClientSecret
				}
				if cmd.Flags().Changed("app-id") || cmd.Flags().Changed("private-key-file") {
					if err := readAppKey(cmd, &in, keyFile); err != nil {
						return err
					}
					up.AppID, up.PrivateKey = &in.AppID, in.PrivateKey
				}
				if err := a.updateTokenURL(cmd, cur, &in, &up); err != nil {
					return err
				}
				if cmd.Flags().Changed("scopes") {
					up.Scopes = &scopes
				}
				if cmd.Flags().Changed("unique-key") {
					up.NewUniqueKey = &newKey
				}
				updated, err := db.UpdateIntegration(cmd.Context(), up)
				if errors.Is(err, store.ErrHasConnections) {
					return fmt.Errorf("%w: a rename would detach them; delete them first or keep the key", err)
				}
				if err != nil {
					return err
				}
				n, err := db.CountIntegrationConnections(cmd.Context(), envID, updated.UniqueKey)
				if err != nil {
					return err
				}
				return a.printIntegration(env, updated, n, asJSON)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "environment")
	f.StringVar(&newKey, "unique-key", "", "a new unique key (refused while the integration has connections)")
	f.StringVar(&provider, "provider", "", "the current provider (it cannot change)")
	f.StringVar(&authMode, "auth-mode", "", "the current auth mode (it cannot change)")
	f.StringVar(&clientID, "client-id", "", "OAuth client id; with --client-secret or --client-secret-file")
	f.StringVar(&clientSecret, "client-secret", "", "OAuth client secret (sealed at rest); --client-secret-file keeps it out of ps and shell history")
	f.StringVar(&secretFile, "client-secret-file", "",
		"read the OAuth client secret from this file, - for standard input (one trailing newline is dropped)")
	f.StringVar(&appID, "app-id", "", "APP: the GitHub App's id; with --private-key-file")
	f.StringVar(&keyFile, "private-key-file", "", "APP: PEM file of the GitHub App's RSA private key (sealed at rest); - for standard input")
	f.StringVar(&apiBaseURL, "api-base-url", "", "APP: the current GitHub API (it cannot change)")
	f.StringVar(&tokenURL, "token-url", "", `OAUTH2, OAUTH2_CC: where tokens are refreshed; "" stops refreshing`)
	f.StringVar(&tokenAuth, "token-auth", "", "OAUTH2, OAUTH2_CC: client authentication at the token URL, body or basic")
	f.StringVar(&scopes, "scopes", "", `OAUTH2_CC: space-separated scopes; "" clears them`)
	f.BoolVar(&asJSON, "json", false, "print the updated integration as JSON")
	return cmd
}

// updateTokenURL fills in up's token URL and token auth from the flags, or, when client
// credentials come to an OAUTH2 integration that has no token URL, from the provider catalog.
func (a *app) updateTokenURL(cmd *cobra.Command, cur store.Integration, in *store.NewIntegration, up *store.IntegrationUpdate) error {
	oauth := cur.AuthMode == "OAUTH2" || cur.AuthMode == "OAUTH2_CC"
	for _, name := range []string{"token-url", "token-auth", "scopes"} {
		if cmd.Flags().Changed(name) && !oauth {
			return fmt.Errorf("--%s is for auth modes OAUTH2 and OAUTH2_CC only", name)
		}
	}
	if !oauth {
		return nil
	}
	if cmd.Flags().Changed("token-url") {
		up.TokenURL = &in.TokenURL
	}
	if cmd.Flags().Changed("token-auth") {
		up.TokenAuth = &in.TokenAuth
	}
	if up.TokenURL == nil && cur.TokenURL == "" && up.ClientID != nil {
		if err := a.resolveTokenURL(cmd, in); err != nil {
			return err
		}
		if in.TokenURL != "" {
			up.TokenURL = &in.TokenURL
			if in.TokenAuth != "" {
				up.TokenAuth = &in.TokenAuth
			}
		}
	}
	return nil
}

func (a *app) integrationsDeleteCommand() *cobra.Command {
	var env string
	var force, yes bool
	cmd := &cobra.Command{
		Use:   "delete UNIQUE_KEY",
		Short: "Delete an integration; with --force, its connections too",
		Long: "Deletes the integration. While it has connections this is refused, unless --force, which\n" +
			"deletes them with it (their credentials are gone for good), says how many, and asks first:\n" +
			"on a terminal it asks for confirmation, otherwise --yes is needed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			key := args[0]
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				envID, _, err := findIntegration(cmd, db, env, key)
				if err != nil {
					return err
				}
				if !force {
					err := db.DeleteEmptyIntegration(cmd.Context(), envID, key)
					var exist *store.ConnectionsExistError
					if errors.As(err, &exist) {
						return fmt.Errorf("integration %q of environment %q has %d connections: nothing deleted; "+
							"--force deletes them with it (`credport export --env %s` first keeps a copy)", key, env, exist.Count, env)
					}
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(a.stderr, "deleted integration %q of environment %q\n", key, env)
					return err
				}
				n, err := db.CountIntegrationConnections(cmd.Context(), envID, key)
				if err != nil {
					return err
				}
				if n > 0 && !yes {
					if err := a.confirm(cmd, fmt.Sprintf("Delete integration %q of environment %q and its %d connections? [y/N] ", key, env, n)); err != nil {
						return err
					}
				}
				removed, err := db.DeleteIntegration(cmd.Context(), envID, key)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stderr, "deleted integration %q of environment %q and its %d connections\n", key, env, removed)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	cmd.Flags().BoolVar(&force, "force", false, "delete the integration's connections with it")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --force: delete without asking")
	return cmd
}

// confirm asks question on a terminal and is nil on a yes; elsewhere it refuses, asking for --yes.
func (a *app) confirm(cmd *cobra.Command, question string) error {
	f, ok := cmd.InOrStdin().(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return usageError("standard input is not a terminal to confirm on: add --yes to delete the connections")
	}
	if _, err := fmt.Fprint(a.stderr, question); err != nil {
		return err
	}
	var answer string
	_, _ = fmt.Fscanln(f, &answer)
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return errors.New("not confirmed: nothing deleted")
	}
	return nil
}
