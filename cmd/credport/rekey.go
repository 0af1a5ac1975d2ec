package main

import (
	"context"
	"errors"
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
			"too. An interrupted run continues where it stopped when run again. A value no key of the list\n" +
			"opens is reported (row, environment, integration, connection id, key id) and left as it is; the\n" +
			"run goes on, and exits non-zero with their count. Once it reports that every value is sealed\n" +
			"with the new key, the old keys can leave the list. Progress shows as a bar on a terminal, as a\n" +
			"line every 5 seconds otherwise.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batchSize < 1 {
				return fmt.Errorf("--batch-size %d: want at least 1", batchSize)
			}
			// Rekey runs with keys missing, so that it re-seals what it can and names what it cannot.
			db, err := a.openStoreKeys(cmd.Context(), a.logger(), false)
			if err != nil {
				return err
			}
			return errors.Join(a.rekey(cmd.Context(), db, batchSize), db.Close())
		},
	}
	cmd.Flags().IntVar(&batchSize, "batch-size", 500, "rows re-sealed per transaction")
	return cmd
}

func (a *app) rekey(ctx context.Context, db *store.DB, batchSize int) error {
	show := newRekeyProgress(a.stderr, a.now)
	p, err := db.Rekey(ctx, batchSize, show.update, func(f store.RekeyFailure) {
		if f.Table == "connections" {
			show.printf("rekey: cannot open the credentials of connection row %d (environment %q, integration %q, connection id %q, key id %q): %v\n",
				f.ID, f.Environment, f.Integration, f.ConnectionID, f.KeyID, f.Err)
		} else {
			show.printf("rekey: cannot open the %s of integration row %d (environment %q, integration %q, key id %q): %v\n",
				f.Column, f.ID, f.Environment, f.Integration, f.KeyID, f.Err)
		}
	})
	show.finish()
	if err != nil {
		fmt.Fprintf(a.stderr, "rekey: stopped after re-sealing %d connections and %d integrations; run rekey again to continue\n",
			p.Connections.Done, p.Integrations.Done)
		return err
	}
	if _, err := fmt.Fprintf(a.stdout, "rekey: connections %d re-sealed, %d skipped, %d failed; integrations %d re-sealed, %d skipped, %d failed\n",
		p.Connections.Done, p.Connections.Skipped, p.Connections.Failed,
		p.Integrations.Done, p.Integrations.Skipped, p.Integrations.Failed); err != nil {
		return err
	}
	if failed := p.Connections.Failed + p.Integrations.Failed; failed > 0 {
		return fmt.Errorf("%d values could not be opened (listed above) and keep their seal; every other value was visited. "+
			"Add the keys they name to CREDPORT_ENCRYPTION_KEY and run rekey again: it visits only what is not yet sealed with %q", failed, p.KeyID)
	}
	if left := p.Connections.Remaining + p.Integrations.Remaining; left > 0 {
		return fmt.Errorf("%d connections and %d integrations are still sealed with another key than %q, written meanwhile by a server "+
			"that seals with it: give every server the new key list, then run rekey again",
			p.Connections.Remaining, p.Integrations.Remaining, p.KeyID)
	}
	_, err = fmt.Fprintf(a.stdout, "rekey: every value is sealed with key %q; the other keys can leave CREDPORT_ENCRYPTION_KEY\n", p.KeyID)
	return err
}
