package store

import (
	"context"
	"errors"
	"fmt"

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
