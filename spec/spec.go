package spec

import (
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

// Spec is an application to run, as a spec file describes it. Paths on
// the host are absolute: relative ones were resolved against Dir.
//
// Zero values mean "not set": Arrow's defaults apply (see package run).
type Spec struct {
	// Version is the format version, [FormatVersion].
	Version int
	// Dir is the directory relative host paths were resolved against:
	// the spec file's own.
	Dir string
	// Name names the application: a DNS label, or empty.
	Name string

	// Image is an OCI image: a registry reference ("busybox:latest",
	// "ghcr.io/org/app@sha256:..."), docker://REF, oci:DIR[:TAG],
	// oci-archive:FILE[:TAG], docker-archive:FILE[:TAG], or the path of a
	// layout directory or archive (starting with /, ./ or ../). Paths are
	// absolute.
	Image string
	// Program is the program to run. Without Rootfs it is a host program:
	// a name looked up in the host's PATH, or a path (absolute). With
	// Rootfs it is in the root file system: a name looked up in its PATH
	// or an absolute path there.
	Program string
	// Rootfs is a host directory to use as the guest's root file system.
	Rootfs string

	// Args are the arguments. With Image they replace the image's Cmd;
	// with Program they follow it; with Rootfs and no Program, Args[0]
	// is what runs. Nil when not set; empty (non-nil) when set to [].
	Args []string
	// Entrypoint replaces an image's Entrypoint; with Rootfs it is the
	// command Args are appended to. Nil when not set; empty (non-nil) to
	// clear the image's.
	Entrypoint []string
	// Env is the environment, KEY=value, in the file's order.
	Env []string
	// Workdir is the absolute guest working directory.
	Workdir string
	// User is NAME|UID[:GROUP|GID], as [ParseUser] reads it.
	User string
	// Include are host files and directories put into the guest at their
	// host paths.
	Include []string
	// Volumes are host directories shared with the guest; their targets
	// are distinct.
	Volumes []Volume
	// Ports are published ports; no two bind the same host address, port
	// and protocol.
	Ports []Port
	// Network is the network the application joins: "user" (the
	// default: QEMU's user-mode network), "none" (loopback only), or a
	// network's name; see [CheckNetwork].
	Network string

	// CPUs is the number of vCPUs, 1 to [MaxCPUs].
	CPUs int
	// MemoryMiB is the guest's memory, [MinMemoryMiB] to [MaxMemoryMiB].
	MemoryMiB int
	// Restart is the restart policy; [RestartNo] unless set.
	Restart RestartPolicy
	// Labels are free-form metadata.
	Labels map[string]string
	// ReadOnly mounts the root file system read-only.
	ReadOnly bool
	// Stdin forwards standard input to the application.
	Stdin bool
	// TTY runs the application on a terminal.
	TTY bool
	// Kernel is a guest kernel (vmlinux or bzImage) to boot instead of
	// Arrow's.
	Kernel string
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
