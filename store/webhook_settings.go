package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// WebhookSettings are an environment's auth webhook settings. The signing key is never part of
// them: SetWebhookSettings and RotateWebhookKey return it once, WebhookKey opens it to sign.
type WebhookSettings struct {
	EnvironmentID      int64
	PrimaryURL         string
	SecondaryURL       string
	OnAuthCreation     bool
	OnAuthRefreshError bool
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// WebhookSettingsChange is what `webhooks set` changes; nil fields keep their value (or take the
// default on the first set: no URL, both switches on).
type WebhookSettingsChange struct {
	PrimaryURL, SecondaryURL           *string
	OnAuthCreation, OnAuthRefreshError *bool
}

func webhookKeyAAD(envID int64) []byte {
	return []byte("webhook-signing-key\x00" + strconv.FormatInt(envID, 10))
}

// newSigningKey is a fresh signing key: 32 random bytes, hex.
func newSigningKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// SetWebhookSettings changes an environment's webhook settings. The first change creates the
// settings with a new signing key, which it returns; later changes return "".
func (db *DB) SetWebhookSettings(ctx context.Context, envID int64, ch WebhookSettingsChange) (WebhookSettings, string, error) {
	var newKey string
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		cur, found, err := readWebhookSettings(tx, envID)
		if err != nil {
			return err
		}
		now := db.now()
		if !found {
			cur = WebhookSettings{EnvironmentID: envID, OnAuthCreation: true, OnAuthRefreshError: true, CreatedAt: now}
		}
		if ch.PrimaryURL != nil {
			cur.PrimaryURL = *ch.PrimaryURL
		}
		if ch.SecondaryURL != nil {
			cur.SecondaryURL = *ch.SecondaryURL
		}
		if ch.OnAuthCreation != nil {
			cur.OnAuthCreation = *ch.OnAuthCreation
		}
		if ch.OnAuthRefreshError != nil {
			cur.OnAuthRefreshError = *ch.OnAuthRefreshError
		}
		cur.UpdatedAt = now
		if found {
			return tx.Exec(`UPDATE webhook_settings SET primary_url = ?, secondary_url = ?, on_auth_creation = ?,
    on_auth_refresh_error = ?, updated_at = ? WHERE environment_id = ?`,
				cur.PrimaryURL, cur.SecondaryURL, cur.OnAuthCreation, cur.OnAuthRefreshError, now, envID).Error
		}
		if newKey, err = newSigningKey(); err != nil {
			return err
		}
		sealed, err := db.keys.Seal([]byte(newKey), webhookKeyAAD(envID))
		if err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO webhook_settings (environment_id, primary_url, secondary_url, on_auth_creation,
    on_auth_refresh_error, signing_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			envID, cur.PrimaryURL, cur.SecondaryURL, cur.OnAuthCreation, cur.OnAuthRefreshError, sealed, now, now).Error
	})
	if err != nil {
		return WebhookSettings{}, "", fmt.Errorf("set webhook settings: %w", dbError(err))
	}
	s, err := db.WebhookSettings(ctx, envID)
	return s, newKey, err
}

// WebhookSettings reads an environment's settings; ErrNotFound when none were ever set.
func (db *DB) WebhookSettings(ctx context.Context, envID int64) (WebhookSettings, error) {
	s, found, err := readWebhookSettings(db.gorm.WithContext(ctx), envID)
	if err != nil {
		return WebhookSettings{}, fmt.Errorf("webhook settings: %w", dbError(err))
	}
	if !found {
		return WebhookSettings{}, fmt.Errorf("webhook settings: %w", ErrNotFound)
	}
	return s, nil
}

func readWebhookSettings(tx *gorm.DB, envID int64) (WebhookSettings, bool, error) {
	s := WebhookSettings{EnvironmentID: envID}
	err := tx.Raw(`SELECT primary_url, secondary_url, on_auth_creation, on_auth_refresh_error, created_at, updated_at
FROM webhook_settings WHERE environment_id = ?`, envID).Row().
		Scan(&s.PrimaryURL, &s.SecondaryURL, &s.OnAuthCreation, &s.OnAuthRefreshError, &s.CreatedAt, &s.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return WebhookSettings{}, false, nil
	}
	if err != nil {
		return WebhookSettings{}, false, err
	}
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	return s, true, nil
}

// RotateWebhookKey replaces an environment's signing key and returns the new one. Events not yet
// delivered are signed with the new key. ErrNotFound when the settings were never set.
func (db *DB) RotateWebhookKey(ctx context.Context, envID int64) (string, error) {
	key, err := newSigningKey()
	if err != nil {
		return "", err
	}
	sealed, err := db.keys.Seal([]byte(key), webhookKeyAAD(envID))
	if err != nil {
		return "", err
	}
	res := db.gorm.WithContext(ctx).Exec(`UPDATE webhook_settings SET signing_key = ?, updated_at = ? WHERE environment_id = ?`,
		sealed, db.now(), envID)
	if res.Error != nil {
		return "", fmt.Errorf("rotate webhook signing key: %w", dbError(res.Error))
	}
	if res.RowsAffected == 0 {
		return "", fmt.Errorf("rotate webhook signing key: %w", ErrNotFound)
	}
	return key, nil
}

// WebhookKey opens an environment's signing key.
func (db *DB) WebhookKey(ctx context.Context, envID int64) ([]byte, error) {
	var sealed string
	err := db.gorm.WithContext(ctx).Raw(`SELECT signing_key FROM webhook_settings WHERE environment_id = ?`, envID).Row().Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("webhook signing key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("webhook signing key: %w", dbError(err))
	}
	key, err := db.keys.Open(sealed, webhookKeyAAD(envID))
	if err != nil {
		return nil, fmt.Errorf("webhook signing key: %w", err)
	}
	return key, nil
}
