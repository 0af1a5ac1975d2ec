package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/credport/credport/store"
)

func (a *app) exportCommand() *cobra.Command {
	var env, output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every connection, credentials in clear, as JSON Lines that credport import reads",
		Long: "Writes every connection of environment --env (of every environment without it) as JSON Lines,\n" +
			"one POST /connections body a line, exactly what `credport import` reads: the way to move from\n" +
			"SQLite to PostgreSQL, or to back up. It reads the database directly (like rekey), so it needs\n" +
			"CREDPORT_DATABASE_URL and the encryption keys, not a server.\n\n" +
			"THE OUTPUT HOLDS EVERY SECRET IN CLEAR (access and refresh tokens, API keys, passwords).\n" +
			"The --output file is created readable by its owner only (0600); keep it so, and delete it\n" +
			"once imported. A line names no environment: export each environment to a file of its own\n" +
			"when they are to stay apart, and import each with an API key of its environment.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(db *store.DB) error {
				w, closeOut, err := exportOutput(a.stdout, output)
				if err != nil {
					return err
				}
				n, err := exportConnections(cmd, db, env, w)
				if err = errors.Join(err, closeOut()); err != nil {
					return err
				}
				where := "every environment"
				if env != "" {
					where = fmt.Sprintf("environment %q", env)
				}
				_, err = fmt.Fprintf(a.stderr, "export: %d connections of %s written to %s\n", n, where, outputName(output))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "the environment to export; every environment when not given")
	cmd.Flags().StringVarP(&output, "output", "o", "-", "the file to write (created 0600), - for standard output")
	return cmd
}

func outputName(output string) string {
	if output == "-" || output == "" {
		return "standard output"
	}
	return output
}

// exportOutput opens where the export goes: standard output, or a file only its owner can read,
// whatever the umask, and whether it existed or not.
func exportOutput(stdout io.Writer, output string) (io.Writer, func() error, error) {
	if output == "-" || output == "" {
		bw := bufio.NewWriter(stdout)
		return bw, bw.Flush, nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return nil, nil, errors.Join(err, f.Close())
	}
	bw := bufio.NewWriter(f)
	return bw, func() error { return errors.Join(bw.Flush(), f.Sync(), f.Close()) }, nil
}

// exportLine is one import body, its fields in the order of POST /connections.
type exportLine struct {
	ProviderConfigKey string          `json:"provider_config_key"`
	ConnectionID      string          `json:"connection_id"`
	Credentials       json.RawMessage `json:"credentials"`
	ConnectionConfig  json.RawMessage `json:"connection_config,omitempty"`
	Metadata          json.RawMessage `json:"metadata,omitempty"`
	Tags              json.RawMessage `json:"tags,omitempty"`
	EndUser           json.RawMessage `json:"end_user,omitempty"`
}

// exportConnections writes the connections of env to w and returns how many.
func exportConnections(cmd *cobra.Command, db *store.DB, env string, w io.Writer) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	err := db.ExportConnections(cmd.Context(), env, func(c store.ExportedConnection) error {
		creds, err := importCredentials(c)
		if err != nil {
			return fmt.Errorf("connection %q of integration %q: %w", c.ConnectionID, c.ProviderConfigKey, err)
		}
		line := exportLine{ProviderConfigKey: c.ProviderConfigKey, ConnectionID: c.ConnectionID, Credentials: creds,
			ConnectionConfig: nonEmptyObject(c.ConnectionConfig), Metadata: nonEmptyObject(c.Metadata),
			Tags: nonEmptyObject(c.Tags), EndUser: c.EndUser}
		for _, v := range []*json.RawMessage{&line.Credentials, &line.ConnectionConfig, &line.Metadata, &line.Tags, &line.EndUser} {
			if *v, err = canonicalJSON(*v); err != nil {
				return fmt.Errorf("connection %q of integration %q: %w", c.ConnectionID, c.ProviderConfigKey, err)
			}
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// canonicalJSON is v with its object keys sorted and without HTML escapes, so that one
// connection exports alike from either database: PostgreSQL's jsonb reorders keys, SQLite keeps
// them as written. Numbers are kept as written.
func canonicalJSON(v json.RawMessage) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// nonEmptyObject is v, or nil for an empty object, which an import stores by default anyway.
func nonEmptyObject(v json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err == nil && len(m) == 0 {
		return nil
	}
	return v
}

// importCredentials turns stored credentials back into the credentials of an import: the fields
// as imported (or as the last refresh left them), without what the store adds (the input kept
// under "raw"); NONE and APP connections as their import names them.
func importCredentials(c store.ExportedConnection) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(c.Credentials, &fields); err != nil {
		return nil, fmt.Errorf("stored credentials: %w", err)
	}
	quote := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	switch c.AuthMode {
	case "NONE":
		return json.Marshal(map[string]json.RawMessage{"type": quote("NONE")})
	case "APP":
		// An import names the installation; the server mints its token again.
		out := map[string]json.RawMessage{"type": quote("APP"), "app_id": quote(c.AppID)}
		if id, ok := fields["installation_id"]; ok {
			out["installation_id"] = id
		} else {
			var cfg map[string]json.RawMessage
			if err := json.Unmarshal(c.ConnectionConfig, &cfg); err == nil && cfg["installation_id"] != nil {
				out["installation_id"] = cfg["installation_id"]
			}
		}
		if v, ok := fields["app_id"]; ok {
			out["app_id"] = v
		}
		return json.Marshal(out)
	}
	delete(fields, "raw")
	if _, ok := fields["type"]; !ok {
		fields["type"] = quote(c.AuthMode)
	}
	return json.Marshal(fields)
}
