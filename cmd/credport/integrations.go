package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

func (a *app) integrationsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "integrations", Short: "Create, list, show, update and delete integrations (provider configurations)"}
	cmd.AddCommand(a.integrationsCreateCommand(), a.integrationsListCommand(), a.integrationsShowCommand(),
		a.integrationsUpdateCommand(), a.integrationsDeleteCommand())
	return cmd
}

func (a *app) integrationsCreateCommand() *cobra.Command {
	var in store.NewIntegration
	var keyFile, secretFile string
	// The auth modes an integration may have are the ones openapi.yaml lists.
	rules, rulesErr := contract.LoadRules()
	authModes := []string{"those openapi.yaml lists"}
	if rulesErr == nil {
		authModes = rules.AuthModes
	}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an integration; connections name it by its unique key (provider_config_key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, value string }{
				{"env", in.Environment}, {"unique-key", in.UniqueKey}, {"provider", in.Provider}, {"auth-mode", in.AuthMode},
			} {
				if err := requireFlag(f.name, f.value); err != nil {
					return err
				}
			}
			if rulesErr != nil {
				return rulesErr
			}
			in.AuthMode = strings.ToUpper(in.AuthMode)
			if !slices.Contains(authModes, in.AuthMode) {
				return fmt.Errorf("unknown auth mode %q; one of %s", in.AuthMode, strings.Join(authModes, ", "))
			}
			if err := readClientSecret(cmd, &in, secretFile, keyFile); err != nil {
				return err
			}
			if (in.ClientID == "") != (in.ClientSecret == "") {
				return fmt.Errorf("--client-id and --client-secret go together (the secret inline or from --client-secret-file)")
			}
			if err := readAppKey(cmd, &in, keyFile); err != nil {
				return err
			}
			if err := a.resolveTokenURL(cmd, &in); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				created, err := db.CreateIntegration(cmd.Context(), in)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", created.UniqueKey, created.Provider, created.AuthMode)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&in.Environment, "env", "", "environment (created when new)")
	cmd.Flags().StringVar(&in.UniqueKey, "unique-key", "", "the integration's key, used as provider_config_key")
	cmd.Flags().StringVar(&in.Provider, "provider", "", "provider name, e.g. github")
	cmd.Flags().StringVar(&in.AuthMode, "auth-mode", "", "one of "+strings.Join(authModes, ", "))
	cmd.Flags().StringVar(&in.ClientID, "client-id", "", "OAuth client id")
	cmd.Flags().StringVar(&in.ClientSecret, "client-secret", "", "OAuth client secret (sealed at rest); --client-secret-file keeps it out of ps and shell history")
	cmd.Flags().StringVar(&secretFile, "client-secret-file", "",
		"read the OAuth client secret from this file, - for standard input (one trailing newline is dropped)")
	cmd.Flags().StringVar(&in.AppID, "app-id", "", "APP: the GitHub App's id")
	cmd.Flags().StringVar(&keyFile, "private-key-file", "",
		"APP: PEM file of the GitHub App's RSA private key, PKCS#1 or PKCS#8 (sealed at rest); - for standard input")
	cmd.Flags().StringVar(&in.APIBaseURL, "api-base-url", store.DefaultGitHubAPIBaseURL,
		"APP: the GitHub API; https://HOST/api/v3 for GitHub Enterprise Server")
	cmd.Flags().StringVar(&in.TokenURL, "token-url", "",
		"OAUTH2, OAUTH2_CC: where tokens are refreshed; default from the provider catalog by --provider")
	cmd.Flags().StringVar(&in.TokenAuth, "token-auth", "",
		"OAUTH2, OAUTH2_CC: client authentication at the token URL, body or basic (default body, or the catalog's)")
	cmd.Flags().StringVar(&in.Scopes, "scopes", "", `OAUTH2_CC: space-separated scopes the client credentials grant asks for, e.g. "a b"`)
	return cmd
}

// resolveTokenURL fills in the token URL of an OAuth integration from the provider catalog (the
// built-in one with CREDPORT_PROVIDERS_FILE's entries) when --token-url is not given. An
// integration without one stores imported tokens but never refreshes them, which is said.
func (a *app) resolveTokenURL(cmd *cobra.Command, in *store.NewIntegration) error {
	if in.AuthMode != "OAUTH2" && in.AuthMode != "OAUTH2_CC" {
		for _, name := range []string{"token-url", "token-auth", "scopes"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s is for auth modes OAUTH2 and OAUTH2_CC only", name)
			}
		}
		return nil
	}
	if in.TokenURL == "" {
		catalog, err := provider.Load(a.getenv(provider.ProvidersFileEnv))
		if err != nil {
			return err
		}
		entry, known := catalog[in.Provider]
		refreshes := in.AuthMode == "OAUTH2_CC" || in.ClientID != ""
		switch {
		case known && refreshes && entry.TokenURL != "":
			in.TokenURL = entry.TokenURL
			if in.TokenAuth == "" {
				in.TokenAuth = entry.TokenAuth
			}
		case in.AuthMode == "OAUTH2" && refreshes && known:
			return fmt.Errorf("provider %q has no token URL in the catalog (its auth mode is %s): give --token-url", in.Provider, entry.AuthMode)
		case in.AuthMode == "OAUTH2" && refreshes:
			return fmt.Errorf("provider %q is not in the catalog (%s): give --token-url, or add it to the file %s names",
				in.Provider, strings.Join(catalog.Names(), ", "), provider.ProvidersFileEnv)
		default:
			_, err := fmt.Fprintln(a.stderr, "note: no token URL and client credentials: tokens of this integration are stored but never refreshed")
			return err
		}
	}
	if in.AuthMode == "OAUTH2" && in.ClientID == "" {
		return errors.New("--token-url needs --client-id and --client-secret with auth mode OAUTH2")
	}
	return nil
}

// readAppKey checks the GitHub App flags against the auth mode and reads the private key file.
// The key itself is checked by the store, before anything is written.
func readAppKey(cmd *cobra.Command, in *store.NewIntegration, keyFile string) error {
	if in.AuthMode != "APP" {
		for _, name := range []string{"app-id", "private-key-file", "api-base-url"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s is for auth mode APP only", name)
			}
		}
		in.APIBaseURL = ""
		return nil
	}
	if err := requireFlag("app-id", in.AppID); err != nil {
		return fmt.Errorf("%w with auth mode APP", err)
	}
	if err := requireFlag("private-key-file", keyFile); err != nil {
		return fmt.Errorf("%w with auth mode APP", err)
	}
	data, err := readSecretInput(cmd, keyFile)
	if err != nil {
		return fmt.Errorf("--private-key-file: %w", err)
	}
	if _, err := store.ParseAppPrivateKey(data); err != nil {
		return fmt.Errorf("--private-key-file %s: %w", keyFile, err)
	}
	if _, err := store.NormalizeAPIBaseURL(in.APIBaseURL); err != nil {
		return fmt.Errorf("--api-base-url: %w", err)
	}
	in.PrivateKey = data
	return nil
}

// maxSecretInput bounds what a secret flag reads from a file or standard input.
const maxSecretInput = 1 << 20

// readSecretInput reads a secret from the file path names, or from standard input for "-", so
// that it stays out of the process list and shell history.
func readSecretInput(cmd *cobra.Command, path string) ([]byte, error) {
	r := cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecretInput {
		return nil, fmt.Errorf("more than %d bytes", maxSecretInput)
	}
	return data, nil
}

// readClientSecret reads --client-secret-file into the integration's client secret, without the
// newline that ends a file written by a shell or an editor.
func readClientSecret(cmd *cobra.Command, in *store.NewIntegration, secretFile, keyFile string) error {
	if secretFile == "" {
		return nil
	}
	if cmd.Flags().Changed("client-secret") {
		return usageError("give --client-secret or --client-secret-file, not both")
	}
	if secretFile == "-" && keyFile == "-" {
		return usageError("--client-secret-file and --private-key-file cannot both read standard input")
	}
	data, err := readSecretInput(cmd, secretFile)
	if err != nil {
		return fmt.Errorf("--client-secret-file: %w", err)
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if strings.TrimSpace(secret) == "" {
		return fmt.Errorf("--client-secret-file %s: empty", secretFile)
	}
	in.ClientSecret = secret
	return nil
}

func (a *app) integrationsListCommand() *cobra.Command {
	var env string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an environment's integrations: unique key, provider, auth mode, client id, token URL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				list, err := db.ListIntegrations(cmd.Context(), env)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]integrationJSON, len(list))
					for i, in := range list {
						out[i] = newIntegrationJSON(env, in, -1)
					}
					return printJSON(a.stdout, out)
				}
				rows := make([][]string, len(list))
				for i, in := range list {
					rows[i] = []string{in.UniqueKey, in.Provider, in.AuthMode, in.ClientID, in.TokenURL}
				}
				return printTable(a.stdout, []string{"UNIQUE_KEY", "PROVIDER", "AUTH_MODE", "CLIENT_ID", "TOKEN_URL"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")
	return cmd
}
