package spec

import (
	"errors"
	"fmt"
	"strings"
)

// ErrTooLarge is wrapped by the error for a spec file larger than
// [MaxFileSize].
var ErrTooLarge = errors.New("spec file too large")

// Error is one problem in a spec file: where it is and what is wrong.
//
// Its message reads "FILE:LINE: PATH: problem", for example
//
//	arrow.yaml:7: volumes[1].target: "etc/app" is not an absolute path
//
// with "line N:" in place of "FILE:N:" when the spec has no file name, and
// no PATH when the problem is not in one field (a syntax error, say).
type Error struct {
	// File is the file name given to [Parse] or [Load].
	File string
	// Line is the 1-based line of the problem. It is 0 only for a problem
	// with the file as a whole (see [ErrTooLarge]).
	Line int
	// Column is the 1-based column, in characters, of the value or key at
	// fault; 0 when the parser did not say (some syntax errors).
	Column int
	// Path names the field, as in "volumes[1].target", "env.HOME" or
	// `labels["com.example.team"]`; empty for the document as a whole.
	Path string
	// Err is the problem itself.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem [Parse] found, in line order. Its message has
// one line per problem.
type ErrorList []*Error

// Error implements error.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems, so that errors.As finds the first *Error
// and errors.Is looks at every one.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// textError is a message that wraps an error without repeating its text
// (a parser's error, reworded).
type textError struct {
	msg string
	err error
}

func (e *textError) Error() string { return e.msg }
func (e *textError) Unwrap() error { return e.err }

// quote quotes s for a message, shortened when long: values come from
// untrusted files and end up on terminals and in logs.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}
