package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/credport/credport/store"
)

// app is what every command shares: the environment, the streams and the global flags.
type app struct {
	getenv      func(string) string
	stdout      io.Writer
	stderr      io.Writer
	databaseURL string
	// busyTimeout is the SQLite store's wait for another process's lock; 0 is the store's default.
	busyTimeout time.Duration
	// groupCommitMax is serve's cap on imports committed together; 0 elsewhere (the default).
	groupCommitMax int
	// outboundAllowPrivate lets serve's webhooks go to loopback and private addresses.
	outboundAllowPrivate bool
	// mayCreateDatabase is set by the commands that may create an SQLite database: serve,
	// bootstrap and migrate. Every other command refuses a missing file.
	mayCreateDatabase bool
	// databaseSource says where databaseURL came from, for messages.
	databaseSource string
	// now is the clock progress reports are paced by; tests set their own.
	now func() time.Time
	// stdin, when not nil, is standard input instead of the process's; tests set their own.
	stdin io.Reader
}

func newRootCommand(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	return newRoot(&app{getenv: getenv, stdout: stdout, stderr: stderr, now: time.Now})
}

// newRoot is the command tree of a.
func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "credport",
		Short:         "A self-hosted store for third-party API credentials",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.bindEnv(cmd, "database"); err != nil {
				return err
			}
			a.databaseSource = databaseSource(cmd, a.getenv)
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	if a.stdin != nil {
		root.SetIn(a.stdin)
	}
	root.Version = a.versionString()
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&a.databaseURL, "database", store.DefaultDatabaseURL,
		"database: an SQLite file path or a postgres:// URL (env CREDPORT_DATABASE_URL)")
	root.AddCommand(
		a.serveCommand(),
		a.migrateCommand(),
		a.keysCommand(),
		a.integrationsCommand(),
		a.bootstrapCommand(),
		a.rekeyCommand(),
		a.importCommand(),
		a.versionCommand(),
		a.exportCommand(),
		a.environmentsCommand(),
		a.webhooksCommand(),
	)
	return root
}

// bindEnv gives each named flag the value of its environment variable (named in its usage as
// "(env NAME)") unless the flag was set on the command line.
func (a *app) bindEnv(cmd *cobra.Command, names ...string) error {
	for _, name := range names {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			return fmt.Errorf("no flag --%s", name)
		}
		env := flagEnv(f.Usage)
		if v := a.getenv(env); v != "" && !f.Changed {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	}
	return nil
}

// databaseSource says where the database URL came from: the flag, the variable or the default.
func databaseSource(cmd *cobra.Command, getenv func(string) string) string {
	switch {
	case cmd.Flags().Changed("database"):
		return "from --database"
	case getenv("CREDPORT_DATABASE_URL") != "":
		return "from CREDPORT_DATABASE_URL"
	default:
		return "the default: neither CREDPORT_DATABASE_URL nor --database is set"
	}
}

// flagEnv is the environment variable a flag's usage names, as in "(env CREDPORT_LISTEN)".
func flagEnv(usage string) string {
	_, rest, ok := strings.Cut(usage, "(env ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ")")
	return name
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// logger writes to stderr: text on a terminal, JSON otherwise, unless CREDPORT_LOG_FORMAT says.
func (a *app) logger() *slog.Logger {
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(a.getenv("CREDPORT_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	format := a.getenv("CREDPORT_LOG_FORMAT")
	if format == "" {
		format = "json"
		if f, ok := a.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(a.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(a.stderr, opts))
}

func (a *app) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema up to date, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.mayCreateDatabase = true
			db, err := a.openStore(cmd.Context(), a.logger())
			if err != nil {
				return err
			}
			return db.Close()
		},
	}
}

func requireFlag(name, value string) error {
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}
