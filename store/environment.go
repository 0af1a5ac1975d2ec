package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// EnsureEnvironment returns the id of the environment called name, creating it when new.
func (db *DB) EnsureEnvironment(ctx context.Context, name string) (int64, error) {
	row := environmentRow{Name: name, CreatedAt: db.now()}
	err := db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row).Error
	if err != nil {
		return 0, fmt.Errorf("create environment %q: %w", name, err)
	}
	return db.environmentID(ctx, name)
}

func (db *DB) environmentID(ctx context.Context, name string) (int64, error) {
	var row environmentRow
	err := db.gorm.WithContext(ctx).Where("name = ?", name).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, fmt.Errorf("environment %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("find environment %q: %w", name, err)
	}
	return row.ID, nil
}

// EnvironmentID is the id of the environment called name; an unknown one is ErrNotFound.
func (db *DB) EnvironmentID(ctx context.Context, name string) (int64, error) {
	return db.environmentID(ctx, name)
}

// EnvironmentSummary is an environment with the counts of what it holds.
type EnvironmentSummary struct {
	Name string
	// Keys counts active API keys only; RevokedKeys the others.
	Keys         int64
	RevokedKeys  int64
	Integrations int64
	Connections  int64
	CreatedAt    time.Time
}

// ListEnvironments lists every environment by name, with its counts.
func (db *DB) ListEnvironments(ctx context.Context) ([]EnvironmentSummary, error) {
	var out []EnvironmentSummary
	err := db.gorm.WithContext(ctx).Raw(`SELECT e.name, e.created_at,
		(SELECT COUNT(*) FROM api_keys k WHERE k.environment_id = e.id AND k.revoked_at IS NULL) AS keys,
		(SELECT COUNT(*) FROM api_keys k WHERE k.environment_id = e.id AND k.revoked_at IS NOT NULL) AS revoked_keys,
		(SELECT COUNT(*) FROM integrations i WHERE i.environment_id = e.id) AS integrations,
		(SELECT COUNT(*) FROM connections c WHERE c.environment_id = e.id) AS connections
		FROM environments e ORDER BY e.name`).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	return out, nil
}
