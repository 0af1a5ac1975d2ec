package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/store"
)

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create, list and revoke API keys"}
	cmd.AddCommand(a.keysCreateCommand(), a.keysListCommand(), a.keysRevokeCommand())
	return cmd
}

func (a *app) keysCreateCommand() *cobra.Command {
	var env, name string
	var scopes []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print its secret (only the secret, on stdout, once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			if len(scopes) == 0 {
				scopes = []string{contract.FullAccess}
			}
			rules, err := contract.LoadRules()
			if err != nil {
				return err
			}
			for _, s := range scopes {
				if !rules.ValidScope(s) {
					return fmt.Errorf("unknown scope %q; known scopes: %s", s, strings.Join(rules.Scopes, ", "))
				}
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				_, secret, err := db.CreateAPIKey(cmd.Context(), env, name, scopes)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(a.stdout, secret)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment (created when new)")
	cmd.Flags().StringVar(&name, "name", "default", "a name to recognise the key by")
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "a scope the key holds (repeatable; default: every scope)")
	return cmd
}

// keyJSON is an API key as `keys list --json` prints it; never its secret.
type keyJSON struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func (a *app) keysListCommand() *cobra.Command {
	var env string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an environment's API keys: id, name, scopes, created, state (never the secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				keys, err := db.ListAPIKeys(cmd.Context(), env)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]keyJSON, len(keys))
					for i, k := range keys {
						out[i] = keyJSON{ID: k.ID, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt.UTC(), RevokedAt: k.RevokedAt}
						if k.RevokedAt != nil {
							t := k.RevokedAt.UTC()
							out[i].RevokedAt = &t
						}
					}
					return printJSON(a.stdout, out)
				}
				rows := make([][]string, len(keys))
				for i, k := range keys {
					state := "active"
					if k.RevokedAt != nil {
						state = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
					}
					rows[i] = []string{strconv.FormatInt(k.ID, 10), k.Name, strings.Join(k.Scopes, ","),
						k.CreatedAt.UTC().Format(time.RFC3339), state}
				}
				return printTable(a.stdout, []string{"ID", "NAME", "SCOPES", "CREATED", "STATE"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")
	return cmd
}

func (a *app) keysRevokeCommand() *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke an API key, by id or by name; a running server refuses it within seconds",
		Long: "Revokes the API key of environment --env with this id, or else the one active key with this\n" +
			"name (as `keys list` shows them). A name several active keys share is refused: give the id.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				id, err := resolveKey(cmd.Context(), db, env, args[0])
				if err != nil {
					return err
				}
				if err := db.RevokeAPIKey(cmd.Context(), env, id); err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stderr, "revoked API key %d of environment %q\n", id, env)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}

// resolveKey is the id of the key of env that ref names: its id, or else its name among the
// active keys.
func resolveKey(ctx context.Context, db *store.DB, env, ref string) (int64, error) {
	keys, err := db.ListAPIKeys(ctx, env)
	if err != nil {
		return 0, err
	}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		for _, k := range keys {
			if k.ID == id {
				return id, nil
			}
		}
	}
	var ids []string
	var found int64
	for _, k := range keys {
		if k.Name == ref && k.RevokedAt == nil {
			ids = append(ids, strconv.FormatInt(k.ID, 10))
			found = k.ID
		}
	}
	switch len(ids) {
	case 0:
		return 0, fmt.Errorf("no API key with id or active key with name %q in environment %q: %w", ref, env, store.ErrNotFound)
	case 1:
		return found, nil
	default:
		return 0, fmt.Errorf("%d active API keys of environment %q are named %q (ids %s): give the id", len(ids), env, ref, strings.Join(ids, ", "))
	}
}
