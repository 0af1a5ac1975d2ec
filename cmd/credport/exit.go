package main

import (
	"errors"
	"fmt"
)

// Exit statuses other than 0 (success) and 1 (any other failure).
const (
	exitUsage       = 2   // a malformed command line or unreadable input
	exitInterrupted = 130 // stopped by Ctrl-C, as a shell reports SIGINT
)

// exitError is an error that asks for a particular exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageError(format string, args ...any) error {
	return withExitCode(exitUsage, fmt.Errorf(format, args...))
}

// exitCode is the process's exit status for what run returned.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
