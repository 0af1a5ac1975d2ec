package main

import (
	"context"
	"errors"

	"github.com/credport/credport/store"
)

// withStore opens the database (migrating it), runs fn and closes the database again.
func (a *app) withStore(ctx context.Context, fn func(db *store.DB) error) error {
	db, err := a.openStore(ctx, a.logger())
	if err != nil {
		return err
	}
	return errors.Join(fn(db), db.Close())
}
