package run

import (
	"errors"
	"fmt"
)

// Exit statuses of `arrow run` when the application did not produce one,
// the same as docker run's.
const (
	// ExitArrowFailed: Arrow itself failed (bad flags, no kernel, QEMU
	// missing, the guest did not boot, ...).
	ExitArrowFailed = 125
	// ExitCannotExecute: the program exists but cannot be executed.
	ExitCannotExecute = 126
	// ExitNotFound: the program, or a library it needs, was not found.
	ExitNotFound = 127
)

// Error is a failure of Arrow to run the application, with the exit status
// `arrow run` should end with.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func failf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

func fail(code int, err error) error { return &Error{Code: code, Err: err} }

// ExitCode returns the exit status a command should end with for err:
// the code of an [*Error], ExitArrowFailed for any other error, 0 for nil.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitArrowFailed
}
