package main

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/credport/credport/store"
)

func (a *app) environmentsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "environments", Short: "List environments"}
	cmd.AddCommand(a.environmentsListCommand())
	return cmd
}

// environmentJSON is an environment as `environments list --json` prints it.
type environmentJSON struct {
	Name         string    `json:"name"`
	Keys         int64     `json:"keys"`
	RevokedKeys  int64     `json:"revoked_keys"`
	Integrations int64     `json:"integrations"`
	Connections  int64     `json:"connections"`
	CreatedAt    time.Time `json:"created_at"`
}

func (a *app) environmentsListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List environments with their counts of active API keys, integrations and connections",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				envs, err := db.ListEnvironments(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]environmentJSON, len(envs))
					for i, e := range envs {
						out[i] = environmentJSON{Name: e.Name, Keys: e.Keys, RevokedKeys: e.RevokedKeys, Integrations: e.Integrations,
							Connections: e.Connections, CreatedAt: e.CreatedAt.UTC()}
					}
					return printJSON(a.stdout, out)
				}
				rows := make([][]string, len(envs))
				for i, e := range envs {
					rows[i] = []string{e.Name, strconv.FormatInt(e.Keys, 10), strconv.FormatInt(e.Integrations, 10),
						strconv.FormatInt(e.Connections, 10), e.CreatedAt.UTC().Format(time.RFC3339)}
				}
				return printTable(a.stdout, []string{"NAME", "KEYS", "INTEGRATIONS", "CONNECTIONS", "CREATED"}, rows)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")
	return cmd
}
