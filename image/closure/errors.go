package closure

import (
	"errors"
	"fmt"
)

// Sentinel errors of [Resolver.Program] and [Resolver.Resolve]. Test for
// them with errors.Is; the errors returned wrap them with the path at fault.
var (
	// ErrNotFound: the program, or the interpreter of a script, does not
	// exist (the shell's exit status 127).
	ErrNotFound = errors.New("not found")
	// ErrNotExecutable: the program exists but may not be executed: it has
	// no execute bit, or it is a directory (the shell's exit status 126).
	ErrNotExecutable = errors.New("not executable")
	// ErrNotProgram: the program is executable but is neither an ELF
	// executable nor a "#!" script, or its ELF class is not one a loader
	// could run (the shell's exit status 126).
	ErrNotProgram = errors.New("not an ELF executable or script")
	// ErrLibraryNotFound: a shared library or ELF interpreter the program
	// needs is nowhere the dynamic loader would look. The error is a
	// [*LibraryError] naming the library and the object that needs it.
	ErrLibraryNotFound = errors.New("library not found")
	// ErrInclude: a path named with --include does not exist or cannot be
	// put into the guest.
	ErrInclude = errors.New("cannot include")
)

// LibraryError is an unresolvable dependency of an ELF object: a DT_NEEDED
// library, or the PT_INTERP interpreter, that the dynamic loader would not
// find. It matches [ErrLibraryNotFound] with errors.Is.
type LibraryError struct {
	// Library is the name as the object asks for it ("libfoo.so.1", or
	// the interpreter's path).
	Library string
	// Needer is the guest path of the object that needs it.
	Needer string
	// Interpreter is set when Library is the object's PT_INTERP.
	Interpreter bool
	// Searched are the directories looked in, in order.
	Searched []string
}

// Error names the library and the object that needs it.
func (e *LibraryError) Error() string {
	if e.Interpreter {
		return fmt.Sprintf("ELF interpreter %s of %s: not found", e.Library, e.Needer)
	}
	return fmt.Sprintf("shared library %s needed by %s: not found (searched %d directories)", e.Library, e.Needer, len(e.Searched))
}

// Is makes errors.Is(err, ErrLibraryNotFound) true.
func (e *LibraryError) Is(target error) bool { return target == ErrLibraryNotFound }
