package closure

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// object is an ELF object the loader maps: the program, a library, or a
// shared object found among package files.
type object struct {
	path   string // guest path as found, symlinks not resolved
	real   string // guest path with symlinks resolved
	info   *elfInfo
	loader *object // the object whose DT_NEEDED brought this one in
}

// origin is $ORIGIN: the directory of the program's real path (the kernel
// gives ld.so the resolved /proc/self/exe) or of a library's path as found.
func (o *object) origin() string {
	if o.loader == nil {
		return path.Dir(o.real)
	}
	return path.Dir(o.path)
}

// namespace is one process image's loader state: the program and the
// libraries loaded by the names they were asked for.
type namespace struct {
	main     *object
	loaded   map[string]bool // DT_NEEDED names already resolved
	mapped   map[string]bool // real paths already mapped
	lib      string          // $LIB
	platform string          // $PLATFORM
	defaults []string        // default directories
	system   map[string]bool // directories the guest's loader searches without ld.so.cache
}

func newNamespace(main *object) *namespace {
	tuple, platform, defaults := archOf(main.info)
	ns := &namespace{
		main:     main,
		loaded:   make(map[string]bool),
		mapped:   map[string]bool{main.real: true},
		lib:      "lib",
		platform: platform,
		defaults: defaults,
		system:   make(map[string]bool),
	}
	if tuple != "" {
		ns.lib = "lib/" + tuple
		ns.system["/lib/"+tuple] = true
		ns.system["/usr/lib/"+tuple] = true
	} else if main.info.class == elf.ELFCLASS64 {
		ns.lib = "lib64"
	}
	ns.system["/lib"] = true
	ns.system["/usr/lib"] = true
	return ns
}

// elfProgram adds the ELF closure of the program at real guest path real.
func (c *resolution) elfProgram(real string, info *elfInfo) error {
	main := &object{path: real, real: real, info: info}
	ns := newNamespace(main)
	c.ns = ns
	if info.interp != "" {
		if err := c.addInterp(main); err != nil {
			return err
		}
	}
	return c.load(ns, main, true)
}

// addInterp adds the PT_INTERP of o.
func (c *resolution) addInterp(o *object) error {
	ip := o.info.interp
	if !path.IsAbs(ip) {
		ip = path.Join(o.origin(), ip)
	}
	if _, st, err := c.h.addPath(c.set, path.Clean(ip)); err != nil || !st.mode.IsRegular() {
		if err == nil || isNotExist(err) {
			return &LibraryError{Library: o.info.interp, Needer: o.path, Interpreter: true}
		}
		return fmt.Errorf("ELF interpreter %s of %s: %w", o.info.interp, o.path, err)
	}
	return nil
}

// load adds the DT_NEEDED closure of root, breadth first as ld.so loads.
// When strict, an unresolvable library is an error; otherwise the object
// is left incomplete.
func (c *resolution) load(ns *namespace, root *object, strict bool) error {
	queue := []*object{root}
	for len(queue) > 0 {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		o := queue[0]
		queue = queue[1:]
		for _, name := range o.info.needed {
			if ns.loaded[name] {
				continue
			}
			lib, searched, err := c.findLib(ns, o, name)
			if err != nil {
				return err
			}
			if lib == nil {
				if strict {
					return &LibraryError{Library: name, Needer: o.path, Searched: searched}
				}
				continue
			}
			ns.loaded[name] = true
			if _, _, err := c.h.addPath(c.set, lib.path); err != nil {
				return fmt.Errorf("add %s: %w", lib.path, err)
			}
			if !ns.mapped[lib.real] {
				ns.mapped[lib.real] = true
				queue = append(queue, lib)
			}
		}
	}
	return nil
}

// findLib looks name up for object o the way ld.so does. It returns nil
// and the directories searched when there is no such library.
func (c *resolution) findLib(ns *namespace, o *object, name string) (*object, []string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !path.IsAbs(p) {
			var err error
			if p, err = c.r.abs(p); err != nil {
				return nil, nil, err
			}
		}
		lib, err := c.candidate(ns, o, path.Clean(p))
		return lib, nil, err
	}
	var searched []string
	try := func(dirs []string, from *object) (*object, error) {
		for _, d := range dirs {
			d = ns.expand(d, from)
			if !path.IsAbs(d) {
				continue // relative to the process's working directory
			}
			d = path.Clean(d)
			searched = append(searched, d)
			lib, err := c.candidate(ns, o, path.Join(d, name))
			if lib != nil || err != nil {
				return lib, err
			}
		}
		return nil, nil
	}
	if !o.info.hasRunpath {
		sawMain := false
		for l := o; l != nil; l = l.loader {
			sawMain = sawMain || l == ns.main
			if lib, err := try(l.info.rpath, l); lib != nil || err != nil {
				return lib, searched, err
			}
		}
		if !sawMain {
			if lib, err := try(ns.main.info.rpath, ns.main); lib != nil || err != nil {
				return lib, searched, err
			}
		}
	}
	if lib, err := try(c.r.LibraryPath, o); lib != nil || err != nil {
		return lib, searched, err
	}
	if lib, err := try(o.info.runpath, o); lib != nil || err != nil {
		return lib, searched, err
	}
	if o.info.nodeflib {
		return nil, searched, nil
	}
	if err := c.loadLDCache(); err != nil {
		return nil, searched, err
	}
	for _, p := range c.cache.lookup(name) {
		searched = append(searched, ldCachePath+":"+p)
		lib, err := c.candidate(ns, o, path.Clean(p))
		if err != nil {
			return nil, searched, err
		}
		if lib != nil {
			if !ns.system[path.Dir(lib.path)] {
				c.needCache = true
			}
			return lib, searched, nil
		}
	}
	for _, d := range ns.defaults {
		searched = append(searched, d)
		lib, err := c.candidate(ns, o, path.Join(d, name))
		if err != nil {
			return nil, searched, err
		}
		if lib != nil {
			if !ns.system[d] {
				c.needCache = true
			}
			return lib, searched, nil
		}
	}
	return nil, searched, nil
}

// candidate checks whether guest path p is a library ns can load: a
// regular file (through symlinks) with the program's ELF class, byte order
// and machine. It returns nil when not; errors are for failures to read
// the host, not for unsuitable files.
func (c *resolution) candidate(ns *namespace, loader *object, p string) (*object, error) {
	real, st, err := c.h.stat(p)
	if err != nil {
		if pathError(err) {
			return nil, nil
		}
		return nil, err
	}
	if !st.mode.IsRegular() {
		return nil, nil
	}
	info, err := c.elf(real)
	if err != nil {
		// Not ELF, corrupt, unreadable: ld.so skips it and goes on.
		return nil, nil
	}
	if !compatible(ns.main.info, info) {
		return nil, nil
	}
	return &object{path: p, real: real, info: info, loader: loader}, nil
}

// expand replaces the dynamic string tokens of a search directory.
func (ns *namespace) expand(d string, o *object) string {
	if !strings.Contains(d, "$") {
		return d
	}
	r := strings.NewReplacer(
		"${ORIGIN}", o.origin(), "$ORIGIN", o.origin(),
		"${LIB}", ns.lib, "$LIB", ns.lib,
		"${PLATFORM}", ns.platform, "$PLATFORM", ns.platform,
	)
	return r.Replace(d)
}

// loadLDCache reads /etc/ld.so.cache once. A missing or malformed cache is
// ignored, as ld.so ignores it.
func (c *resolution) loadLDCache() error {
	if c.cacheLoaded {
		return nil
	}
	c.cacheLoaded = true
	data, err := c.h.readFile(ldCachePath)
	if err != nil {
		if pathError(err) {
			return nil
		}
		return fmt.Errorf("read %s: %w", ldCachePath, err)
	}
	cache, err := parseLDCache(data)
	if err != nil {
		return nil
	}
	c.cache = cache
	return nil
}

// loadShared adds the ELF closure of objects found among package files:
// shared objects the program may dlopen (extension modules) and programs
// it may run. They are resolved in the namespace of the last ELF program,
// and left incomplete when a library is missing.
func (c *resolution) loadShared() error {
	c.prefetchELF(c.dpkgELF)
	for _, p := range c.dpkgELF {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if c.ns == nil || c.ns.mapped[p] {
			continue
		}
		info, err := c.elf(p)
		if err != nil {
			if errors.Is(err, errNotELF) || pathError(err) {
				continue
			}
			continue // a corrupt object the program cannot load either
		}
		if !compatible(c.ns.main.info, info) {
			continue
		}
		o := &object{path: p, real: p, info: info}
		c.ns.mapped[p] = true
		if info.interp != "" {
			if err := c.addInterp(o); err != nil && !errors.Is(err, ErrLibraryNotFound) {
				return err
			}
		}
		// A name resolved before is what this object gets too (ld.so
		// reuses a loaded library); a name that failed is tried again
		// with this object's search path.
		if err := c.load(c.ns, o, false); err != nil {
			return err
		}
	}
	return nil
}

// prefetchELF parses the ELF objects at real guest paths concurrently and
// caches the results.
func (c *resolution) prefetchELF(paths []string) {
	var todo []string
	for _, p := range paths {
		if _, ok := c.elfs[p]; !ok {
			todo = append(todo, p)
		}
	}
	results := make([]elfResult, len(todo))
	parallel(len(todo), func(i int) {
		results[i].info, results[i].err = c.h.readELFAt(todo[i])
	})
	for i, p := range todo {
		c.elfs[p] = results[i]
	}
}

// looksLoadable reports whether a package file may be an ELF object worth
// resolving: a shared object by name, or executable.
func looksLoadable(p string, mode fs.FileMode) bool {
	if !mode.IsRegular() {
		return false
	}
	if mode.Perm()&0o111 != 0 {
		return true
	}
	b := path.Base(p)
	return strings.HasSuffix(b, ".so") || strings.Contains(b, ".so.")
}
