package store

import "errors"

var (
	// ErrNotFound means the row asked for does not exist in the caller's environment.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same unique key already exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable means the database did not answer.
	ErrUnavailable = errors.New("database unavailable")
)
