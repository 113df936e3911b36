package closure

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// addPackages adds the files of the Debian packages the program needs (see
// [Resolver]) and the ELF closure of the shared objects among them.
func (c *resolution) addPackages() error {
	db, release, err := loadDpkg(c.h)
	if err != nil || db == nil {
		return err
	}
	defer release()
	owners, err := db.owners(c.h, c.ownerPaths)
	if err != nil {
		return err
	}
	var (
		included = make(map[*dpkgPkg]bool)
		isOwner  = make(map[*dpkgPkg]bool)
		queue    []*dpkgPkg
	)
	add := func(p *dpkgPkg) {
		if !included[p] {
			included[p] = true
			queue = append(queue, p)
		}
	}
	for i := range c.ownerPaths {
		if o := owners[i]; o != nil {
			isOwner[o] = true
			add(o)
		}
	}
	if c.r.Recommends != RecommendsNone {
		for _, o := range queue {
			for _, d := range db.resolveDeps(o.recommends, o) {
				if !db.isBase(d) {
					add(d)
				}
			}
		}
	}
	for i := 0; i < len(queue); i++ {
		p := queue[i]
		fields := []string{p.preDepends, p.depends}
		if c.r.Recommends == RecommendsAll {
			fields = append(fields, p.recommends)
		}
		for _, f := range fields {
			for _, d := range db.resolveDeps(f, p) {
				if !db.isBase(d) {
					add(d)
				}
			}
		}
	}
	lists := make([][]string, len(queue))
	var guess []string
	for i, p := range queue {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		data, err := db.readList(c.h, p)
		if err != nil {
			if !pathError(err) {
				return err
			}
			continue // a package without a file list has no files here
		}
		lists[i] = listPaths(data)
		keep := c.keeper(isOwner[p] && (p.required() || db.isBase(p)))
		for _, lp := range lists[i] {
			if !keep(lp) {
				continue
			}
			// Where the file is once its parent is resolved: what the
			// walk below will lstat.
			dir, base := path.Split(lp)
			if rdir, _, err := c.h.resolveDir(path.Clean(dir)); err == nil {
				guess = append(guess, path.Join(rdir, base))
			}
		}
	}
	c.h.prefetch(guess)
	listed := make(map[string]bool)
	for i, p := range queue {
		trim := isOwner[p] && (p.required() || db.isBase(p))
		if err := c.addPackageFiles(p, lists[i], trim); err != nil {
			return err
		}
		for _, lp := range lists[i] {
			listed[lp] = true
		}
	}
	for i, p := range queue {
		if err := c.addPackageDirs(p, lists[i], listed); err != nil {
			return err
		}
	}
	return c.loadShared()
}

// addPackageFiles adds the regular files and symlinks among the paths of
// package p's file list. With trimBins, programs in bin directories other
// than the program's own are left out.
func (c *resolution) addPackageFiles(p *dpkgPkg, paths []string, trimBins bool) error {
	keep := c.keeper(trimBins)
	for i, lp := range paths {
		if i%256 == 0 {
			if err := c.ctx.Err(); err != nil {
				return err
			}
		}
		if !keep(lp) {
			continue
		}
		real, links, err := c.h.resolve(lp, false)
		if err != nil {
			if pathError(err) {
				continue // listed but gone
			}
			return fmt.Errorf("%s of %s: %w", lp, p, err)
		}
		if real != lp && !keep(real) {
			continue
		}
		st, err := c.h.lstat(real)
		if err != nil {
			continue
		}
		switch {
		case st.mode.IsRegular():
			if !c.rd.canRead(st) {
				continue // root's alone: the guest gets what the user could read
			}
			if err := c.h.addLinks(c.set, links); err != nil {
				return fmt.Errorf("%s of %s: %w", lp, p, err)
			}
			if err := c.h.addReal(c.set, real); err != nil {
				return fmt.Errorf("%s of %s: %w", lp, p, err)
			}
			if looksLoadable(real, st.mode) {
				c.dpkgELF = append(c.dpkgELF, real)
			}
		case st.mode&fs.ModeSymlink != 0:
			if err := c.addListed(lp); err != nil {
				return fmt.Errorf("%s of %s: %w", lp, p, err)
			}
		}
	}
	return nil
}

// keeper returns the test of whether a package's file goes into the guest.
func (c *resolution) keeper(trimBins bool) func(string) bool {
	return func(q string) bool {
		if under(q, skippedDirs) || !allowedSecret(q, "") {
			return false
		}
		return !trimBins || c.ownerSeen[q] || !under(q, binDirs)
	}
}

// addListed adds a package's file with the symlinks on its way. A
// symlink's target is added when it exists, is readable and is not a
// secret; otherwise the link is kept alone.
func (c *resolution) addListed(p string) error {
	real, links, err := c.h.resolve(p, true)
	if err == nil {
		var st stat
		if st, err = c.h.lstat(real); err == nil && !c.rd.canRead(st) {
			err = fs.ErrPermission
		}
	}
	if err != nil || !allowedSecret(real, "") {
		if err != nil && !pathError(err) {
			return err
		}
		// Add what leads to the dangling or forbidden target, without it.
		for _, l := range links {
			if l.dir {
				continue
			}
			if err := c.h.addReal(c.set, l.path); err != nil {
				return err
			}
		}
		return nil
	}
	_, _, err = c.h.addPath(c.set, p)
	return err
}

// virtualDirs are the guest's kernel file systems: nothing of the host's
// is put there.
var virtualDirs = []string{"/proc", "/sys", "/dev"}

// addInclude adds an include: a file, or a directory and everything below
// it, at its own (absolute) host path.
func (c *resolution) addInclude(inc string) error {
	p, err := c.r.abs(inc)
	if err != nil {
		return err
	}
	if under(p, virtualDirs) {
		return fmt.Errorf("include %s: %s is a kernel file system in the guest: %w", inc, p, ErrInclude)
	}
	real, _, err := c.h.resolve(p, true)
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("include %s: no such file or directory: %w", inc, ErrInclude)
		}
		return fmt.Errorf("include %s: %v: %w", inc, err, ErrInclude)
	}
	if under(real, virtualDirs) {
		return fmt.Errorf("include %s: %s is a kernel file system in the guest: %w", inc, real, ErrInclude)
	}
	rst, err := c.h.lstat(real)
	if err != nil {
		return fmt.Errorf("include %s: %v: %w", inc, err, ErrInclude)
	}
	if !c.rd.canRead(rst) {
		return fmt.Errorf("include %s: permission denied: %w", inc, ErrInclude)
	}
	_, st, err := c.h.addPath(c.set, p)
	if err != nil {
		return fmt.Errorf("include %s: %v: %w", inc, err, ErrInclude)
	}
	if st.mode.IsRegular() {
		return c.includeELF(real)
	}
	if !st.mode.IsDir() {
		return nil
	}
	w := &walker{c: c, typed: []string{p, real}, seen: make(map[string]bool)}
	if err := w.walk(real); err != nil {
		return fmt.Errorf("include %s: %w", inc, err)
	}
	return nil
}

// walker adds a directory tree for an include.
type walker struct {
	c     *resolution
	typed []string        // the include as typed and resolved
	seen  map[string]bool // real directories walked
	count int
}

func (w *walker) allowed(p string) bool {
	for _, t := range w.typed {
		if allowedSecret(p, t) {
			return true
		}
	}
	return false
}

func (w *walker) walk(dir string) error {
	if w.seen[dir] {
		return nil
	}
	w.seen[dir] = true
	c := w.c
	entries, err := os.ReadDir(c.h.host(dir))
	if err != nil {
		return fmt.Errorf("read %s: %v: %w", dir, err, ErrInclude)
	}
	for _, e := range entries {
		w.count++
		if w.count%256 == 0 {
			if err := c.ctx.Err(); err != nil {
				return err
			}
		}
		p := path.Join(dir, e.Name())
		if !w.allowed(p) {
			continue
		}
		st, err := c.h.lstat(p)
		if err != nil {
			continue // vanished
		}
		if (st.mode.IsDir() || st.mode.IsRegular()) && !c.rd.canRead(st) {
			continue // what the user cannot read stays on the host
		}
		switch {
		case st.mode.IsDir():
			if err := c.h.addReal(c.set, p); err != nil {
				return err
			}
			if err := w.walk(p); err != nil {
				return err
			}
		case st.mode.IsRegular():
			if err := c.h.addReal(c.set, p); err != nil {
				return err
			}
		case st.mode&fs.ModeSymlink != 0:
			real, _, err := c.h.resolve(p, true)
			if err == nil {
				var tst stat
				if tst, err = c.h.lstat(real); err == nil && !c.rd.canRead(tst) {
					err = fs.ErrPermission
				}
			}
			if err != nil || !w.allowed(real) || under(real, virtualDirs) {
				// Dangling, unreadable, a secret or /proc: the link
				// alone.
				if err := c.h.addReal(c.set, p); err != nil {
					return err
				}
				continue
			}
			_, tst, err := c.h.addPath(c.set, p)
			if err != nil {
				return err
			}
			if tst.mode.IsDir() && c.rd.canRead(tst) && !strings.HasPrefix(dir+"/", real+"/") {
				if err := w.walk(real); err != nil {
					return err
				}
			}
		}
		// Sockets, pipes and devices are the host's, not the guest's.
	}
	return nil
}

// includeELF adds the ELF closure of an included file that is an ELF
// executable or library, so that an included program (`--include
// /bin/ls`) runs in the guest as on the host. It is resolved in a
// namespace of its own, as the process running it will be; a library it
// needs that cannot be found is an error naming it. Files in included
// directories are taken as they are.
func (c *resolution) includeELF(real string) error {
	info, err := c.elf(real)
	if err != nil {
		return nil // not ELF (or unreadable as ELF): plain data
	}
	if c.ns != nil && !compatible(c.ns.main.info, info) {
		return nil // another architecture's object: data to the guest
	}
	o := &object{path: real, real: real, info: info}
	ns := newNamespace(o)
	if info.interp != "" {
		if err := c.addInterp(o); err != nil {
			return err
		}
	}
	return c.load(ns, o, true)
}
