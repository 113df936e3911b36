package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/ctxio"
)

// MaterializeOptions tune Materialize.
type MaterializeOptions struct {
	// Copy copies every file rather than hard linking stored ones.
	Copy bool
	// Subtree, an absolute path, recreates only the tree under that
	// directory of the image, with dst as that directory (its owner and
	// mode included): what a named volume mounted there starts with.
	// A Subtree the image does not have as a directory makes nothing
	// (ErrNotFound). Hard links to files outside it become copies.
	Subtree string
}

// MaterializeStats says how Materialize built a tree.
type MaterializeStats struct {
	// Linked counts files hard linked to the store's copies.
	Linked int
	// Copied counts files copied (and checked against their digests).
	Copied int
	// Bytes is the size of the files copied.
	Bytes int64
	// XattrsSkipped counts extended attributes dst's file system or the
	// process could not set.
	XattrsSkipped int
}

// Materialize recreates img's flattened root file system in dst, which
// must not exist or be an empty directory. A regular file is hard linked to
// its copy in the store when dst is on the store's file system and that
// copy already has the entry's mode, owner, time and extended attributes;
// otherwise it is copied and checked against its digest. Hard links inside
// the image stay hard links. Owners are set when running as root.
//
// A hard-linked file IS the store's copy: the tree in dst must be treated
// as read-only (packed into an image, or used as a read-only lower
// directory), or built with opts.Copy. On error, dst holds part of the tree
// and should be removed.
func (s *Store) Materialize(ctx context.Context, img Image, dst string, opts MaterializeOptions) (MaterializeStats, error) {
	var st MaterializeStats
	l, err := s.lock(ctx, unix.LOCK_SH)
	if err != nil {
		return st, err
	}
	defer l.unlock()
	// The record may have been replaced or removed since img was read.
	cur, err := s.readRecord(img.ID)
	if err != nil {
		return st, fmt.Errorf("materialize: %w", err)
	}
	entries, err := s.Tree(ctx, cur)
	if err != nil {
		return st, fmt.Errorf("materialize: %w", err)
	}
	if opts.Subtree != "" {
		if entries, err = subtree(entries, opts.Subtree); err != nil {
			return st, fmt.Errorf("materialize: %w", err)
		}
	}
	if err := prepareDir(dst); err != nil {
		return st, fmt.Errorf("materialize: %w", err)
	}
	m := &materializer{s: s, ctx: ctx, dst: dst, opts: opts, privileged: os.Geteuid() == 0, buf: make([]byte, 256<<10)}
	for _, e := range entries[1:] {
		if err := ctx.Err(); err != nil {
			return m.st, fmt.Errorf("materialize: %w", err)
		}
		if err := m.entry(e); err != nil {
			return m.st, fmt.Errorf("materialize %s: %w", e.Path, err)
		}
	}
	// Directories last, deepest first: their times and read-only modes
	// would not survive filling them.
	for _, e := range slices.Backward(entries) {
		if e.Type != TypeDir {
			continue
		}
		p := filepath.Join(dst, e.Path)
		if err := m.setMeta(p, e, true); err != nil {
			return m.st, fmt.Errorf("materialize %s: %w", e.Path, err)
		}
	}
	return m.st, nil
}

// subtree returns the entries under the directory dir of a checked tree,
// with paths relative to it ("/" is dir itself). A hard link to a file
// outside dir becomes a copy of that file: its first entry inside dir
// carries the content, and later ones link to it.
func subtree(entries []Entry, dir string) ([]Entry, error) {
	dir = path.Clean(dir)
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("subtree %q: not an absolute path", dir)
	}
	if dir == "/" {
		return entries, nil
	}
	var out []Entry
	moved := map[string]string{} // a link target outside dir → its first copy inside
	for _, e := range entries {
		switch {
		case e.Path == dir:
			if e.Type != TypeDir {
				return nil, fmt.Errorf("%w: %s is not a directory in the image", ErrNotFound, dir)
			}
			e.Path = "/"
		case strings.HasPrefix(e.Path, dir+"/"):
			e.Path = strings.TrimPrefix(e.Path, dir)
		default:
			continue
		}
		if e.Link != "" {
			if strings.HasPrefix(e.Link, dir+"/") {
				e.Link = strings.TrimPrefix(e.Link, dir)
			} else if first, ok := moved[e.Link]; ok {
				e.Link = first
			} else {
				moved[e.Link], e.Link = e.Path, ""
			}
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no directory %s in the image", ErrNotFound, dir)
	}
	return out, nil
}

// prepareDir makes dst an empty private directory.
func prepareDir(dst string) error {
	err := os.Mkdir(dst, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dst)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dst)
	}
	d, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%s is not empty", dst)
		}
		return err
	}
	return nil
}

type materializer struct {
	s          *Store
	ctx        context.Context
	dst        string
	opts       MaterializeOptions
	privileged bool
	st         MaterializeStats
	buf        []byte
	// noLink is set once linking failed for a reason that will not change
	// (another file system).
	noLink bool
}

// entry creates one entry; the tree was checked, so its parent is a
// directory made earlier and nothing in dst is a symbolic link on the way.
func (m *materializer) entry(e Entry) error {
	p := filepath.Join(m.dst, e.Path)
	switch e.Type {
	case TypeDir:
		return os.Mkdir(p, 0o700)
	case TypeSymlink:
		if err := os.Symlink(e.Target, p); err != nil {
			return err
		}
		return m.setMeta(p, e, false)
	}
	if e.Link != "" {
		return os.Link(filepath.Join(m.dst, e.Link), p)
	}
	obj := m.s.filePath(e.Digest)
	if !m.opts.Copy && !m.noLink && m.linkable(obj, e) {
		err := os.Link(obj, p)
		if err == nil {
			m.st.Linked++
			return nil
		}
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EPERM) {
			m.noLink = true
		} else if !errors.Is(err, unix.EMLINK) {
			return err
		}
	}
	if err := m.copyFile(obj, p, e); err != nil {
		return err
	}
	m.st.Copied++
	m.st.Bytes += e.Size
	return m.setMeta(p, e, true)
}

// linkable reports whether the stored file obj already has e's metadata.
func (m *materializer) linkable(obj string, e Entry) bool {
	var st unix.Stat_t
	if err := unix.Lstat(obj, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if st.Mode&0o7777 != e.Mode || st.Size != e.Size || st.Mtim != timespec(e.ModTime) {
		return false
	}
	if m.privileged && (int(st.Uid) != e.UID || int(st.Gid) != e.GID) {
		return false
	}
	have, err := listXattrs(obj)
	if err != nil || len(have) != len(e.Xattrs) {
		return false
	}
	for k, v := range e.Xattrs {
		if w, ok := have[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// copyFile copies the stored file obj to the new file p, checking its
// digest.
func (m *materializer) copyFile(obj, p string, e Entry) error {
	in, err := os.Open(obj)
	if err != nil {
		return fmt.Errorf("stored file: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(out, h), ctxio.NewReader(m.ctx, in), m.buf)
	if err != nil {
		return err
	}
	if got := digest.NewDigest(digest.SHA256, h); n != e.Size || got != e.Digest {
		return fmt.Errorf("%w: stored file %s holds %s (%d bytes)", ErrCorruptStore, e.Digest, got, n)
	}
	return out.Close()
}

// setMeta sets an entry's owner, mode, extended attributes and times on p,
// not following a symbolic link.
func (m *materializer) setMeta(p string, e Entry, chmod bool) error {
	if m.privileged {
		if err := os.Lchown(p, e.UID, e.GID); err != nil {
			return err
		}
	}
	if chmod {
		if err := os.Chmod(p, fs.FileMode(e.Mode&0o777)|modeBits(e.Mode)); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(e.Xattrs)) {
			if err := unix.Lsetxattr(p, k, e.Xattrs[k], 0); err != nil {
				// The file system or the process cannot keep it.
				m.st.XattrsSkipped++
			}
		}
	}
	ts := timespec(e.ModTime)
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// timespec converts t, to the second outside the years nanoseconds since
// 1970 can count.
func timespec(t time.Time) unix.Timespec {
	if t.Year() < 1678 || t.Year() > 2261 {
		return unix.Timespec{Sec: t.Unix()}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// modeBits converts setuid, setgid and sticky to fs.FileMode.
func modeBits(mode uint32) fs.FileMode {
	var m fs.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// listXattrs returns the extended attributes of p that images keep
// (user.* and security.capability).
func listXattrs(p string) (map[string][]byte, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	out := make(map[string][]byte)
	for name := range bytes.SplitSeq(buf[:n], []byte{0}) {
		if len(name) == 0 || !bytes.HasPrefix(name, []byte("user.")) && string(name) != "security.capability" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, string(name), v)
		if err != nil {
			return nil, err
		}
		out[string(name)] = v[:vn]
	}
	return out, nil
}
