package closure

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultGuestPath is the PATH the guest runs applications with; a script
// starting "#!/usr/bin/env NAME" has NAME looked up in it.
const DefaultGuestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Recommends says which Recommends of Debian packages are followed.
type Recommends int

const (
	// RecommendsOwners follows the Recommends of the packages that own
	// the program (and its symlinks and "#!" interpreters), one level:
	// the recommended packages and their Depends are included, their own
	// Recommends are not. It is the default because Debian splits
	// interpreters into a "-minimal" core whose Recommends completes it:
	// /usr/bin/python3.11 belongs to python3.11-minimal, which lacks
	// json, and Recommends python3.11, which Depends on
	// libpython3.11-stdlib. Following every Recommends instead would add
	// ca-certificates and openssl to python3 (and much more elsewhere).
	RecommendsOwners Recommends = iota
	// RecommendsNone follows Depends and Pre-Depends only.
	RecommendsNone
	// RecommendsAll follows Recommends of every included package,
	// recursively.
	RecommendsAll
)

// Resolver computes the closure of a host program: every file it needs to
// run in a guest that has nothing else. A Resolver holds no state between
// calls: each [Resolver.Resolve] reads the host afresh, so the result
// reflects the host as it is now.
//
// The closure of a program is:
//
//   - the program and every symlink on its path;
//   - for an ELF executable: its PT_INTERP and its DT_NEEDED libraries,
//     recursively, looked up as ld.so does (DT_RPATH of the object and
//     its loaders unless the object has a DT_RUNPATH, [Resolver.LibraryPath],
//     DT_RUNPATH, /etc/ld.so.cache, then the default directories), with
//     $ORIGIN, $LIB and $PLATFORM expanded and libraries of another ELF
//     class or machine skipped. /etc/ld.so.cache itself is included when
//     a library was found in a directory the guest's loader would not
//     search without it;
//   - for a "#!" script: its interpreter's closure, recursively, and for
//     "#!/usr/bin/env NAME" the closure of NAME as found in
//     [Resolver.GuestPath];
//   - unless NoDpkg is set, the files of the Debian packages the program
//     needs (see below);
//   - /bin/sh and its ELF closure, for system(3) and popen(3);
//   - the includes, recursively for directories.
//
// # Debian packages
//
// Interpreters need more than their libraries: python3 its standard
// library, perl its modules. The owners of the program are the packages
// whose file lists (/var/lib/dpkg/info/*.list) hold the program, any
// symlink it was invoked through, or any of its "#!" interpreters
// (/usr/bin/python3 is python3-minimal's, its target /usr/bin/python3.11
// python3.11-minimal's). The packages included are the owners, the
// Recommends of the owners (see [Recommends]), and their Depends and
// Pre-Depends, recursively, where a dependency is the first installed
// alternative, found by name or through Provides.
//
// Packages of the base system are left out, and not followed: those that
// are Essential, of Priority required, or depended on (recursively) by
// such a package. Every Debian system has them, the ELF closure already
// brings the libraries among them a program uses, and their other files
// (libc6's gconv modules, coreutils' hundred programs) would bloat the
// guest. A base package that owns the program is included all the same
// (perl-base holds perl's modules), but without the other programs in its
// bin and sbin directories: /usr/bin/env does not bring the rest of
// coreutils.
//
// Of an included package, the regular files, symlinks and directories are
// taken, and what it needs beyond them: the state
// directories its postinst makes, empty; the host's unlisted files in its
// own configuration directory (/etc/nginx); files its postinst copies from
// its own. Every entry
// keeps its host owner and mode. Files the user running Arrow may
// not read (root's 0600 files, for a user) are left out, here and in
// included directories. Documentation (/usr/share/doc,
// man, info, locale, lintian, bug) is left out, as are host secrets (see
// below). Shared objects among the files (Python's extension modules,
// Perl's XS modules) get their own ELF closure, so that a module's library
// from the base system (libtinfo for curses, say) is there; a module whose
// library is not installed is simply left incomplete, as it is on the
// host.
//
// # Secrets
//
// Host secrets never enter the guest unless the user names them: files
// found through packages or in included directories are skipped when they
// are, or are below, /etc/shadow, /etc/gshadow, /etc/ssl/private,
// /etc/sudoers, SSH host private keys, /root, /home/* or a key store such
// as .ssh or .gnupg. An include names a secret explicitly when the typed
// path is the secret or below it: `--include /home/alice/src` brings that
// tree (without its .ssh), `--include /etc/shadow` brings the shadow file.
// The program itself and its libraries are what the user asked for and are
// never skipped.
type Resolver struct {
	// Root is the host's root directory: "/" (the default), or a tree
	// standing for it in tests. Every path the resolver reads, and every
	// absolute symlink target, is taken relative to it.
	Root string
	// Path is the search path for a program named without a slash; the
	// process's $PATH when empty.
	Path string
	// GuestPath is the guest's PATH, for "#!/usr/bin/env NAME" scripts;
	// DefaultGuestPath when empty.
	GuestPath string
	// Dir is the directory relative program names and includes are taken
	// from; the process's working directory when empty.
	Dir string
	// LibraryPath are extra directories searched for shared libraries
	// where ld.so searches LD_LIBRARY_PATH (after DT_RPATH, before
	// DT_RUNPATH). The guest must be given the same LD_LIBRARY_PATH.
	LibraryPath []string
	// NoDpkg leaves out the files of Debian packages.
	NoDpkg bool
	// Recommends says which Recommends are followed; see [Recommends].
	Recommends Recommends

	// noShell leaves /bin/sh out, for tests of a program's own closure.
	noShell bool
}

// Program finds the program to run the way execvp(3) does: a name with a
// slash is a path, taken relative to Dir when relative; any other name is
// looked up in Path, skipping directories and files without an execute
// bit. It returns a clean absolute path, symlinks not resolved (they are
// part of the closure). The error matches [ErrNotFound] when there is no
// such program and [ErrNotExecutable] when the only candidates may not be
// executed.
func (r *Resolver) Program(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("empty program name: %w", ErrNotFound)
	}
	h := newHostFS(r.Root)
	if strings.Contains(name, "/") {
		p, err := r.abs(name)
		if err != nil {
			return "", err
		}
		if err := checkExec(h, p); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
	search := r.Path
	if search == "" {
		search = os.Getenv("PATH")
	}
	p, err := lookPath(h, name, search)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// lookPath finds name in the colon-separated search path. Relative and
// empty elements are skipped (they would mean a different directory on the
// host and in the guest).
func lookPath(h *hostFS, name, search string) (string, error) {
	var denied error
	for _, dir := range filepath.SplitList(search) {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, name)
		err := checkExec(h, p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, ErrNotExecutable) && denied == nil {
			denied = fmt.Errorf("%s: %w", p, err)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("%w in PATH", ErrNotFound)
}

// checkExec checks that guest path p is a file execve(2) would consider.
func checkExec(h *hostFS, p string) error {
	_, st, err := h.stat(p)
	switch {
	case isNotExist(err):
		return ErrNotFound
	case err != nil:
		return err
	case st.mode.IsDir():
		return fmt.Errorf("is a directory: %w", ErrNotExecutable)
	case !st.mode.IsRegular():
		return fmt.Errorf("not a regular file: %w", ErrNotExecutable)
	case st.mode.Perm()&0o111 == 0:
		return fmt.Errorf("no execute permission: %w", ErrNotExecutable)
	}
	return nil
}

// abs makes p absolute and clean, relative to r.Dir.
func (r *Resolver) abs(p string) (string, error) {
	if path.IsAbs(p) {
		return path.Clean(p), nil
	}
	dir := r.Dir
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("working directory: %w", err)
		}
		dir = wd
	}
	return path.Join(dir, p), nil
}

// Resolve returns the closure of program (see [Resolver]) plus includes.
// program should come from [Resolver.Program]; a relative one is taken
// relative to Dir. Errors match [ErrNotFound], [ErrNotExecutable],
// [ErrNotProgram], [ErrLibraryNotFound] (a [*LibraryError]) or
// [ErrInclude].
func (r *Resolver) Resolve(ctx context.Context, program string, includes []string) (*Set, error) {
	if program == "" {
		return nil, fmt.Errorf("empty program name: %w", ErrNotFound)
	}
	p, err := r.abs(program)
	if err != nil {
		return nil, err
	}
	c := &resolution{
		r:         r,
		ctx:       ctx,
		h:         newHostFS(r.Root),
		set:       NewSet(),
		elfs:      make(map[string]elfResult),
		ownerSeen: make(map[string]bool),
		rd:        currentReader(),
	}
	if err := c.addProgram(p, 0); err != nil {
		return nil, err
	}
	if !r.noShell {
		if err := c.addShell(); err != nil {
			return nil, err
		}
	}
	if !r.NoDpkg {
		if err := c.addPackages(); err != nil {
			return nil, err
		}
	}
	for _, inc := range includes {
		if err := c.addInclude(inc); err != nil {
			return nil, err
		}
	}
	if c.needCache {
		if _, _, err := c.h.addPath(c.set, ldCachePath); err != nil && !isNotExist(err) {
			return nil, fmt.Errorf("add %s: %w", ldCachePath, err)
		}
	}
	return c.set, nil
}

// shellPath is the shell system(3) and popen(3) run.
const shellPath = "/bin/sh"

// addShell adds /bin/sh and its ELF closure: any program may run a command
// through system(3) or popen(3) (PostgreSQL's initdb does), which exec
// /bin/sh. Its package is not followed: dash's own files are all it needs.
// A host without /bin/sh (a test tree) gives a guest without one.
func (c *resolution) addShell() error {
	if err := checkExec(c.h, shellPath); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("%s: %w", shellPath, err)
	}
	real, _, err := c.h.addPath(c.set, shellPath)
	if err != nil {
		return fmt.Errorf("add %s: %w", shellPath, err)
	}
	info, err := c.elf(real)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", shellPath, err, ErrNotProgram)
	}
	// Package objects are resolved in the program's namespace, not the
	// shell's.
	ns := c.ns
	defer func() { c.ns = ns }()
	return c.elfProgram(real, info)
}

// ldCachePath is glibc's library cache.
const ldCachePath = "/etc/ld.so.cache"

// resolution is the state of one Resolve call.
type resolution struct {
	r   *Resolver
	ctx context.Context
	h   *hostFS
	set *Set
	rd  reader // who will read the files

	elfs        map[string]elfResult // parsed ELF objects by real path
	cache       *ldCache
	cacheLoaded bool
	needCache   bool       // the guest needs /etc/ld.so.cache
	ns          *namespace // the last ELF program's, for package objects
	dpkgELF     []string   // shared objects and programs among package files

	ownerPaths [][]string      // paths whose packages own the program, each with its aliases
	ownerSeen  map[string]bool // every path of ownerPaths
}

type elfResult struct {
	info *elfInfo
	err  error
}

// elf parses the ELF object at real guest path p, once.
func (c *resolution) elf(p string) (*elfInfo, error) {
	if r, ok := c.elfs[p]; ok {
		return r.info, r.err
	}
	info, err := c.h.readELFAt(p)
	c.elfs[p] = elfResult{info, err}
	return info, err
}

// readELFAt reads the ELF object at guest path p.
func (h *hostFS) readELFAt(p string) (*elfInfo, error) {
	f, err := h.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f), &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: h.host(p), Err: err}
	}
	return readELF(f, st.Size)
}

// addProgram adds program p: itself, then its ELF closure or its
// interpreter's. depth counts "#!" interpreters.
func (c *resolution) addProgram(p string, depth int) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if depth >= maxInterpreterDepth {
		return fmt.Errorf("%s: too many levels of #! interpreters: %w", p, ErrNotProgram)
	}
	if err := checkExec(c.h, p); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	c.recordOwner(p)
	real, _, err := c.h.addPath(c.set, p)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	head, err := c.head(real)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	switch {
	case strings.HasPrefix(string(head), elf.ELFMAG):
		info, err := c.elf(real)
		if err != nil {
			return fmt.Errorf("%s: %v: %w", p, err, ErrNotProgram)
		}
		if info.typ != elf.ET_EXEC && info.typ != elf.ET_DYN {
			return fmt.Errorf("%s: ELF %v: %w", p, info.typ, ErrNotProgram)
		}
		return c.elfProgram(real, info)
	case strings.HasPrefix(string(head), "#!"):
		interp, arg, ok := shebang(head)
		if !ok {
			return fmt.Errorf("%s: empty #! line: %w", p, ErrNotProgram)
		}
		ip := interp
		if !path.IsAbs(ip) {
			var err error
			if ip, err = c.r.abs(ip); err != nil {
				return err
			}
		}
		if err := c.addProgram(ip, depth+1); err != nil {
			return fmt.Errorf("interpreter of %s: %w", p, err)
		}
		if !isEnv(ip) {
			return nil
		}
		name := envCommand(arg)
		if name == "" {
			return nil
		}
		var target string
		if strings.Contains(name, "/") {
			if target, err = c.r.abs(name); err != nil {
				return err
			}
		} else {
			search := c.r.GuestPath
			if search == "" {
				search = DefaultGuestPath
			}
			if target, err = lookPath(c.h, name, search); err != nil {
				return fmt.Errorf("%s: %s (run by %s) in the guest's PATH: %w", p, name, interp, err)
			}
		}
		if err := c.addProgram(target, depth+1); err != nil {
			return fmt.Errorf("interpreter of %s: %w", p, err)
		}
		return nil
	}
	return fmt.Errorf("%s: %w", p, ErrNotProgram)
}

// head reads the first bytes of the file at real guest path p.
func (c *resolution) head(p string) ([]byte, error) {
	f, err := c.h.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, headSize)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// recordOwner remembers p and every link of the chain its last component
// goes through (not its symlinked parent directories) as paths whose
// package owns the program, under every name dpkg may list them by.
func (c *resolution) recordOwner(p string) {
	for i := 0; i < maxSymlinks; i++ {
		real, _, err := c.h.resolve(p, false)
		if err != nil {
			return
		}
		var group []string
		for _, a := range append([]string{p}, c.aliases(real)...) {
			if !c.ownerSeen[a] {
				c.ownerSeen[a] = true
				group = append(group, a)
			}
		}
		if len(group) > 0 && !under(real, unpackaged) {
			c.ownerPaths = append(c.ownerPaths, group)
		}
		st, err := c.h.lstat(real)
		if err != nil || st.mode&fs.ModeSymlink == 0 {
			return
		}
		if path.IsAbs(st.target) {
			p = path.Clean(st.target)
		} else {
			p = path.Join(path.Dir(real), st.target)
		}
	}
}

// mergedDirs are the top-level directories a merged-/usr system makes
// symlinks into /usr. dpkg may list a file under either name.
var mergedDirs = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/libo32"}

// aliases returns real path p (whose parents are real directories) and its
// names through the symlinked top-level directories: /usr/bin/echo is also
// /bin/echo when /bin -> usr/bin.
func (c *resolution) aliases(p string) []string {
	out := []string{p}
	for _, d := range mergedDirs {
		st, err := c.h.lstat(d)
		if err != nil || st.mode&fs.ModeSymlink == 0 {
			continue
		}
		real, _, err := c.h.resolve(d, true)
		if err != nil || real == d {
			continue
		}
		if rest, ok := strings.CutPrefix(p, real+"/"); ok {
			out = append(out, d+"/"+rest)
		}
	}
	return out
}
