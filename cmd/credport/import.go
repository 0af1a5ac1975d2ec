package main

import (
	"errors"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/credport/credport/contract"
	bulk "github.com/credport/credport/importer"
)

// exitStopped: the import gave up (key refused, server unreachable); the state is saved.
const exitStopped = 3

const defaultImportURL = "http://127.0.0.1:3003"

func (a *app) importCommand() *cobra.Command {
	o := bulk.Options{ProgressEvery: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "import [flags] FILE...",
		Short: "Import connections in bulk from JSON Lines or CSV files (- reads standard input)",
		Long: `Import connections in bulk: the records of every FILE go to POST /connections/batch,
--batch-size at a time (1: one POST /connections per record; a server without the batch
endpoint gets one POST /connections per record too). A file compressed with gzip is read as
what it holds.

JSON Lines: each line is one request body. CSV: a header row naming provider_config_key,
connection_id, type, the credential fields, end_user.id|email|display_name, and
metadata.<key>, tags.<key> or connection_config.<key> columns (a metadata or connection_config
column may hold a JSON object). An empty cell leaves its field out, except BASIC's username
and password.

The report holds each failed record with its file, line and error; once its records are fixed,
the report is an input of its own: credport import REPORT.

Exit status: 0 all imported (with --dry-run: all valid); 1 some records failed or were invalid
(see the report); 2 usage error or unreadable input; 3 stopped early because the server refused
the API key (401/403) or did not answer for --max-unreachable, state saved (fix the cause, then
run the same command with --resume); 130 interrupted, state saved.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("name at least one file, or - for standard input")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.bindEnv(cmd, "key", "url"); err != nil {
				return withExitCode(exitUsage, err)
			}
			v, err := contract.NewImportValidator()
			if err != nil {
				return err
			}
			o.Files, o.Validator, o.Stdin, o.Stderr = args, v, cmd.InOrStdin(), a.stderr
			f, ok := a.stderr.(*os.File)
			o.Terminal = ok && isatty.IsTerminal(f.Fd())
			sum, err := bulk.Run(cmd.Context(), o)
			if !errors.Is(err, bulk.ErrUsage) || sum.Elapsed > 0 { // a run that got under way
				_, _ = a.stdout.Write([]byte(sum.String() + "\n"))
			}
			return withExitCode(importExitCode(err), err)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExitCode(exitUsage, err) })
	hideInheritedFlags(cmd, "database")
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", defaultImportURL, "the credport server's base URL (env CREDPORT_URL)")
	f.StringVar(&o.Key, "key", "", "API key with environment:connections:create (env CREDPORT_API_KEY)")
	f.StringVar(&o.Format, "format", "", "jsonl or csv (default: from the extension, else the first non-blank character)")
	f.IntVar(&o.Concurrency, "concurrency", 8, "requests in flight at once")
	f.IntVar(&o.BatchSize, "batch-size", bulk.DefaultBatchSize, "records per request to POST /connections/batch, at most 1000; 1 sends each alone to POST /connections")
	f.IntVar(&o.MaxRetries, "max-retries", 5, "retries of a record after a network error, 429 or 5xx")
	f.DurationVar(&o.MaxUnreachable, "max-unreachable", bulk.DefaultMaxUnreachable, "stop when the server has not answered for this long; --resume goes on")
	f.StringVar(&o.Report, "report", "credport-import-failed.jsonl", "where failed records are reported, one JSON object a line, each with its record")
	f.StringVar(&o.State, "state", ".credport-import.state", "the state file that --resume reads")
	f.BoolVar(&o.Resume, "resume", false, "skip the records a previous run finished; append to the report (not with -)")
	f.BoolVar(&o.DryRun, "dry-run", false, "validate every record against the API's schema; send nothing")
	f.BoolVar(&o.NoWebhooks, "no-webhooks", false, "send no creation or override auth webhook for this run's imports (bulk migrations)")
	return cmd
}

// importExitCode is the exit status for what bulk.Run returned.
func importExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, bulk.ErrUsage):
		return exitUsage
	case errors.Is(err, bulk.ErrStopped):
		return exitStopped
	case errors.Is(err, bulk.ErrInterrupted):
		return exitInterrupted
	}
	return 1
}

// hideInheritedFlags leaves the named persistent flags of the root out of cmd's help, where
// they mean nothing.
func hideInheritedFlags(cmd *cobra.Command, names ...string) {
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		for _, name := range names {
			if f := c.Root().PersistentFlags().Lookup(name); f != nil && !f.Hidden {
				f.Hidden = true
				defer func() { f.Hidden = false }()
			}
		}
		c.Root().HelpFunc()(c, args)
	})
}
