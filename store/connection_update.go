package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"gorm.io/gorm"
)

// PatchConnection is one PATCH of a connection. Nil fields are left as stored.
type PatchConnection struct {
	EnvironmentID     int64
	ProviderConfigKey string
	ConnectionID      string
	Tags              json.RawMessage
	EndUser           json.RawMessage
	// WebhookURLOverride, when set, is written; pointing at "" it clears the override.
	WebhookURLOverride *string
}

// PatchConnection updates the fields the patch carries; ErrNotFound when there is no such
// connection. A patch that carries nothing still checks that the connection exists.
func (db *DB) PatchConnection(ctx context.Context, in PatchConnection) error {
	set := []string{"updated_at = ?"}
	args := []any{db.now()}
	if in.Tags != nil {
		set = append(set, "tags = ?")
		args = append(args, string(in.Tags))
	}
	if in.EndUser != nil {
		set = append(set, "end_user = ?")
		args = append(args, string(in.EndUser))
	}
	if in.WebhookURLOverride != nil {
		set = append(set, "webhook_url_override = ?")
		var v *string
		if *in.WebhookURLOverride != "" {
			v = in.WebhookURLOverride
		}
		args = append(args, v)
	}
	if len(set) == 1 {
		set, args = []string{"id = id"}, nil
	}
	args = append(args, in.EnvironmentID, in.ProviderConfigKey, in.ConnectionID)
	res := db.gorm.WithContext(ctx).Exec("UPDATE connections SET "+strings.Join(set, ", ")+
		" WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?", args...)
	if res.Error != nil {
		return fmt.Errorf("patch connection %q: %w", in.ConnectionID, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("connection %q: %w", in.ConnectionID, ErrNotFound)
	}
	return nil
}

// MissingConnectionError is ErrNotFound for one of several connections, named.
type MissingConnectionError struct {
	ConnectionID string
}

func (e *MissingConnectionError) Error() string {
	return fmt.Sprintf("connection %q: %v", e.ConnectionID, ErrNotFound)
}

func (e *MissingConnectionError) Unwrap() error { return ErrNotFound }

// SetMetadata replaces (merge false) or shallow-merges (merge true) the metadata of each
// connection, all in one transaction: when one is missing, nothing is written and the error is
// a *MissingConnectionError naming the first missing id, in the order given.
func (db *DB) SetMetadata(ctx context.Context, envID int64, providerConfigKey string, connectionIDs []string, metadata json.RawMessage, merge bool) error {
	lock := ""
	if db.dialect == DialectPostgres {
		lock = " FOR UPDATE"
	}
	var patch map[string]json.RawMessage
	if merge {
		if err := json.Unmarshal(metadata, &patch); err != nil {
			return fmt.Errorf("set metadata: %w", err)
		}
	}
	now := db.now()
	return db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, id := range connectionIDs {
			var stored string
			err := tx.Raw("SELECT metadata FROM connections WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?"+lock,
				envID, providerConfigKey, id).Row().Scan(&stored)
			if errors.Is(err, sql.ErrNoRows) {
				return &MissingConnectionError{ConnectionID: id}
			}
			if err != nil {
				return fmt.Errorf("set metadata of %q: %w", id, dbError(err))
			}
			value := metadata
			if merge {
				if value, err = mergeObjects(stored, patch); err != nil {
					return fmt.Errorf("set metadata of %q: %w", id, err)
				}
			}
			err = tx.Exec("UPDATE connections SET metadata = ?, updated_at = ? WHERE environment_id = ? AND provider_config_key = ? AND connection_id = ?",
				string(value), now, envID, providerConfigKey, id).Error
			if err != nil {
				return fmt.Errorf("set metadata of %q: %w", id, err)
			}
		}
		return nil
	})
}

// mergeObjects is {...stored, ...patch}: top-level keys of patch over those of stored, nothing
// removed, numbers kept as written.
func mergeObjects(stored string, patch map[string]json.RawMessage) (json.RawMessage, error) {
	old := map[string]json.RawMessage{}
	if strings.TrimSpace(stored) != "" {
		dec := json.NewDecoder(bytes.NewReader([]byte(stored)))
		if err := dec.Decode(&old); err != nil {
			return nil, err
		}
	}
	maps.Copy(old, patch)
	return json.Marshal(old)
}
