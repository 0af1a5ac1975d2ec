package importer

import (
	"errors"
	"fmt"
)

// The kinds of error Run returns, for errors.Is; the CLI maps each to an exit status.
var (
	// ErrUsage: the options or an input are unusable; nothing was sent.
	ErrUsage = errors.New("unusable options or input")
	// ErrFailed: some records failed or were invalid; the report lists them.
	ErrFailed = errors.New("records failed")
	// ErrInterrupted: the context ended the run; the state is saved for Options.Resume.
	ErrInterrupted = errors.New("interrupted")
	// ErrStopped: the run gave up because no record could succeed (the key was refused, or the
	// server stayed unreachable); the state is saved for Options.Resume.
	ErrStopped = errors.New("stopped")
)

// kindError is an error of one of the kinds above; its message is err's alone.
type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

func usageError(format string, args ...any) error {
	return withKind(ErrUsage, fmt.Errorf(format, args...))
}
