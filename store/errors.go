package store

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the row asked for does not exist in the caller's environment.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same unique key already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable means the database did not answer, or was too busy to.
	ErrUnavailable = errors.New("database unavailable")
	// ErrParentNotFound means the database refused a row whose parent row is gone, e.g. a
	// connection of an integration deleted meanwhile. It is an ErrNotFound.
	ErrParentNotFound = fmt.Errorf("parent row %w", ErrNotFound)
)
