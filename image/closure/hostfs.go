package closure

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxSymlinks bounds the symlinks followed resolving one path, as the
// kernel's MAXSYMLINKS does.
const maxSymlinks = 40

// stat is the part of lstat(2) the resolver uses.
type stat struct {
	mode   fs.FileMode
	size   int64
	mtime  time.Time
	ctime  time.Time
	ino    uint64
	uid    uint32
	gid    uint32
	dev    uint64
	target string // for symlinks
}

// hostFS reads the host tree under root on behalf of one Resolve call:
// every guest path is looked up as root+path, absolute symlink targets are
// re-rooted, and lstat results are memoized (a closure revisits the same
// directories thousands of times).
type hostFS struct {
	root  string // "/" or a directory standing for it
	cache map[string]statResult
	dirs  map[string]dirResult // resolved directories
}

type dirResult struct {
	real  string
	links []link // shared: never appended to in place
	err   error
}

type statResult struct {
	st  stat
	err error
}

func newHostFS(root string) *hostFS {
	if root == "" {
		root = "/"
	}
	return &hostFS{
		root:  filepath.Clean(root),
		cache: make(map[string]statResult, 2048),
		dirs:  make(map[string]dirResult, 256),
	}
}

// host is the host path of guest path p.
func (h *hostFS) host(p string) string {
	if h.root == "/" {
		return p
	}
	return filepath.Join(h.root, p)
}

// lstat is a memoized lstat(2) of guest path p, which must be clean and
// absolute.
func (h *hostFS) lstat(p string) (stat, error) {
	if r, ok := h.cache[p]; ok {
		return r.st, r.err
	}
	st, err := lstatHost(h.host(p))
	h.cache[p] = statResult{st, err}
	return st, err
}

// prefetch lstats the given guest paths (clean, absolute, with real
// parents) concurrently and caches the results, so that the sequential
// walk that follows finds them there. Stat calls dominate a closure of
// hundreds of files.
func (h *hostFS) prefetch(paths []string) {
	var todo []string
	for _, p := range paths {
		if _, ok := h.cache[p]; !ok {
			todo = append(todo, p)
		}
	}
	results := make([]statResult, len(todo))
	parallel(len(todo), func(i int) {
		st, err := lstatHost(h.host(todo[i]))
		results[i] = statResult{st, err}
	})
	for i, p := range todo {
		h.cache[p] = results[i]
	}
}

// parallel runs f(0) ... f(n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/32+1)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// lstatHost is lstat(2) of host path name.
func lstatHost(name string) (stat, error) {
	var (
		st  stat
		sys syscall.Stat_t
	)
	if err := ignoringEINTR(func() error { return syscall.Lstat(name, &sys) }); err != nil {
		return st, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	st.mode = fileMode(sys.Mode)
	st.size = sys.Size
	st.mtime = time.Unix(sys.Mtim.Sec, sys.Mtim.Nsec)
	st.ctime = time.Unix(sys.Ctim.Sec, sys.Ctim.Nsec)
	st.ino = sys.Ino
	st.uid, st.gid = sys.Uid, sys.Gid
	st.dev = uint64(sys.Dev)
	if st.mode&fs.ModeSymlink != 0 {
		var err error
		if st.target, err = readlink(name, sys.Size); err != nil {
			return st, err
		}
	}
	return st, nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// readlink reads the target of symlink name, whose lstat size is size.
func readlink(name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 64 || n > 1<<16 {
		n = 256
	}
	for {
		b := make([]byte, n)
		var m int
		err := ignoringEINTR(func() error {
			var err error
			m, err = syscall.Readlink(name, b)
			return err
		})
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
		}
		if m < n {
			return string(b[:m]), nil
		}
		if n >= 1<<20 {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: syscall.ENAMETOOLONG}
		}
		n *= 2
	}
}

// fileMode converts a stat(2) mode to an fs.FileMode, as os.Lstat does.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// link is one step of resolving a path: a symlink met on the way (its
// guest path, whose parents are real directories, and its target as
// written) or, with dir set, a real directory passed through. The guest
// needs every one of them for the path to resolve there as on the host.
type link struct {
	path, target string
	dir          bool
}

// resolve resolves guest path p the way the kernel does, component by
// component, following every symlink on the way (and the last component's
// too when follow is set). It returns the real guest path, whose parents
// are all real directories, and the symlinks it went through in order.
// Relative components are resolved against "/" (p should be absolute).
// The returned links may be shared with later calls: do not modify them.
func (h *hostFS) resolve(p string, follow bool) (string, []link, error) {
	// The fast path: the parent directory resolved once, then the last
	// component. Paths that need more go the slow way.
	if len(p) < 2 || p[0] != '/' || strings.Contains(p, "/.") || strings.Contains(p, "//") || p[len(p)-1] == '/' {
		return h.resolveSlow(p, follow)
	}
	i := strings.LastIndexByte(p, '/')
	dir, base := p[:i], p[i+1:]
	if dir == "" {
		dir = "/"
	}
	rdir, links, err := h.resolveDir(dir)
	if err != nil {
		return "", links, err
	}
	next := base
	if rdir == "/" {
		next = "/" + base
	} else {
		next = rdir + "/" + base
	}
	st, err := h.lstat(next)
	if err != nil {
		return "", links, err
	}
	if follow && st.mode&fs.ModeSymlink != 0 {
		return h.resolveSlow(p, follow)
	}
	return next, links, nil
}

// resolveDir resolves directory d, once.
func (h *hostFS) resolveDir(d string) (string, []link, error) {
	if d == "/" {
		return "/", nil, nil
	}
	if r, ok := h.dirs[d]; ok {
		return r.real, r.links, r.err
	}
	real, links, err := h.resolve(d, true)
	if err == nil {
		var st stat
		if st, err = h.lstat(real); err == nil && !st.mode.IsDir() {
			err = &fs.PathError{Op: "resolve", Path: d, Err: syscall.ENOTDIR}
		}
	}
	if err == nil {
		links = append(links[:len(links):len(links)], link{path: real, dir: true})
	}
	h.dirs[d] = dirResult{real, links, err}
	return real, links, err
}

// resolveSlow is resolve done component by component.
func (h *hostFS) resolveSlow(p string, follow bool) (string, []link, error) {
	var links []link
	todo := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		st, err := h.lstat(next)
		if err != nil {
			return "", links, err
		}
		last := len(todo) == 0
		if st.mode&fs.ModeSymlink != 0 && (!last || follow) {
			hops++
			if hops > maxSymlinks {
				return "", links, &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
			}
			links = append(links, link{path: next, target: st.target})
			if strings.HasPrefix(st.target, "/") {
				cur = "/"
			}
			todo = append(strings.Split(st.target, "/"), todo...)
			continue
		}
		if !last {
			if !st.mode.IsDir() {
				return "", links, &fs.PathError{Op: "resolve", Path: p, Err: syscall.ENOTDIR}
			}
			links = append(links, link{path: next, dir: true})
		}
		cur = next
	}
	return cur, links, nil
}

// stat resolves p, following every symlink, and returns the real path and
// what is there.
func (h *hostFS) stat(p string) (string, stat, error) {
	real, _, err := h.resolve(p, true)
	if err != nil {
		return "", stat{}, err
	}
	st, err := h.lstat(real)
	return real, st, err
}

// reader is who reads the host's files: the process's credentials, to
// tell files it could not read from those it can.
type reader struct {
	uid    int
	groups map[uint32]bool
}

func currentReader() reader {
	r := reader{uid: os.Geteuid(), groups: map[uint32]bool{uint32(os.Getegid()): true}}
	if r.uid != 0 {
		if gs, err := os.Getgroups(); err == nil {
			for _, g := range gs {
				r.groups[uint32(g)] = true
			}
		}
	}
	return r
}

// canRead reports whether the process may read a file of this mode and
// owner (a directory: list it), by its permission bits.
func (r reader) canRead(st stat) bool {
	perm := st.mode.Perm()
	if st.mode.IsDir() {
		perm &= 0o555 // listing needs read and search
	}
	switch {
	case r.uid == 0:
		return true
	case uint32(r.uid) == st.uid:
		return perm&0o400 != 0
	case r.groups[st.gid]:
		return perm&0o040 != 0
	}
	return perm&0o004 != 0
}

// rawFile is a read-only file descriptor. The resolver opens hundreds of
// files to read a few bytes of each; an *os.File costs several more
// system calls per file (fcntl, epoll registration) than the reading.
type rawFile int

// open opens the file at guest path p for reading.
func (h *hostFS) open(p string) (rawFile, error) {
	name := h.host(p)
	for {
		fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return rawFile(fd), nil
	}
}

// ReadAt reads len(b) bytes at off, or fewer and io.EOF at the end.
func (f rawFile) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Pread(int(f), b[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// readAll appends the rest of the file to buf.
func (f rawFile) readAll(buf []byte) ([]byte, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f), &st); err == nil && st.Size > 0 && st.Size < 1<<30 {
		buf = slices.Grow(buf, int(st.Size)+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := syscall.Read(int(f), buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// Close closes the descriptor.
func (f rawFile) Close() error { return syscall.Close(int(f)) }

// mapFile maps the file at guest path p read-only into memory; unmap
// releases it, after which the data (and any string sharing its memory)
// must not be used. A file that cannot be mapped (empty, or on a file
// system without mmap) is read instead.
func (h *hostFS) mapFile(p string) (data []byte, unmap func(), err error) {
	f, err := h.open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f), &st); err == nil && st.Size > 0 && st.Size < 1<<31 {
		data, err := syscall.Mmap(int(f), 0, int(st.Size), syscall.PROT_READ, syscall.MAP_SHARED)
		if err == nil {
			return data, func() { _ = syscall.Munmap(data) }, nil
		}
	}
	data, err = f.readAll(nil)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "read", Path: h.host(p), Err: err}
	}
	return data, func() {}, nil
}

// readFile reads the file at guest path p, following symlinks.
func (h *hostFS) readFile(p string) ([]byte, error) {
	return h.readFileInto(p, nil)
}

// readFileInto reads the file at guest path p, following symlinks, into
// buf[:0], reusing its storage.
func (h *hostFS) readFileInto(p string, buf []byte) ([]byte, error) {
	f, err := h.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err = f.readAll(buf[:0])
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: h.host(p), Err: err}
	}
	return buf, nil
}

// isNotExist reports whether err means the path does not exist (including
// a file where a directory was expected).
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fileOf makes the set entry for the object at real guest path p.
func (h *hostFS) fileOf(p string, st stat) File {
	f := File{Path: p, Mode: st.mode, UID: st.uid, GID: st.gid}
	switch {
	case st.mode&fs.ModeSymlink != 0:
		f.Target = st.target
	case st.mode.IsRegular():
		f.Source = h.host(p)
		f.Size = st.size
		f.ModTime = st.mtime
		f.ChangeTime = st.ctime
		f.Inode = st.ino
		f.Device = st.dev
	}
	return f
}

// addPath adds guest path p to set the way the guest must see it: every
// symlink met on the way (a symlinked parent such as /lib, a chain of
// library links), each real parent directory with its host mode, and the
// object p finally names. It returns the real path and what is there. When
// p names a directory, only the directory itself is added.
func (h *hostFS) addPath(set *Set, p string) (string, stat, error) {
	real, links, err := h.resolve(p, true)
	if aerr := h.addLinks(set, links); aerr != nil {
		return "", stat{}, aerr
	}
	if err != nil {
		return "", stat{}, err
	}
	if err := h.addReal(set, real); err != nil {
		return "", stat{}, err
	}
	st, err := h.lstat(real)
	return real, st, err
}

// addLinks adds the symlinks and directories a resolution went through.
func (h *hostFS) addLinks(set *Set, links []link) error {
	for _, l := range links {
		add := h.addReal
		if l.dir {
			add = h.addDirs
		}
		if err := add(set, l.path); err != nil {
			return err
		}
	}
	return nil
}

// addReal adds the object at p, whose parents are real directories, with
// those parents.
func (h *hostFS) addReal(set *Set, p string) error {
	if p == "/" {
		return nil
	}
	if _, ok := set.Lookup(p); ok && !set.implied[p] {
		return nil
	}
	if err := h.addDirs(set, path.Dir(p)); err != nil {
		return err
	}
	st, err := h.lstat(p)
	if err != nil {
		return err
	}
	if !st.mode.IsDir() && !st.mode.IsRegular() && st.mode&fs.ModeSymlink == 0 {
		return fmt.Errorf("%s: %v is not a regular file, directory or symlink", p, st.mode.Type())
	}
	return set.Add(h.fileOf(p, st))
}

// addDirs adds directory d and its parents with their host modes.
func (h *hostFS) addDirs(set *Set, d string) error {
	if d == "/" {
		return nil
	}
	if f, ok := set.Lookup(d); ok && f.IsDir() && !set.implied[d] {
		return nil
	}
	if err := h.addDirs(set, path.Dir(d)); err != nil {
		return err
	}
	st, err := h.lstat(d)
	if err != nil {
		return err
	}
	if !st.mode.IsDir() {
		return fmt.Errorf("%s: parent is not a directory", d)
	}
	return set.Add(h.fileOf(d, st))
}
