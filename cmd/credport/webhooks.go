package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/credport/credport/store"
	"github.com/credport/credport/webhook"
)

// outboundAllowPrivateEnv lets webhooks go to loopback and private addresses.
const outboundAllowPrivateEnv = "CREDPORT_OUTBOUND_ALLOW_PRIVATE"

// outboundFlag adds --outbound-allow-private to serve.
func (a *app) outboundFlag(f *pflag.FlagSet) {
	f.BoolVar(&a.outboundAllowPrivate, "outbound-allow-private", false,
		"let webhooks go to loopback and private addresses, never link-local ones (env "+outboundAllowPrivateEnv+")")
}

// allowPrivateFromEnv is CREDPORT_OUTBOUND_ALLOW_PRIVATE, for the commands that have no flag.
func (a *app) allowPrivateFromEnv() (bool, error) {
	v := a.getenv(outboundAllowPrivateEnv)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: %w", outboundAllowPrivateEnv, v, err)
	}
	return b, nil
}

// userAgent names credport and its version in outbound requests.
func (a *app) userAgent() string {
	v := strings.TrimPrefix(a.versionString(), "credport ")
	v, _, _ = strings.Cut(v, ",")
	return "credport/" + v
}

func (a *app) webhooksCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "webhooks", Short: "Set and inspect an environment's auth webhooks"}
	cmd.AddCommand(a.webhooksSetCommand(), a.webhooksShowCommand(), a.webhooksRotateCommand(),
		a.webhooksDeliveriesCommand(), a.webhooksRedeliverCommand())
	return cmd
}

// withEnvironment runs fn with the store and the id of environment env, which must exist.
func (a *app) withEnvironment(ctx context.Context, env string, fn func(db *store.DB, envID int64) error) error {
	if err := requireFlag("env", env); err != nil {
		return err
	}
	return a.withStore(ctx, func(db *store.DB) error {
		id, err := db.EnvironmentID(ctx, env)
		if err != nil {
			return err
		}
		return fn(db, id)
	})
}

func (a *app) webhooksSetCommand() *cobra.Command {
	var env, primary, secondary string
	var onCreation, onRefreshError bool
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set where an environment's auth webhooks go and which are sent; the first set prints the new signing key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			allow, err := a.allowPrivateFromEnv()
			if err != nil {
				return err
			}
			var ch store.WebhookSettingsChange
			for _, u := range []struct {
				flag  string
				value *string
				dest  **string
			}{{"url", &primary, &ch.PrimaryURL}, {"secondary-url", &secondary, &ch.SecondaryURL}} {
				if !cmd.Flags().Changed(u.flag) {
					continue
				}
				if err := webhook.ValidateURL(ctx, *u.value, allow, nil); err != nil {
					return fmt.Errorf("--%s: %w", u.flag, err)
				}
				*u.dest = u.value
			}
			if cmd.Flags().Changed("on-auth-creation") {
				ch.OnAuthCreation = &onCreation
			}
			if cmd.Flags().Changed("on-auth-refresh-error") {
				ch.OnAuthRefreshError = &onRefreshError
			}
			return a.withEnvironment(ctx, env, func(db *store.DB, envID int64) error {
				s, key, err := db.SetWebhookSettings(ctx, envID, ch)
				if err != nil {
					return err
				}
				if err := a.printWebhookSettings(env, s); err != nil {
					return err
				}
				if key != "" {
					_, err = fmt.Fprintf(a.stdout, "New signing key (shown once; verify X-Nango-Hmac-Sha256 with it):\n%s\n", key)
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "environment")
	f.StringVar(&primary, "url", "", `where every auth webhook is sent; "" clears it`)
	f.StringVar(&secondary, "secondary-url", "", `a second URL that also receives every auth webhook; "" clears it`)
	f.BoolVar(&onCreation, "on-auth-creation", true, "send a webhook when an import creates a connection")
	f.BoolVar(&onRefreshError, "on-auth-refresh-error", true, "send a webhook when a provider refuses a token refresh")
	return cmd
}

func (a *app) printWebhookSettings(env string, s store.WebhookSettings) error {
	rows := [][]string{
		{"environment", env}, {"url", s.PrimaryURL}, {"secondary_url", s.SecondaryURL},
		{"on_auth_creation", strconv.FormatBool(s.OnAuthCreation)},
		{"on_auth_refresh_error", strconv.FormatBool(s.OnAuthRefreshError)},
		{"updated_at", s.UpdatedAt.Format(time.RFC3339)},
	}
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(r[0] + "\t" + r[1] + "\n")
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

func (a *app) webhooksShowCommand() *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print an environment's webhook settings (never the signing key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withEnvironment(cmd.Context(), env, func(db *store.DB, envID int64) error {
				s, err := db.WebhookSettings(cmd.Context(), envID)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("environment %q has no webhook settings: credport webhooks set --env %s --url URL", env, env)
				}
				if err != nil {
					return err
				}
				return a.printWebhookSettings(env, s)
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}

func (a *app) webhooksRotateCommand() *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "rotate-signing-key",
		Short: "Replace an environment's webhook signing key and print the new one once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withEnvironment(cmd.Context(), env, func(db *store.DB, envID int64) error {
				key, err := db.RotateWebhookKey(cmd.Context(), envID)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("environment %q has no webhook settings: credport webhooks set --env %s --url URL", env, env)
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "New signing key (shown once; undelivered webhooks are signed with it):\n%s\n", key)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}

func (a *app) webhooksDeliveriesCommand() *cobra.Command {
	var env, status string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "List an environment's recent webhooks, newest first, with their attempts and last answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch status {
			case "", store.WebhookPending, store.WebhookFailed, store.WebhookDelivered:
			default:
				return fmt.Errorf("--status %q: one of pending, failed, delivered", status)
			}
			if limit < 1 || limit > 1000 {
				return errors.New("--limit must be between 1 and 1000")
			}
			return a.withEnvironment(cmd.Context(), env, func(db *store.DB, envID int64) error {
				list, err := db.ListWebhookDeliveries(cmd.Context(), envID, status, limit)
				if err != nil {
					return err
				}
				type item struct {
					DeliveryID        string     `json:"delivery_id"`
					Operation         string     `json:"operation"`
					ProviderConfigKey string     `json:"provider_config_key"`
					ConnectionID      string     `json:"connection_id"`
					Destination       string     `json:"destination"`
					Status            string     `json:"status"`
					Attempts          int        `json:"attempts"`
					LastStatus        *int       `json:"last_status"`
					LastError         string     `json:"last_error"`
					LastAttemptAt     *time.Time `json:"last_attempt_at"`
					CreatedAt         time.Time  `json:"created_at"`
				}
				items := make([]item, 0, len(list))
				rows := make([][]string, 0, len(list))
				for _, d := range list {
					it := item{d.DeliveryID, d.Operation, d.ProviderConfigKey, d.ConnectionID, destination(d.URL), d.Status,
						d.Attempts, d.LastStatus, d.LastError, d.LastAttemptAt, d.CreatedAt}
					items = append(items, it)
					last := ""
					if d.LastStatus != nil {
						last = strconv.Itoa(*d.LastStatus)
					}
					rows = append(rows, []string{it.DeliveryID, it.Operation, it.ProviderConfigKey, it.ConnectionID, it.Destination,
						it.Status, strconv.Itoa(it.Attempts), last, it.LastError, it.CreatedAt.Format(time.RFC3339)})
				}
				if asJSON {
					return printJSON(a.stdout, items)
				}
				return printTable(a.stdout, []string{"DELIVERY_ID", "OPERATION", "INTEGRATION", "CONNECTION_ID", "DESTINATION",
					"STATUS", "ATTEMPTS", "LAST_STATUS", "LAST_ERROR", "CREATED_AT"}, rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "environment")
	f.StringVar(&status, "status", "", "only deliveries in this status: pending, failed or delivered")
	f.IntVar(&limit, "limit", 50, "most deliveries listed")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// destination is a webhook URL without its path and query, which may carry a secret.
func destination(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	host, _, _ := strings.Cut(rest, "/")
	host, _, _ = strings.Cut(host, "?")
	return scheme + "://" + host
}

func (a *app) webhooksRedeliverCommand() *cobra.Command {
	var env, id string
	cmd := &cobra.Command{
		Use:   "redeliver",
		Short: "Send a webhook again, by its delivery id, to each of its destinations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("id", id); err != nil {
				return err
			}
			return a.withEnvironment(cmd.Context(), env, func(db *store.DB, envID int64) error {
				if err := db.RedeliverWebhook(cmd.Context(), envID, id); err != nil {
					return err
				}
				_, err := fmt.Fprintf(a.stdout, "%s\tpending\n", id)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment")
	cmd.Flags().StringVar(&id, "id", "", "the delivery id (X-Credport-Delivery-Id)")
	return cmd
}
