package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Default limits, used when an Options field is zero.
const (
	DefaultMaxFileSize  = 8 << 30
	DefaultMaxTotalSize = 64 << 30
	DefaultMaxEntries   = 1 << 20
)

// MaxNotes is how many notes Stats keeps; later ones are counted only.
const MaxNotes = 100

// maxTrailing is how much data may follow the end of the archive (tar
// writers pad to their record size) before the stream is called corrupt.
const maxTrailing = 1 << 20

// Extended attribute limits (XATTR_NAME_MAX, XATTR_SIZE_MAX).
const (
	maxXattrName  = 255
	maxXattrValue = 64 << 10
	maxXattrs     = 128
)

// maxID is the largest user or group ID (the kernel reserves 2^32-1).
const maxID = 1<<32 - 2

// Options bound what one layer may do. Zero fields take the defaults.
type Options struct {
	// MaxFileSize bounds one file's size (DefaultMaxFileSize).
	MaxFileSize int64
	// MaxTotalSize bounds the size of all the layer's files together
	// (DefaultMaxTotalSize).
	MaxTotalSize int64
	// MaxEntries bounds the number of archive entries (DefaultMaxEntries).
	MaxEntries int
	// SkipOwners leaves owners alone even when running as root.
	SkipOwners bool
	// Attrs, when not nil, records each entry's metadata as the archive
	// states it; see Attrs.
	Attrs *Attrs
}

func (o Options) withDefaults() Options {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxTotalSize <= 0 {
		o.MaxTotalSize = DefaultMaxTotalSize
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Stats describes what Apply did.
type Stats struct {
	// Entries counts the archive's entries.
	Entries int
	// Files, Dirs, Symlinks and HardLinks count what was written.
	Files, Dirs, Symlinks, HardLinks int
	// Whiteouts counts the whiteout and opaque markers applied.
	Whiteouts int
	// Bytes is the size of the regular files written.
	Bytes int64
	// Skipped counts entries not applied: device nodes, FIFOs and types
	// Apply does not know.
	Skipped int
	// Notes says what was skipped or not kept, and why; at most MaxNotes,
	// then a count of the rest.
	Notes []string
	// dropped counts notes past MaxNotes.
	dropped int
}

// Apply applies the uncompressed layer archive r to the directory dst,
// which holds the layers below it (see the package documentation for the
// rules). It reads r to its end, so that a digest computed over the stream
// covers all of it. On error, dst holds part of the layer and should be
// thrown away.
func Apply(ctx context.Context, dst string, r io.Reader, opts Options) (Stats, error) {
	return apply(ctx, dst, r, opts, os.Geteuid() == 0)
}

// applier applies one layer.
type applier struct {
	ctx context.Context
	// root is an O_PATH descriptor of the destination.
	root int
	opts Options
	// privileged: running as root, so owners can be set and permissions
	// do not need loosening for the process itself.
	privileged bool
	owners     bool
	attrs      *Attrs
	stats      Stats
	// touched holds the resolved paths this layer wrote, and their
	// ancestors: whiteouts only hide what lower layers left.
	touched map[string]bool
	// dirs holds the directories whose metadata is set once the layer is
	// written (so that adding their entries does not change their times,
	// and a read-only mode does not stop them being filled).
	dirs  map[string]Attr
	total int64
	buf   []byte
}

func apply(ctx context.Context, dst string, r io.Reader, opts Options, privileged bool) (Stats, error) {
	opts = opts.withDefaults()
	root, err := unix.Open(dst, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("apply layer: open %s: %w", dst, err)
	}
	defer unix.Close(root)
	a := &applier{
		ctx:        ctx,
		root:       root,
		opts:       opts,
		privileged: privileged,
		owners:     privileged && !opts.SkipOwners,
		attrs:      opts.Attrs,
		touched:    make(map[string]bool),
		dirs:       make(map[string]Attr),
	}
	if a.attrs == nil {
		a.attrs = NewAttrs()
	}
	if _, ok := a.attrs.Get(""); !ok {
		a.attrs.set("", Attr{Mode: 0o755, ModTime: time.Unix(0, 0).UTC(), Implicit: true})
	}
	err = a.run(&ctxReader{ctx: ctx, r: r})
	if a.stats.dropped > 0 {
		a.stats.Notes = append(a.stats.Notes, fmt.Sprintf("%d more notes", a.stats.dropped))
		a.stats.dropped = 0
	}
	return a.stats, err
}

func (a *applier) run(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("apply layer: %w", err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return streamError("apply layer: read archive", err)
		}
		a.stats.Entries++
		if a.stats.Entries > a.opts.MaxEntries {
			return fmt.Errorf("apply layer: %w: more than %d", ErrTooManyEntries, a.opts.MaxEntries)
		}
		if err := a.entry(hdr, tr); err != nil {
			var ce ctxError
			if errors.As(err, &ce) {
				return fmt.Errorf("apply layer: %w", ce)
			}
			return &EntryError{Name: hdr.Name, Err: err}
		}
	}
	if err := a.finishDirs(); err != nil {
		return fmt.Errorf("apply layer: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, maxTrailing+1))
	if err != nil {
		return streamError("apply layer: read past the archive's end", err)
	}
	if n > maxTrailing {
		return fmt.Errorf("apply layer: %w: more than %d bytes after the archive's end", ErrCorrupt, maxTrailing)
	}
	return nil
}

// streamError wraps an error reading the layer: a cancellation stays one,
// anything else means a corrupt stream.
func streamError(what string, err error) error {
	var ce ctxError
	switch {
	case errors.As(err, &ce), errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %w: truncated: %w", what, ErrCorrupt, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
}

func (a *applier) note(format string, args ...any) {
	if len(a.stats.Notes) >= MaxNotes {
		a.stats.dropped++
		return
	}
	a.stats.Notes = append(a.stats.Notes, fmt.Sprintf(format, args...))
}

// touch marks a resolved path, and its ancestors, as written by this layer.
func (a *applier) touch(path string) {
	for path != "" && !a.touched[path] {
		a.touched[path] = true
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			break
		}
		path = path[:i]
	}
}

func (a *applier) onCreate(path string) {
	a.attrs.setIfMissing(path, Attr{Mode: 0o755, ModTime: time.Unix(0, 0).UTC(), Implicit: true})
	a.touch(path)
}

// headerAttr is what hdr says about its entry's metadata.
func (a *applier) headerAttr(hdr *tar.Header) Attr {
	at := Attr{
		Mode:    uint32(hdr.Mode) & 0o7777,
		UID:     hdr.Uid,
		GID:     hdr.Gid,
		ModTime: hdr.ModTime,
	}
	var names []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		name, v := strings.TrimPrefix(k, "SCHILY.xattr."), hdr.PAXRecords[k]
		switch {
		case !strings.HasPrefix(name, "user.") && name != "security.capability":
			a.note("%s: extended attribute %q not kept (only user.* and security.capability are)", hdr.Name, name)
		case len(name) > maxXattrName || len(v) > maxXattrValue || len(at.Xattrs) >= maxXattrs || name == "user." ||
			!utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0:
			a.note("%s: extended attribute %q not kept (bad name, too large or too many)", hdr.Name, name)
		default:
			if at.Xattrs == nil {
				at.Xattrs = make(map[string][]byte)
			}
			at.Xattrs[name] = []byte(v)
		}
	}
	return at
}

func (a *applier) entry(hdr *tar.Header, body io.Reader) error {
	comps, err := splitName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > maxID || hdr.Gid > maxID {
		return fmt.Errorf("%w: owner %d:%d out of range", ErrInvalidEntry, hdr.Uid, hdr.Gid)
	}
	if len(comps) == 0 {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root can only be a directory", ErrInvalidEntry)
		}
		at := a.headerAttr(hdr)
		a.attrs.set("", at)
		a.dirs[""] = at
		a.stats.Dirs++
		return nil
	}
	base := comps[len(comps)-1]
	if strings.HasPrefix(base, ".wh.") {
		return a.whiteout(comps[:len(comps)-1], base)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		a.stats.Entries--
		return nil
	default:
		a.stats.Skipped++
		a.note("%s: entry type %q not supported, skipped", hdr.Name, hdr.Typeflag)
		return nil
	}
	if hdr.Typeflag == tar.TypeLink {
		// Resolve the target first: making room for the link could remove
		// it.
		return a.hardLink(hdr, comps)
	}
	pfd, parent, err := openDir(a.root, comps[:len(comps)-1], create, a.onCreate)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	path := joinPath(parent, base)
	switch hdr.Typeflag {
	case tar.TypeDir:
		existed, err := a.clear(pfd, base, path, true)
		if err != nil {
			return err
		}
		if !existed {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return &os.PathError{Op: "mkdir", Path: path, Err: err}
			}
		}
		at := a.headerAttr(hdr)
		a.attrs.set(path, at)
		a.dirs[path] = at
		a.touch(path)
		a.stats.Dirs++
		return nil
	case tar.TypeSymlink:
		return a.symlink(hdr, pfd, base, path)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if _, err := a.clear(pfd, base, path, false); err != nil {
			return err
		}
		a.touch(path)
		a.stats.Skipped++
		a.note("%s: device nodes and FIFOs are not created", hdr.Name)
		return nil
	}
	return a.file(hdr, body, pfd, base, path)
}

// clear makes room in the directory pfd for a new entry called name (its
// resolved path path); a directory already there stays when keepDir.
func (a *applier) clear(pfd int, name, path string, keepDir bool) (existed bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR && keepDir {
		return true, nil
	}
	return false, a.removeAll(pfd, name, path)
}

// removeAll removes name from the directory pfd, and everything below it,
// without following symbolic links.
func (a *applier) removeAll(pfd int, name, path string) error {
	if err := a.ctx.Err(); err != nil {
		return ctxError{err}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: path, Err: err}
		}
		a.attrs.remove(path)
		return nil
	}
	d, err := openDirFile(pfd, name)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return &os.PathError{Op: "readdir", Path: path, Err: err}
	}
	for _, n := range names {
		if err := a.removeAll(int(d.Fd()), n, joinPath(path, n)); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	if err := unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	a.attrs.remove(path)
	return nil
}

// removeLower removes what lower layers left at name in the directory pfd
// (resolved path path), keeping what this layer wrote.
func (a *applier) removeLower(pfd int, name, path string) error {
	if !a.touched[path] {
		return a.removeAll(pfd, name, path)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	d, err := openDirFile(pfd, name)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer d.Close()
	return a.removeLowerIn(d, path)
}

// removeLowerIn removes what lower layers left in the directory d.
func (a *applier) removeLowerIn(d *os.File, path string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &os.PathError{Op: "readdir", Path: path, Err: err}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := a.removeLower(int(d.Fd()), n, joinPath(path, n)); err != nil {
			return err
		}
	}
	return nil
}

// whiteout applies a whiteout or opaque marker in the directory parent.
func (a *applier) whiteout(parent []string, base string) error {
	var target string
	switch {
	case base == ".wh..wh..opq":
	case strings.HasPrefix(base, ".wh..wh."):
		a.note("%s: AUFS metadata entry ignored", base)
		return nil
	default:
		target = strings.TrimPrefix(base, ".wh.")
		switch target {
		case "", ".":
			return fmt.Errorf("%w: whiteout names nothing", ErrInvalidEntry)
		case "..":
			return fmt.Errorf("%w: whiteout of a parent directory", ErrTraversal)
		}
	}
	a.stats.Whiteouts++
	pfd, dir, err := openDir(a.root, parent, lookup, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errNotDir) {
			// Nothing below to hide.
			return nil
		}
		return err
	}
	defer unix.Close(pfd)
	if target != "" {
		return a.removeLower(pfd, target, joinPath(dir, target))
	}
	d, err := openDirFile(pfd, ".")
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer d.Close()
	return a.removeLowerIn(d, dir)
}

// file writes a regular file.
func (a *applier) file(hdr *tar.Header, body io.Reader, pfd int, name, path string) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: negative size", ErrCorrupt)
	}
	if hdr.Size > a.opts.MaxFileSize {
		return fmt.Errorf("%w: file of %d bytes, limit %d", ErrTooLarge, hdr.Size, a.opts.MaxFileSize)
	}
	if a.total+hdr.Size > a.opts.MaxTotalSize {
		return fmt.Errorf("%w: more than %d bytes of files", ErrTooLarge, a.opts.MaxTotalSize)
	}
	a.total += hdr.Size
	if _, err := a.clear(pfd, name, path, false); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	a.touch(path)
	if a.buf == nil {
		a.buf = make([]byte, 256<<10)
	}
	rt := &readTracker{r: io.LimitReader(body, hdr.Size)}
	n, err := io.CopyBuffer(writerOnly{f}, rt, a.buf)
	if err != nil {
		if rt.err != nil {
			return streamError("read file", rt.err)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%w: truncated file (%d of %d bytes)", ErrCorrupt, n, hdr.Size)
	}
	at := a.headerAttr(hdr)
	a.attrs.set(path, at)
	if err := a.setMeta(int(f.Fd()), pfd, name, path, at, 0o400); err != nil {
		return err
	}
	a.stats.Files++
	a.stats.Bytes += n
	return f.Close()
}

// setMeta sets owner, mode, extended attributes and times on the open file
// fd, called name in the directory pfd. ensure holds the permission bits
// an unprivileged process keeps for itself.
func (a *applier) setMeta(fd, pfd int, name, path string, at Attr, ensure uint32) error {
	if a.owners {
		if err := unix.Fchown(fd, at.UID, at.GID); err != nil {
			return &os.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	mode := at.Mode
	if !a.privileged {
		mode |= ensure
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	for _, k := range slices.Sorted(maps.Keys(at.Xattrs)) {
		if err := unix.Fsetxattr(fd, k, at.Xattrs[k], 0); err != nil {
			a.note("%s: extended attribute %q not set: %v", path, k, err)
		}
	}
	return a.setTimes(pfd, name, path, at.ModTime)
}

func (a *applier) setTimes(pfd int, name, path string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if mtime.IsZero() || mtime.Year() < 1678 || mtime.Year() > 2261 {
		ts = unix.Timespec{Sec: mtime.Unix()}
	}
	if err := unix.UtimesNanoAt(pfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: path, Err: err}
	}
	return nil
}

// symlink creates a symbolic link, its target stored verbatim.
func (a *applier) symlink(hdr *tar.Header, pfd int, name, path string) error {
	switch {
	case hdr.Linkname == "":
		return fmt.Errorf("%w: symbolic link with an empty target", ErrInvalidEntry)
	case len(hdr.Linkname) > maxPath:
		return fmt.Errorf("%w: symbolic link target of %d bytes", ErrNameTooLong, len(hdr.Linkname))
	case strings.IndexByte(hdr.Linkname, 0) >= 0:
		return fmt.Errorf("%w: symbolic link target contains a NUL byte", ErrInvalidEntry)
	}
	if _, err := a.clear(pfd, name, path, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, name); err != nil {
		return &os.PathError{Op: "symlink", Path: path, Err: err}
	}
	a.touch(path)
	at := a.headerAttr(hdr)
	at.Mode = 0o777
	if len(at.Xattrs) > 0 {
		a.note("%s: extended attributes of a symbolic link not kept", hdr.Name)
		at.Xattrs = nil
	}
	a.attrs.set(path, at)
	if a.owners {
		if err := unix.Fchownat(pfd, name, at.UID, at.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lchown", Path: path, Err: err}
		}
	}
	if err := a.setTimes(pfd, name, path, at.ModTime); err != nil {
		return err
	}
	a.stats.Symlinks++
	return nil
}

// hardLink links comps to the file the header's link name resolves to.
func (a *applier) hardLink(hdr *tar.Header, comps []string) error {
	tcomps, err := splitName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if len(tcomps) == 0 {
		return fmt.Errorf("%w: hard link to the root", ErrInvalidEntry)
	}
	tfd, tdir, err := openDir(a.root, tcomps[:len(tcomps)-1], lookup, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: hard link target %q does not exist", ErrInvalidEntry, hdr.Linkname)
		}
		return fmt.Errorf("hard link target: %w", err)
	}
	defer unix.Close(tfd)
	tname := tcomps[len(tcomps)-1]
	tpath := joinPath(tdir, tname)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: hard link target %q does not exist", ErrInvalidEntry, hdr.Linkname)
		}
		return &os.PathError{Op: "stat", Path: tpath, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hard link to a directory", ErrInvalidEntry)
	}
	pfd, parent, err := openDir(a.root, comps[:len(comps)-1], create, a.onCreate)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	name := comps[len(comps)-1]
	path := joinPath(parent, name)
	if path == tpath {
		a.touch(path)
		a.stats.HardLinks++
		return nil
	}
	if strings.HasPrefix(tpath, path+"/") {
		return fmt.Errorf("%w: hard link would replace the directory holding its target", ErrInvalidEntry)
	}
	at, ok := a.attrs.Get(tpath)
	if _, err := a.clear(pfd, name, path, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tname, pfd, name, 0); err != nil {
		return &os.PathError{Op: "link", Path: path, Err: err}
	}
	a.touch(path)
	if ok {
		a.attrs.set(path, at)
	} else {
		a.attrs.remove(path)
	}
	a.stats.HardLinks++
	return nil
}

// finishDirs sets the metadata of the directories the layer named, deepest
// first.
func (a *applier) finishDirs() error {
	paths := slices.Sorted(maps.Keys(a.dirs))
	slices.Reverse(paths)
	for _, p := range paths {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		if err := a.finishDir(p, a.dirs[p]); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) finishDir(path string, at Attr) error {
	var comps []string
	name := "."
	if path != "" {
		comps = strings.Split(path, "/")
		name = comps[len(comps)-1]
		comps = comps[:len(comps)-1]
	}
	pfd, _, err := openDir(a.root, comps, strict, nil)
	if err != nil {
		// Replaced or removed later in the layer.
		return nil
	}
	defer unix.Close(pfd)
	d, err := openDirFile(pfd, name)
	if err != nil {
		return nil
	}
	defer d.Close()
	return a.setMeta(int(d.Fd()), pfd, name, path, at, 0o700)
}

// ctxError carries a cancellation through the stream readers, so that it is
// not taken for corruption.
type ctxError struct{ err error }

// Error implements error.
func (e ctxError) Error() string { return e.err.Error() }

// Unwrap returns the context's error.
func (e ctxError) Unwrap() error { return e.err }

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, ctxError{err}
	}
	return c.r.Read(p)
}

// readTracker remembers the error its reader returned, to tell reading
// the layer from writing the file apart.
type readTracker struct {
	r   io.Reader
	err error
}

// Read implements io.Reader.
func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// writerOnly hides an *os.File's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }
