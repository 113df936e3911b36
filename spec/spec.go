package spec

import (
	"github.com/arrowsys/arrow/api"

	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// FormatVersion is the version of the spec format this package reads.
const FormatVersion = 1

// Limits on untrusted input.
const (
	// MaxFileSize is the largest spec file, in bytes.
	MaxFileSize = 1 << 20
	// MaxItems is the most entries any one list or mapping may hold.
	MaxItems = 4096
	// maxErrors is the most problems reported; the rest are counted.
	maxErrors = 100
)

// Spec is an application to run, as a spec file describes it: Arrow's one
// description of an arrow ([api.Config]), and what the file says of
// itself. Paths on the host are absolute: relative ones were resolved
// against Dir.
//
// Zero values mean "not set": Arrow's defaults apply (see package run).
// What each field of Config may hold in a file:
//   - Image is an OCI image: a registry reference ("busybox:latest",
//     "ghcr.io/org/app@sha256:..."), docker://REF, oci:DIR[:TAG],
//     oci-archive:FILE[:TAG], docker-archive:FILE[:TAG], or the path of a
//     layout directory or archive (starting with /, ./ or ../), made
//     absolute.
//   - Program is the program to run. Without RootFS it is a host program:
//     a name looked up in the host's PATH, or a path (absolute). With
//     RootFS it is in the root file system: a name looked up in its PATH
//     or an absolute path there.
//   - Args replace an image's Cmd; with Program they follow it; with
//     RootFS and no Program, Args[0] is what runs. Nil when not set; empty
//     (non-nil) when set to []. Entrypoint likewise (empty clears an
//     image's).
//   - Env is KEY=value, in the file's order; Dir ("workdir") the absolute
//     guest working directory; User NAME|UID[:GROUP|GID] as [ParseUser]
//     reads it; Includes ("include") host paths put into the guest.
//   - Volumes have distinct targets; no two Ports bind the same host
//     address, port and protocol; Network is checked by [CheckNetwork].
//   - CPUs is 1 to [MaxCPUs], MemoryMiB [MinMemoryMiB] to
//     [MaxMemoryMiB]; Restart is [api.RestartNo] unless set.
//   - Kernel is a guest kernel (vmlinux or bzImage) to boot instead of
//     Arrow's.
type Spec struct {
	// Version is the format version, [FormatVersion].
	Version int
	// Dir is the directory relative host paths were resolved against:
	// the spec file's own.
	Dir string
	// Name names the application: a DNS label, or empty. It names a
	// detached arrow and is the guest's host name unless one is given.
	Name string
	// Config is what to run, and how.
	Config api.Config
}

// Load reads and parses the spec file at path; see [Parse].
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("spec: read %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse parses and validates a spec file's content, YAML or JSON.
// filename names the file in errors, and its directory is what relative
// host paths are resolved against (the current directory when it has
// none).
//
// The error, when there are problems, is an [ErrorList] holding every one
// of them (up to 100), each an [*Error] naming its line and field.
func Parse(data []byte, filename string) (*Spec, error) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: filename, Err: fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, MaxFileSize)}}
	}
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("spec: directory of %s: %w", filename, err)
	}
	root, perr := decodeNode(data, filename)
	if perr != nil {
		return nil, ErrorList{perr}
	}
	d := &decoder{file: filename, dir: dir}
	s := d.spec(root)
	if len(d.errs) == 0 {
		return s, nil
	}
	return nil, d.errorList()
}

// errorList sorts the problems by position and bounds their number.
func (d *decoder) errorList() ErrorList {
	l := d.errs
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if len(l) > maxErrors {
		more := &Error{File: d.file, Line: l[maxErrors].Line, Column: l[maxErrors].Column,
			Err: fmt.Errorf("%d more problems not shown", len(l)-maxErrors)}
		l = append(l[:maxErrors:maxErrors], more)
	}
	return l
}
