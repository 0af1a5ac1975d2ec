package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// secretPrefix marks credport API key secrets so that they are recognisable in a leak scan.
const secretPrefix = "cp_"

// APIKey is an API key as listed; its secret is never kept.
type APIKey struct {
	ID            int64
	EnvironmentID int64
	Environment   string
	Name          string
	Scopes        []string
	// SecretHash is the SHA-256 of the secret, hex-encoded; the secret itself is never kept.
	SecretHash string
	CreatedAt  time.Time
	RevokedAt  *time.Time
}

// HashSecret is the form in which a secret is stored and looked up.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateAPIKey makes a key in environment env (created when new) and returns its secret, which
// exists only in this return value.
func (db *DB) CreateAPIKey(ctx context.Context, env, name string, scopes []string) (APIKey, string, error) {
	envID, err := db.EnsureEnvironment(ctx, env)
	if err != nil {
		return APIKey{}, "", err
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	secret := secretPrefix + base64.RawURLEncoding.EncodeToString(raw)
	row := apiKeyRow{
		EnvironmentID: envID,
		Name:          name,
		SecretHash:    HashSecret(secret),
		Scopes:        strings.Join(scopes, " "),
		CreatedAt:     db.now(),
	}
	if err := db.gorm.WithContext(ctx).Create(&row).Error; err != nil {
		return APIKey{}, "", fmt.Errorf("create api key: %w", err)
	}
	return row.apiKey(env), secret, nil
}

// ListAPIKeys lists the keys of environment env, oldest first.
func (db *DB) ListAPIKeys(ctx context.Context, env string) ([]APIKey, error) {
	envID, err := db.environmentID(ctx, env)
	if err != nil {
		return nil, err
	}
	var rows []apiKeyRow
	if err := db.gorm.WithContext(ctx).Where("environment_id = ?", envID).Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys := make([]APIKey, len(rows))
	for i, r := range rows {
		keys[i] = r.apiKey(env)
	}
	return keys, nil
}

// CountAPIKeys counts the keys of every environment, revoked ones included.
func (db *DB) CountAPIKeys(ctx context.Context) (int64, error) {
	var n int64
	if err := db.gorm.WithContext(ctx).Model(&apiKeyRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

// RevokeAPIKey revokes key id of environment env. Revoking a revoked key is not an error.
func (db *DB) RevokeAPIKey(ctx context.Context, env string, id int64) error {
	envID, err := db.environmentID(ctx, env)
	if err != nil {
		return err
	}
	res := db.gorm.WithContext(ctx).Model(&apiKeyRow{}).
		Where("id = ? AND environment_id = ?", id, envID).
		Update("revoked_at", gorm.Expr("COALESCE(revoked_at, ?)", db.now()))
	if res.Error != nil {
		return fmt.Errorf("revoke api key %d: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("api key %d in environment %q: %w", id, env, ErrNotFound)
	}
	return nil
}

// FindAPIKeyBySecretHash returns the live (not revoked) key whose secret hashes to hash.
func (db *DB) FindAPIKeyBySecretHash(ctx context.Context, hash string) (APIKey, error) {
	var row apiKeyRow
	err := db.gorm.WithContext(ctx).Where("secret_hash = ? AND revoked_at IS NULL", hash).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return APIKey{}, ErrNotFound
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("find api key: %w", err)
	}
	var env environmentRow
	if err := db.gorm.WithContext(ctx).Take(&env, row.EnvironmentID).Error; err != nil {
		return APIKey{}, fmt.Errorf("find api key environment: %w", err)
	}
	return row.apiKey(env.Name), nil
}

func (r apiKeyRow) apiKey(env string) APIKey {
	return APIKey{
		ID:            r.ID,
		EnvironmentID: r.EnvironmentID,
		Environment:   env,
		Name:          r.Name,
		Scopes:        strings.Fields(r.Scopes),
		SecretHash:    r.SecretHash,
		CreatedAt:     r.CreatedAt,
		RevokedAt:     r.RevokedAt,
	}
}
