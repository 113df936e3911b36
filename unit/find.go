// Package unit reads systemd service units as a distribution ships them,
// from a root file system (the host's / or an image's), and translates
// them into what Arrow's guest runs ([Service]).
//
// Units are found as systemd finds them: in /etc/systemd/system, then
// /lib/systemd/system and /usr/lib/systemd/system, with aliases (symbolic
// links), masked units (links to /dev/null), templates (NAME@.service for
// NAME@INSTANCE.service) and drop-ins (NAME.service.d/*.conf, and the
// template's NAME@.service.d for an instance). Files are parsed with
// go-systemd's unit parser; what they say is read with systemd's semantics
// (an empty assignment resets a list, specifiers, command line quoting).
//
// Every directive is in one table ([Directives]): honoured, satisfied by
// the VM itself (sandboxing), ignored as metadata, or refused with its
// name. Unit files are input Arrow does not trust (an image's): their
// size, count and content are bounded.
package unit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	sdunit "github.com/coreos/go-systemd/v22/unit"
)

// Limits on what a unit may bring.
const (
	// MaxUnitFile is the largest unit or drop-in file read.
	MaxUnitFile = 1 << 20
	// maxDropIns is the most drop-in files applied to one unit.
	maxDropIns = 128
	// maxOptions is the most assignments of one unit, drop-ins included.
	maxOptions = 8192
	// maxLinks is the most symbolic links followed to a unit's file.
	maxLinks = 16
	// maxNameLen is systemd's limit on a unit name.
	maxNameLen = 255
)

// SearchPath is where units are looked up in a root file system, the
// first directory first (systemd's system unit path, without /run, which
// is empty in an image and the host's runtime state on the host).
var SearchPath = []string{"/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// FS is a root file system units are read from. Paths are absolute and
// inside the root; nothing is followed out of it.
type FS interface {
	// ReadFile returns the content of the regular file name, following
	// symbolic links inside the root, at most max bytes (more is an
	// error).
	ReadFile(name string, max int64) ([]byte, error)
	// Readlink returns the target of the symbolic link name, verbatim;
	// an error wrapping fs.ErrInvalid when name is not a link, and
	// fs.ErrNotExist when it does not exist.
	Readlink(name string) (string, error)
	// ReadDir returns the names in the directory name (fs.ErrNotExist
	// when it is missing).
	ReadDir(name string) ([]string, error)
}

// ErrMasked is returned for a unit linked to /dev/null.
var ErrMasked = errors.New("unit is masked")

// ErrNotFound is returned when no unit of that name exists.
var ErrNotFound = errors.New("unit not found")

// Name is a service unit's name taken apart.
type Name struct {
	// Full is NAME.service or PREFIX@INSTANCE.service.
	Full string
	// Prefix is what comes before '@' (all of it but the suffix when
	// there is no '@'); Instance what comes between '@' and the suffix.
	Prefix, Instance string
	// Template says the name has an '@'.
	Template bool
}

// ParseName reads the service name the user gave: "redis-server",
// "redis-server.service", "postgresql@15-main".
func ParseName(s string) (Name, error) {
	full := s
	if !strings.HasSuffix(full, ".service") {
		if i := strings.LastIndexByte(full, '.'); i >= 0 && !strings.Contains(full[i:], "@") && slices.Contains([]string{".socket", ".timer", ".target", ".mount", ".path", ".slice", ".scope", ".device", ".swap", ".automount"}, full[i:]) {
			return Name{}, fmt.Errorf("unit %q: only service units run as arrows", s)
		}
		full += ".service"
	}
	base := strings.TrimSuffix(full, ".service")
	if base == "" || len(full) > maxNameLen {
		return Name{}, fmt.Errorf("unit name %q: want 1 to %d bytes", s, maxNameLen-len(".service"))
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return Name{}, fmt.Errorf("unit name %q: %q is not allowed (letters, digits and : - _ . \\ @)", s, c)
		}
	}
	n := Name{Full: full, Prefix: base}
	if p, inst, ok := strings.Cut(base, "@"); ok {
		if p == "" || strings.Contains(inst, "@") {
			return Name{}, fmt.Errorf("unit name %q: want PREFIX@INSTANCE", s)
		}
		n.Prefix, n.Instance, n.Template = p, inst, true
		if inst == "" {
			return Name{}, fmt.Errorf("unit %q is a template: name an instance (%s@INSTANCE)", s, p)
		}
	}
	return n, nil
}

// templateFile is the template's file name, PREFIX@.service.
func (n Name) templateFile() string { return n.Prefix + "@.service" }

// File is one file a unit was read from.
type File struct {
	Path string
	// Options are its assignments, in order.
	Options []*sdunit.UnitOption
}

// Loaded is a unit as systemd would load it: its main file (after
// aliases), its drop-ins in the order they apply, and its name.
type Loaded struct {
	Name Name
	// Files are the main file first, then the drop-ins.
	Files []File
}

// Load finds and parses the service unit name in root.
func Load(root FS, name string) (*Loaded, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	main, n, err := findMain(root, n)
	if err != nil {
		return nil, err
	}
	l := &Loaded{Name: n}
	f, err := readUnitFile(root, main)
	if err != nil {
		return nil, err
	}
	l.Files = append(l.Files, f)
	dropIns, err := findDropIns(root, n)
	if err != nil {
		return nil, err
	}
	total := len(f.Options)
	for _, p := range dropIns {
		f, err := readUnitFile(root, p)
		if err != nil {
			return nil, err
		}
		total += len(f.Options)
		if total > maxOptions {
			return nil, fmt.Errorf("unit %s: more than %d assignments", n.Full, maxOptions)
		}
		l.Files = append(l.Files, f)
	}
	return l, nil
}

// findMain finds the file of n: the unit itself, else its template, in
// the first directory of the search path that has it; a link is an alias
// (the unit is its target's name) or a mask (/dev/null).
func findMain(root FS, n Name) (string, Name, error) {
	candidates := []string{n.Full}
	if n.Template {
		candidates = append(candidates, n.templateFile())
	}
	for _, file := range candidates {
		for _, dir := range SearchPath {
			p := path.Join(dir, file)
			target, linked, err := resolveLinks(root, p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return "", n, fmt.Errorf("unit %s: %w", n.Full, err)
			}
			if target == "/dev/null" {
				return "", n, fmt.Errorf("unit %s (%s): %w", n.Full, p, ErrMasked)
			}
			if _, err := root.ReadFile(target, MaxUnitFile); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					// A dangling link is no unit, as for systemd.
					continue
				}
				return "", n, fmt.Errorf("unit %s: %w", n.Full, err)
			}
			if linked {
				// An alias: the unit is what its link names.
				alias, err := aliasName(n, path.Base(target))
				if err != nil {
					return "", n, err
				}
				n = alias
			}
			return target, n, nil
		}
	}
	return "", n, fmt.Errorf("unit %s: %w in %s", n.Full, ErrNotFound, strings.Join(SearchPath, ", "))
}

// aliasName is the unit a link to base makes of n.
func aliasName(n Name, base string) (Name, error) {
	if !strings.HasSuffix(base, ".service") {
		return n, fmt.Errorf("unit %s is an alias of %s, not a service", n.Full, base)
	}
	if strings.HasSuffix(base, "@.service") {
		if !n.Template {
			return n, fmt.Errorf("unit %s is an alias of the template %s: name an instance", n.Full, base)
		}
		base = strings.TrimSuffix(base, "@.service") + "@" + n.Instance + ".service"
	}
	return ParseName(base)
}

// resolveLinks follows the symbolic links from p inside root and returns
// the path reached, and whether any link was followed.
func resolveLinks(root FS, p string) (string, bool, error) {
	linked := false
	for range maxLinks {
		t, err := root.Readlink(p)
		if errors.Is(err, fs.ErrInvalid) {
			return p, linked, nil
		}
		if err != nil {
			return "", false, err
		}
		linked = true
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(p), t)
		}
		p = path.Clean(t)
		if p == "/dev/null" {
			return p, true, nil
		}
	}
	return "", false, fmt.Errorf("%s: more than %d symbolic links", p, maxLinks)
}

// findDropIns lists the drop-ins that apply to n, in the order systemd
// applies them: by file name, a name in an earlier directory hiding the
// same name in a later one, a link to /dev/null masking it. Drop-ins of
// "service.d" (every service) and of the template apply too.
func findDropIns(root FS, n Name) ([]string, error) {
	dirs := []string{"service.d"}
	if n.Template {
		dirs = append(dirs, n.templateFile()+".d")
	}
	// A name with dashes also takes its prefixes' drop-ins (foo-.service.d
	// for foo-bar.service), as systemd 246 and later do.
	base := strings.TrimSuffix(n.Full, ".service")
	for i := 0; i < len(base); i++ {
		if base[i] == '-' && i > 0 {
			dirs = append(dirs, base[:i+1]+".service.d")
		}
	}
	dirs = append(dirs, n.Full+".d")
	byName := map[string]string{}
	for _, d := range dirs {
		for _, sp := range SearchPath {
			dir := path.Join(sp, d)
			names, err := root.ReadDir(dir)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("unit %s: drop-ins: %w", n.Full, err)
			}
			for _, name := range names {
				if !strings.HasSuffix(name, ".conf") {
					continue
				}
				if _, ok := byName[name]; ok {
					continue
				}
				if len(byName) >= maxDropIns {
					return nil, fmt.Errorf("unit %s: more than %d drop-ins", n.Full, maxDropIns)
				}
				byName[name] = path.Join(dir, name)
			}
		}
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []string
	for _, name := range names {
		p, _, err := resolveLinks(root, byName[name])
		if err != nil {
			return nil, fmt.Errorf("unit %s: drop-in %s: %w", n.Full, byName[name], err)
		}
		if p == "/dev/null" {
			continue // masked
		}
		out = append(out, p)
	}
	return out, nil
}

// readUnitFile reads and parses one unit file.
func readUnitFile(root FS, p string) (File, error) {
	b, err := root.ReadFile(p, MaxUnitFile)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	opts, err := parseOptions(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", p, err)
	}
	return File{Path: p, Options: opts}, nil
}

// parseOptions parses a unit file's content with go-systemd's parser,
// then undoes what it keeps of line continuations: systemd joins a line
// ending in a backslash to the next with a space.
func parseOptions(b []byte) ([]*sdunit.UnitOption, error) {
	if len(b) > MaxUnitFile {
		return nil, fmt.Errorf("%d bytes, at most %d", len(b), MaxUnitFile)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, errors.New("a NUL byte: not a unit file")
	}
	// go-systemd's parser returns at an option before any section
	// without draining its lexer, whose goroutine then never ends:
	// refuse that here.
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] != '[' {
			return nil, errors.New("an assignment before the first [section]")
		}
		break
	}
	opts, err := sdunit.DeserializeOptions(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(opts) > maxOptions {
		return nil, fmt.Errorf("more than %d assignments", maxOptions)
	}
	for _, o := range opts {
		o.Value = strings.TrimSpace(strings.ReplaceAll(o.Value, "\\\n", " "))
	}
	return opts, nil
}

// DirFS is a root file system in a host directory ("/" for the host's
// own). Links are resolved in the root's terms, component by component,
// never by the host: an absolute link target means the same path under
// the directory, and ".." stops at its top.
type DirFS string

// resolve returns name with every link in it followed inside the root;
// with parentOnly, the last component is left as it is.
func (d DirFS) resolve(name string, parentOnly bool) (string, error) {
	if !path.IsAbs(name) || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%q: %w", name, fs.ErrInvalid)
	}
	todo := strings.Split(strings.Trim(path.Clean(name), "/"), "/")
	if todo[0] == "" {
		todo = nil
	}
	done := "/"
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if parentOnly && len(todo) == 0 {
			return path.Join(done, c), nil
		}
		next := path.Join(done, c)
		fi, err := os.Lstat(filepath.Join(string(d), next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many symbolic links", name)
		}
		t, err := os.Readlink(filepath.Join(string(d), next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(t) {
			done = "/"
		}
		rest := strings.Split(strings.Trim(t, "/"), "/")
		if rest[0] == "" {
			rest = nil
		}
		todo = append(rest, todo...)
		// ".." in a target: path.Join cleans it against what is done,
		// and never above the root.
		for len(todo) > 0 && (todo[0] == ".." || todo[0] == ".") {
			if todo[0] == ".." {
				done = path.Dir(done)
			}
			todo = todo[1:]
		}
	}
	return done, nil
}

// ReadFile reads name, following links inside the root.
func (d DirFS) ReadFile(name string, max int64) ([]byte, error) {
	p, err := d.resolve(name, false)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(string(d), p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, max)
	}
	return b, nil
}

// Readlink reads the link name.
func (d DirFS) Readlink(name string) (string, error) {
	p, err := d.resolve(name, true)
	if err != nil {
		return "", err
	}
	h := filepath.Join(string(d), p)
	fi, err := os.Lstat(h)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("%s: %w: not a link", name, fs.ErrInvalid)
	}
	return os.Readlink(h)
}

// ReadDir lists the directory name.
func (d DirFS) ReadDir(name string) ([]string, error) {
	p, err := d.resolve(name, false)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(string(d), p))
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%s: %w: not a directory", name, fs.ErrInvalid)
		}
		return nil, err
	}
	if len(ents) > 4*maxDropIns {
		ents = ents[:4*maxDropIns]
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}
