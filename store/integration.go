package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// Integration is a provider configuration; connections belong to one. Its client secret stays
// sealed in the database and is not part of this value.
type Integration struct {
	ID              int64
	EnvironmentID   int64
	UniqueKey       string
	Provider        string
	AuthMode        string
	ClientID        string
	HasClientSecret bool
	CreatedAt       time.Time
}

// NewIntegration is what CreateIntegration needs.
type NewIntegration struct {
	Environment  string
	UniqueKey    string
	Provider     string
	AuthMode     string
	ClientID     string
	ClientSecret string
}

// CreateIntegration adds an integration to an environment (created when new). A second
// integration with the same unique key in one environment is ErrConflict.
func (db *DB) CreateIntegration(ctx context.Context, in NewIntegration) (Integration, error) {
	envID, err := db.EnsureEnvironment(ctx, in.Environment)
	if err != nil {
		return Integration{}, err
	}
	row := integrationRow{
		EnvironmentID: envID,
		UniqueKey:     in.UniqueKey,
		Provider:      in.Provider,
		AuthMode:      in.AuthMode,
		CreatedAt:     db.now(),
	}
	if in.ClientID != "" {
		row.ClientID = &in.ClientID
	}
	if in.ClientSecret != "" {
		sealed, err := db.keys.Seal([]byte(in.ClientSecret), integrationAAD(envID, in.UniqueKey))
		if err != nil {
			return Integration{}, err
		}
		row.ClientSecret = &sealed
	}
	err = db.gorm.WithContext(ctx).Create(&row).Error
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return Integration{}, fmt.Errorf("integration %q in environment %q: %w", in.UniqueKey, in.Environment, ErrConflict)
	}
	if err != nil {
		return Integration{}, fmt.Errorf("create integration: %w", err)
	}
	return row.integration(), nil
}

// ListIntegrations lists the integrations of environment env by unique key.
func (db *DB) ListIntegrations(ctx context.Context, env string) ([]Integration, error) {
	envID, err := db.environmentID(ctx, env)
	if err != nil {
		return nil, err
	}
	var rows []integrationRow
	if err := db.gorm.WithContext(ctx).Where("environment_id = ?", envID).Order("unique_key").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	out := make([]Integration, len(rows))
	for i, r := range rows {
		out[i] = r.integration()
	}
	return out, nil
}

// FindIntegration returns the integration uniqueKey of environment envID.
func (db *DB) FindIntegration(ctx context.Context, envID int64, uniqueKey string) (Integration, error) {
	var row integrationRow
	err := db.gorm.WithContext(ctx).Where("environment_id = ? AND unique_key = ?", envID, uniqueKey).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Integration{}, fmt.Errorf("integration %q: %w", uniqueKey, ErrNotFound)
	}
	if err != nil {
		return Integration{}, fmt.Errorf("find integration %q: %w", uniqueKey, err)
	}
	return row.integration(), nil
}

func (r integrationRow) integration() Integration {
	in := Integration{
		ID:              r.ID,
		EnvironmentID:   r.EnvironmentID,
		UniqueKey:       r.UniqueKey,
		Provider:        r.Provider,
		AuthMode:        r.AuthMode,
		HasClientSecret: r.ClientSecret != nil,
		CreatedAt:       r.CreatedAt,
	}
	if r.ClientID != nil {
		in.ClientID = *r.ClientID
	}
	return in
}

// integrationAAD binds an integration's sealed secrets to the integration.
func integrationAAD(envID int64, uniqueKey string) []byte {
	return []byte("integration\x00" + strconv.FormatInt(envID, 10) + "\x00" + uniqueKey)
}
