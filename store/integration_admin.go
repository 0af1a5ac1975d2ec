package store

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ErrHasConnections is a change refused because the integration has connections.
var ErrHasConnections = errors.New("the integration has connections")

// IntegrationUpdate is a change to integration UniqueKey of environment EnvironmentID. Nil
// fields are left as they are.
type IntegrationUpdate struct {
	EnvironmentID int64
	UniqueKey     string
	// NewUniqueKey renames the integration; refused with ErrHasConnections while it has any,
	// since each connection's sealed credentials are bound to the key.
	NewUniqueKey    *string
	DisplayName     *string
	ForwardWebhooks *bool
	// ClientID and ClientSecret replace the OAuth client; Scopes, when not nil, the scopes
	// ("" clears them).
	ClientID     *string
	ClientSecret *string
	Scopes       *string
	// AppID, PrivateKey and AppLink replace the GitHub App; the key is checked as on create.
	AppID      *string
	PrivateKey []byte
	AppLink    *string
	// TokenURL ("" stops refreshing) and TokenAuth change where tokens are renewed.
	TokenURL  *string
	TokenAuth *string
}

// UpdateIntegration applies a change in one transaction and returns the integration as stored.
// An unknown integration is ErrNotFound, a new key already taken ErrConflict.
func (db *DB) UpdateIntegration(ctx context.Context, up IntegrationUpdate) (Integration, error) {
	var out Integration
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row integrationRow
		err := db.lockIntegration(tx).Where("environment_id = ? AND unique_key = ?", up.EnvironmentID, up.UniqueKey).Take(&row).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("integration %q: %w", up.UniqueKey, ErrNotFound)
		}
		if err != nil {
			return err
		}
		oldKey := row.UniqueKey
		if up.NewUniqueKey != nil && *up.NewUniqueKey != oldKey {
			var n int64
			if err := tx.Raw("SELECT COUNT(*) FROM connections WHERE integration_id = ?", row.ID).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("rename integration %q: %w", oldKey, ErrHasConnections)
			}
			row.UniqueKey = *up.NewUniqueKey
		}
		if err := db.applyIntegrationUpdate(&row, oldKey, up); err != nil {
			return err
		}
		now := db.now()
		row.UpdatedAt = &now
		err = tx.Save(&row).Error
		if errors.Is(err, gorm.ErrDuplicatedKey) {
			return fmt.Errorf("integration %q: %w", row.UniqueKey, ErrConflict)
		}
		if err != nil {
			return err
		}
		out = row.integration()
		return nil
	})
	if err != nil {
		return Integration{}, fmt.Errorf("update integration %q: %w", up.UniqueKey, err)
	}
	return out, nil
}

// lockIntegration makes tx's read of an integration row lock it until the transaction ends. On
// PostgreSQL the lock conflicts with the key-share lock an insert of one of its connections
// takes, so that no import slips a connection in between the count of a rename, or the delete of
// its connections, and the change itself. SQLite runs one writer at a time already.
func (db *DB) lockIntegration(tx *gorm.DB) *gorm.DB {
	if db.dialect == DialectPostgres {
		return tx.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	return tx
}

// applyIntegrationUpdate changes row as up says; row.UniqueKey is already the final key, so
// that every secret ends up sealed for it.
func (db *DB) applyIntegrationUpdate(row *integrationRow, oldKey string, up IntegrationUpdate) error {
	if up.DisplayName != nil {
		row.DisplayName = up.DisplayName
	}
	if up.ForwardWebhooks != nil {
		row.ForwardWebhooks = *up.ForwardWebhooks
	}
	// A rename re-seals what the old key sealed before anything replaces it.
	if row.UniqueKey != oldKey {
		for _, s := range []struct {
			value    **string
			old, new []byte
		}{
			{&row.ClientSecret, integrationAAD(row.EnvironmentID, oldKey), integrationAAD(row.EnvironmentID, row.UniqueKey)},
			{&row.PrivateKey, appKeyAAD(row.EnvironmentID, oldKey), appKeyAAD(row.EnvironmentID, row.UniqueKey)},
		} {
			if *s.value == nil {
				continue
			}
			plain, err := db.keys.Open(**s.value, s.old)
			if err != nil {
				return err
			}
			sealed, err := db.keys.Seal(plain, s.new)
			if err != nil {
				return err
			}
			*s.value = &sealed
		}
	}
	if up.ClientID != nil {
		row.ClientID = up.ClientID
	}
	if up.ClientSecret != nil {
		sealed, err := db.keys.Seal([]byte(*up.ClientSecret), integrationAAD(row.EnvironmentID, row.UniqueKey))
		if err != nil {
			return err
		}
		row.ClientSecret = &sealed
	}
	if up.Scopes != nil {
		row.Scopes = nil
		if *up.Scopes != "" {
			row.Scopes = up.Scopes
		}
	}
	if up.AppLink != nil {
		row.AppLink = up.AppLink
	}
	if up.AppID != nil || up.PrivateKey != nil {
		app, err := newAppConfig(NewIntegration{AuthMode: row.AuthMode, AppID: deref(up.AppID), PrivateKey: up.PrivateKey, APIBaseURL: deref(row.APIBaseURL)})
		if err != nil {
			return err
		}
		sealed, err := db.keys.Seal(app.keyDER, appKeyAAD(row.EnvironmentID, row.UniqueKey))
		if err != nil {
			return err
		}
		row.AppID, row.PrivateKey, row.APIBaseURL = up.AppID, &sealed, &app.apiBaseURL
	}
	if up.TokenURL != nil || up.TokenAuth != nil {
		check := NewIntegration{AuthMode: row.AuthMode, ClientID: deref(row.ClientID), Scopes: deref(row.Scopes),
			TokenURL: deref(row.TokenURL), TokenAuth: deref(row.TokenAuth)}
		if up.TokenURL != nil {
			check.TokenURL = *up.TokenURL
		}
		if up.TokenAuth != nil {
			check.TokenAuth = *up.TokenAuth
		}
		if check.TokenURL == "" {
			check.TokenAuth = ""
		}
		if err := checkRefreshConfig(&check); err != nil {
			return err
		}
		row.TokenURL, row.TokenAuth = nil, nil
		if check.TokenURL != "" {
			row.TokenURL, row.TokenAuth = &check.TokenURL, &check.TokenAuth
		}
	}
	return nil
}

// DeleteIntegration removes integration uniqueKey of environment envID and every connection of
// it, with their sealed credentials, in one transaction. It returns how many connections went;
// an unknown integration is ErrNotFound.
func (db *DB) DeleteIntegration(ctx context.Context, envID int64, uniqueKey string) (int64, error) {
	return db.deleteIntegration(ctx, envID, uniqueKey, true)
}

// DeleteEmptyIntegration removes integration uniqueKey of environment envID only when it has no
// connection; otherwise it removes nothing and is a *ConnectionsExistError. The count and the
// delete happen under one lock, so that no import slips a connection in between.
func (db *DB) DeleteEmptyIntegration(ctx context.Context, envID int64, uniqueKey string) error {
	_, err := db.deleteIntegration(ctx, envID, uniqueKey, false)
	return err
}

// ConnectionsExistError is a delete refused because the integration has Count connections.
type ConnectionsExistError struct{ Count int64 }

func (e *ConnectionsExistError) Error() string {
	return fmt.Sprintf("%s: %d", ErrHasConnections, e.Count)
}

func (e *ConnectionsExistError) Unwrap() error { return ErrHasConnections }

func (db *DB) deleteIntegration(ctx context.Context, envID int64, uniqueKey string, withConnections bool) (int64, error) {
	var removed int64
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row integrationRow
		err := db.lockIntegration(tx).Select("id").Where("environment_id = ? AND unique_key = ?", envID, uniqueKey).Take(&row).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return fmt.Errorf("integration %q: %w", uniqueKey, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !withConnections {
			var n int64
			if err := tx.Raw("SELECT COUNT(*) FROM connections WHERE integration_id = ?", row.ID).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return &ConnectionsExistError{Count: n}
			}
		}
		res := tx.Exec("DELETE FROM connections WHERE integration_id = ?", row.ID)
		if res.Error != nil {
			return res.Error
		}
		removed = res.RowsAffected
		return tx.Exec("DELETE FROM integrations WHERE id = ?", row.ID).Error
	})
	if err != nil {
		return 0, fmt.Errorf("delete integration %q: %w", uniqueKey, err)
	}
	return removed, nil
}

// CountIntegrationConnections is the number of connections of integration uniqueKey of
// environment envID.
func (db *DB) CountIntegrationConnections(ctx context.Context, envID int64, uniqueKey string) (int64, error) {
	var n int64
	err := db.gorm.WithContext(ctx).Raw(`SELECT COUNT(*) FROM connections c JOIN integrations i ON i.id = c.integration_id
		WHERE i.environment_id = ? AND i.unique_key = ?`, envID, uniqueKey).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count connections of integration %q: %w", uniqueKey, err)
	}
	return n, nil
}

// ListEnvironmentIntegrations lists the integrations of environment envID by provider, then by
// creation.
func (db *DB) ListEnvironmentIntegrations(ctx context.Context, envID int64) ([]Integration, error) {
	return db.listIntegrations(ctx, envID, "provider, created_at, id")
}

// listIntegrations lists the integrations of environment envID in the order given.
func (db *DB) listIntegrations(ctx context.Context, envID int64, order string) ([]Integration, error) {
	var rows []integrationRow
	err := db.gorm.WithContext(ctx).Where("environment_id = ?", envID).Order(order).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	out := make([]Integration, len(rows))
	for i, r := range rows {
		out[i] = r.integration()
	}
	return out, nil
}

// IntegrationSecrets are an integration's secrets in clear.
type IntegrationSecrets struct {
	ClientSecret string
	// PrivateKeyPEM is the GitHub App key as a PKCS#1 PEM block, as GitHub issues it.
	PrivateKeyPEM string
}

// OpenIntegrationSecrets opens the client secret and the GitHub App private key of in; those it
// has not are "".
func (db *DB) OpenIntegrationSecrets(ctx context.Context, in Integration) (IntegrationSecrets, error) {
	var out IntegrationSecrets
	var err error
	if in.HasClientSecret {
		if out.ClientSecret, err = db.IntegrationClientSecret(ctx, in); err != nil {
			return IntegrationSecrets{}, err
		}
	}
	if in.HasPrivateKey {
		key, err := db.AppPrivateKey(ctx, in)
		if err != nil {
			return IntegrationSecrets{}, err
		}
		out.PrivateKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	}
	return out, nil
}
