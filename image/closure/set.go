package closure

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// File is one entry of the guest's file system.
type File struct {
	// Path is the absolute, clean path in the guest.
	Path string
	// Source is the host path to read a regular file from; empty for
	// directories and symlinks (and for a regular file that is empty).
	Source string
	// Mode is the file's type and permission bits, as on the host.
	Mode fs.FileMode
	// Target is a symlink's target, verbatim.
	Target string
	// UID and GID own the entry, as on the host: a state directory such
	// as /var/lib/redis must stay writable by the account the daemon
	// runs as.
	UID, GID uint32

	// Size, ModTime, ChangeTime, Inode and Device identify the host file's
	// content as it was when resolved: a cache keyed on them is invalidated
	// by any change to the file. They are zero for entries with no Source.
	Size       int64
	ModTime    time.Time
	ChangeTime time.Time
	Inode      uint64
	Device     uint64
}

// IsDir reports whether f is a directory.
func (f File) IsDir() bool { return f.Mode.IsDir() }

// IsSymlink reports whether f is a symbolic link.
func (f File) IsSymlink() bool { return f.Mode&fs.ModeSymlink != 0 }

// Set is an ordered, deduplicated set of guest files. Every file's parent
// directories are in the set too: added explicitly (with the host's modes,
// which [Resolver] does) or implied, with mode 0755, by [Set.Add]. A parent
// is always a directory, never a symlink: a path reached on the host through
// a symlinked directory (/lib -> usr/lib) is stored at its real location and
// the symlink is a separate entry, so that the guest resolves every path as
// the host does.
//
// The zero Set is empty and ready to use. A Set is not safe for concurrent
// use.
type Set struct {
	files   map[string]File
	implied map[string]bool // directories added only as someone's parent
	sorted  []string        // cache of the sorted keys; nil when stale
	bytes   int64
	// scriptNames are the account names the included packages'
	// maintainer scripts may create (see [Set.ScriptNames]).
	scriptNames map[string]bool
}

// maxScriptNames bounds the names a set keeps from maintainer scripts.
const maxScriptNames = 4096

// AddScriptNames records the words of a package's maintainer script that
// could name an account it creates (memcached's postinst runs `adduser
// ... $USER` after USER="memcache"). [Resolver] calls it for every
// included package's postinst.
func (s *Set) AddScriptNames(script []byte) {
	for _, w := range strings.FieldsFunc(string(script), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-')
	}) {
		if len(s.scriptNames) >= maxScriptNames {
			return
		}
		if len(w) > 32 || w[0] < 'a' || w[0] > 'z' {
			continue
		}
		if s.scriptNames == nil {
			s.scriptNames = make(map[string]bool)
		}
		s.scriptNames[w] = true
	}
}

// Merge adds o's files (as [Set.Add] does, in o's order) and the names
// its maintainer scripts hold.
func (s *Set) Merge(o *Set) error {
	for _, f := range o.Files() {
		if err := s.Add(f); err != nil {
			return err
		}
	}
	for n := range o.scriptNames {
		if len(s.scriptNames) >= maxScriptNames {
			break
		}
		if s.scriptNames == nil {
			s.scriptNames = make(map[string]bool)
		}
		s.scriptNames[n] = true
	}
	return nil
}

// ScriptNames reports whether name is a word of an included package's
// maintainer script (postinst): an account that script may have created,
// such as memcached's memcache, which the daemon switches to by a name
// only its configuration holds.
func (s *Set) ScriptNames(name string) bool { return s.scriptNames[name] }

// NewSet returns an empty set.
func NewSet() *Set { return &Set{} }

// Add adds f and any missing parent directories of it. The first entry
// added for a path wins, except that an explicit directory replaces one
// implied as a parent. Adding a non-directory where a directory is, or
// below a non-directory, is an error.
func (s *Set) Add(f File) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
		return fmt.Errorf("add %q: guest path must be absolute and clean", f.Path)
	}
	if f.Path == "/" {
		return nil // the root always exists
	}
	if s.files == nil {
		s.files = make(map[string]File)
		s.implied = make(map[string]bool)
	}
	if old, ok := s.files[f.Path]; ok {
		switch {
		case s.implied[f.Path] && f.IsDir():
			s.files[f.Path] = f
			delete(s.implied, f.Path)
		case old.IsDir() != f.IsDir() && s.implied[f.Path]:
			return fmt.Errorf("add %s: a directory of that name holds other files", f.Path)
		}
		return nil
	}
	if err := s.addParents(path.Dir(f.Path)); err != nil {
		return fmt.Errorf("add %s: %w", f.Path, err)
	}
	s.files[f.Path] = f
	s.sorted = nil
	if f.Mode.IsRegular() {
		s.bytes += f.Size
	}
	return nil
}

func (s *Set) addParents(dir string) error {
	for d := dir; d != "/"; d = path.Dir(d) {
		if old, ok := s.files[d]; ok {
			if !old.IsDir() {
				return fmt.Errorf("parent %s is not a directory", d)
			}
			break // its own parents were added with it
		}
		s.files[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
		s.implied[d] = true
		s.sorted = nil
	}
	return nil
}

// Len is the number of entries, directories included.
func (s *Set) Len() int { return len(s.files) }

// Bytes is the total size of the regular files.
func (s *Set) Bytes() int64 { return s.bytes }

// Lookup returns the entry at guest path p.
func (s *Set) Lookup(p string) (File, bool) {
	f, ok := s.files[p]
	return f, ok
}

// Files returns the entries sorted by path, which puts every directory
// before its contents.
func (s *Set) Files() []File {
	if s.sorted == nil {
		s.sorted = make([]string, 0, len(s.files))
		for p := range s.files {
			s.sorted = append(s.sorted, p)
		}
		sort.Strings(s.sorted)
	}
	out := make([]File, len(s.sorted))
	for i, p := range s.sorted {
		out[i] = s.files[p]
	}
	return out
}

// String summarizes the set for diagnostics.
func (s *Set) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d entries, %d bytes", s.Len(), s.Bytes())
	return b.String()
}
