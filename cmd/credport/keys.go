package main

import (
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

func (a *app) keysListCommand() *cobra.Command {
	var env string
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
				for _, k := range keys {
					state := "active"
					if k.RevokedAt != nil {
						state = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
					}
					if _, err := fmt.Fprintf(a.stdout, "%d\t%s\t%s\t%s\t%s\n", k.ID, k.Name,
						strings.Join(k.Scopes, ","), k.CreatedAt.UTC().Format(time.RFC3339), state); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}

func (a *app) keysRevokeCommand() *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; a running server refuses it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("env", env); err != nil {
				return err
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("key id %q is not a number", args[0])
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				return db.RevokeAPIKey(cmd.Context(), env, id)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}
