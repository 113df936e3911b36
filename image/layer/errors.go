package layer

import (
	"errors"
	"fmt"
)

// Errors Apply and Decompress return, wrapped with context; test for them
// with errors.Is.
var (
	// ErrTraversal: an entry's name, or a hard link's target, climbs above
	// the root with "..".
	ErrTraversal = errors.New("path climbs out of the root")
	// ErrSymlinkEscape: an entry's path goes through a symbolic link whose
	// target climbs above the root.
	ErrSymlinkEscape = errors.New("path goes through a symbolic link that leads out of the root")
	// ErrNameTooLong: a name or link target is longer than Linux allows
	// (255 bytes a component, 4095 a path).
	ErrNameTooLong = errors.New("name too long")
	// ErrTooLarge: a file is larger than Options.MaxFileSize, or the layer's
	// files together are larger than Options.MaxTotalSize.
	ErrTooLarge = errors.New("layer too large")
	// ErrTooManyEntries: the layer has more than Options.MaxEntries entries.
	ErrTooManyEntries = errors.New("too many entries in layer")
	// ErrCorrupt: the archive or its compressed stream is malformed or
	// truncated.
	ErrCorrupt = errors.New("corrupt layer")
	// ErrInvalidEntry: an entry that cannot be applied, such as a hard link
	// to a missing file or a path whose parent is not a directory.
	ErrInvalidEntry = errors.New("invalid layer entry")
	// ErrUnsupportedCompression: the stream is compressed with something
	// other than gzip or zstd.
	ErrUnsupportedCompression = errors.New("unsupported layer compression")
)

// EntryError is the error about one entry of a layer.
type EntryError struct {
	// Name is the entry's name as the archive spells it.
	Name string
	// Err is what went wrong; it wraps one of the package's errors when one
	// applies.
	Err error
}

// Error implements error.
func (e *EntryError) Error() string { return fmt.Sprintf("layer entry %q: %v", e.Name, e.Err) }

// Unwrap returns e.Err.
func (e *EntryError) Unwrap() error { return e.Err }
