package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/credport/credport/store"
)

func (a *app) rekeyCommand() *cobra.Command {
	var batchSize int
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Re-seal every stored secret with the first key of CREDPORT_ENCRYPTION_KEY",
		Long: "Re-seals with the first key of CREDPORT_ENCRYPTION_KEY every connection's credentials and\n" +
			"every integration's client secret and GitHub App private key that another key of the list\n" +
			"sealed, in batches, while the server keeps running. Give the servers the new list (new key\n" +
			"first, old keys after) before, so that what they write meanwhile is sealed with the new key\n" +
			"too. An interrupted run continues where it stopped when run again. Once it reports that every\n" +
			"value is sealed with the new key, the old keys can leave the list.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batchSize < 1 {
				return fmt.Errorf("--batch-size %d: want at least 1", batchSize)
			}
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				p, err := db.Rekey(cmd.Context(), batchSize, func(p store.RekeyProgress) {
					fmt.Fprintf(a.stderr, "rekey: connections %d/%d, integrations %d/%d\n",
						p.Connections.Done+p.Connections.Skipped, p.Connections.Total,
						p.Integrations.Done+p.Integrations.Skipped, p.Integrations.Total)
				})
				if err != nil {
					fmt.Fprintf(a.stderr, "rekey: stopped after re-sealing %d connections and %d integrations; run rekey again to continue\n",
						p.Connections.Done, p.Integrations.Done)
					return err
				}
				if _, err := fmt.Fprintf(a.stdout, "rekey: connections %d re-sealed, %d skipped; integrations %d re-sealed, %d skipped\n",
					p.Connections.Done, p.Connections.Skipped, p.Integrations.Done, p.Integrations.Skipped); err != nil {
					return err
				}
				if left := p.Connections.Remaining + p.Integrations.Remaining; left > 0 {
					return fmt.Errorf("%d connections and %d integrations are still sealed with another key than %q, written meanwhile by a server "+
						"that seals with it: give every server the new key list, then run rekey again",
						p.Connections.Remaining, p.Integrations.Remaining, p.KeyID)
				}
				_, err = fmt.Fprintf(a.stdout, "rekey: every value is sealed with key %q; the other keys can leave CREDPORT_ENCRYPTION_KEY\n", p.KeyID)
				return err
			})
		},
	}
	cmd.Flags().IntVar(&batchSize, "batch-size", 500, "rows re-sealed per transaction")
	return cmd
}
