package initramfs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
)

// keyVersion changes whenever the archive layout for the same inputs
// changes, so that archives of an older Arrow are not reused.
const keyVersion = "arrow-initramfs-3"

// sumPrefix starts the names of memoized content sums.
const sumPrefix = ".sum-"

// staleAge is how old an unlocked temporary archive must be before Build
// removes it: one left by a process that died.
const staleAge = 2 * time.Minute

// Builder writes the guest's initramfs: a closure plus the entries every
// guest has, as an uncompressed newc archive (the fastest to unpack under
// emulation), and keeps the archives it wrote in Dir, keyed by everything
// that determines their content.
type Builder struct {
	// Dir is the cache directory, <data root>/initramfs; it is created
	// when missing.
	Dir string
}

// BaseEntries are in every archive: the mount points arrow-init mounts the
// kernel's file systems on, and /dev/console, which the kernel opens as the
// initial console before anything mounts devtmpfs.
func BaseEntries() []Entry {
	return []Entry{
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
		{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "/etc", Mode: fs.ModeDir | 0o755},
		{Path: "/proc", Mode: fs.ModeDir | 0o555},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/run", Mode: fs.ModeDir | 0o755},
		{Path: "/sys", Mode: fs.ModeDir | 0o555},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// item is an entry and where the cache key takes its content's identity
// from.
type item struct {
	Entry
	// file is the closure's entry, for its recorded identity.
	file  *closure.File
	extra bool
}

// Build returns the archive holding set, [BaseEntries] and extra (the
// arrow-init binary as /init, typically). Extra entries replace base
// entries and set files at the same path, and base entries replace set
// files. Missing parent directories are added with mode 0755.
//
// The archive's name is a SHA-256 key over every entry's guest path, mode,
// link target, device number and owner, and over each regular file's host
// identity (size, modification and change time, inode and device, as
// resolved) or, for extra entries, its content. When <Dir>/<key>.cpio
// exists it is returned as it is: nothing is written. Otherwise the archive
// is written to a temporary file in Dir, synced and renamed into place, so
// that no reader ever sees a partial archive and concurrent builds of the
// same key are harmless. Temporary files that processes killed mid-build
// left behind are removed.
func (b *Builder) Build(ctx context.Context, set *closure.Set, extra ...Entry) (string, error) {
	if b.Dir == "" {
		return "", errors.New("initramfs: no cache directory")
	}
	items, err := plan(set, extra)
	if err != nil {
		return "", err
	}
	key, err := cacheKey(ctx, b.Dir, items)
	if err != nil {
		return "", err
	}
	final := filepath.Join(b.Dir, key+".cpio")
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() {
		// An archive an older Arrow published world-readable is made the
		// owner's only: it holds the files of whoever built it.
		if fi.Mode().Perm() != cachefile.FileMode {
			if err := os.Chmod(final, cachefile.FileMode); err != nil {
				return "", fmt.Errorf("initramfs cache: %w", err)
			}
		}
		return final, nil
	}
	if err := cachefile.PrivateDir(b.Dir); err != nil {
		return "", fmt.Errorf("initramfs cache: %w", err)
	}
	cachefile.RemoveStale(b.Dir, staleAge, time.Now())
	if err := write(ctx, b.Dir, final, items); err != nil {
		return "", err
	}
	return final, nil
}

// plan merges the set, the base entries and the extras into the archive's
// entries, sorted by path (which puts directories before their contents)
// and with every parent directory present.
func plan(set *closure.Set, extra []Entry) ([]*item, error) {
	byPath := make(map[string]*item)
	if set != nil {
		for _, f := range set.Files() {
			f := f
			byPath[f.Path] = &item{
				Entry: Entry{Path: f.Path, Source: f.Source, Mode: f.Mode, Target: f.Target, ModTime: f.ModTime, UID: f.UID, GID: f.GID},
				file:  &f,
			}
		}
	}
	for _, e := range BaseEntries() {
		byPath[e.Path] = &item{Entry: e}
	}
	for _, e := range extra {
		if _, err := archiveName(e.Path); err != nil {
			return nil, fmt.Errorf("initramfs: extra entry: %w", err)
		}
		byPath[e.Path] = &item{Entry: e, extra: true}
	}
	// Parents: present and directories.
	for p := range byPath {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			it, ok := byPath[d]
			if !ok {
				byPath[d] = &item{Entry: Entry{Path: d, Mode: fs.ModeDir | 0o755}}
				continue
			}
			if !it.Mode.IsDir() {
				return nil, fmt.Errorf("initramfs: %s: parent %s is not a directory", p, d)
			}
			break
		}
	}
	items := make([]*item, 0, len(byPath))
	for _, it := range byPath {
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Path < items[j].Path })
	return items, nil
}

// cacheKey hashes everything that determines the archive's content.
func cacheKey(ctx context.Context, dir string, items []*item) (string, error) {
	h := sha256.New()
	io.WriteString(h, keyVersion+"\n")
	var num [8]byte
	putInt := func(v uint64) {
		binary.LittleEndian.PutUint64(num[:], v)
		h.Write(num[:])
	}
	putStr := func(s string) {
		putInt(uint64(len(s)))
		io.WriteString(h, s)
	}
	for i, it := range items {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return "", err
			}
		}
		putStr(it.Path)
		putInt(uint64(it.Mode))
		putStr(it.Target)
		putInt(uint64(it.Major)<<32 | uint64(it.Minor))
		putInt(uint64(it.UID)<<32 | uint64(it.GID))
		putInt(uint64(it.ModTime.UnixNano()))
		if !it.Mode.IsRegular() || it.Source == "" {
			putInt(0)
			continue
		}
		putStr(it.Source)
		var err error
		if it.extra {
			err = contentIdent(h, dir, it.Source)
		} else {
			err = hostIdent(it.Source, it.file, putInt)
		}
		if err != nil {
			return "", fmt.Errorf("initramfs: %s: %w", it.Path, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hostIdent hashes the identity of a regular host file: as the closure
// recorded it, or as stat(2) says now for a file added without one.
func hostIdent(source string, f *closure.File, putInt func(uint64)) error {
	var size int64
	var mtime, ctime time.Time
	var ino, dev uint64
	if f != nil && f.Inode != 0 {
		size, mtime, ctime, ino, dev = f.Size, f.ModTime, f.ChangeTime, f.Inode, f.Device
	} else {
		var st syscall.Stat_t
		if err := syscall.Stat(source, &st); err != nil {
			return &fs.PathError{Op: "stat", Path: source, Err: err}
		}
		size = st.Size
		mtime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
		ctime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
		ino, dev = st.Ino, uint64(st.Dev)
	}
	putInt(uint64(size))
	putInt(uint64(mtime.UnixNano()))
	putInt(uint64(ctime.UnixNano()))
	putInt(ino)
	putInt(dev)
	return nil
}

// contentIdent hashes the content of an extra entry's file. Hashing
// arrow-init would cost milliseconds on every run, so the sum is memoized
// in dir under the file's identity (see cachefile.Memo.FileSum).
func contentIdent(h hash.Hash, dir, source string) error {
	sum, err := cachefile.Memo{Dir: dir, Prefix: sumPrefix}.FileSum(source)
	if err != nil {
		return err
	}
	io.WriteString(h, sum)
	return nil
}

// write writes items to a temporary file in dir, locked while it is
// written, syncs it and renames it to final.
func write(ctx context.Context, dir, final string, items []*item) error {
	tmp, err := cachefile.Create(dir, ".tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	w := NewWriter(tmp)
	for i, it := range items {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				tmp.Abort()
				return err
			}
		}
		if err := w.WriteEntry(it.Entry); err != nil {
			tmp.Abort()
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		tmp.Abort()
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Publish(final, cachefile.FileMode); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// Usage returns the number of archives in Dir and their total size.
func (b *Builder) Usage() (archives int, size int64, err error) {
	entries, err := os.ReadDir(b.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("initramfs cache: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".cpio") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			archives++
			size += fi.Size()
		}
	}
	return archives, size, nil
}

// Prune removes the archives and memoized sums of Dir not used within
// maxAge, and temporary files no process is writing. An archive's last use
// is the later of its modification time (when it was written) and its
// access time (when QEMU last read it, as far as the file system records
// reads). It returns how many files it removed and their size; a removed
// archive is simply rebuilt when needed again.
func (b *Builder) Prune(maxAge time.Duration) (removed int, freed int64, err error) {
	entries, err := os.ReadDir(b.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("initramfs cache: %w", err)
	}
	now := time.Now()
	cachefile.RemoveStale(b.Dir, staleAge, now)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".cpio") && !strings.HasPrefix(name, sumPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		used := fi.ModTime()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); at.After(used) {
				used = at
			}
		}
		if now.Sub(used) < maxAge {
			continue
		}
		if err := os.Remove(filepath.Join(b.Dir, name)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return removed, freed, fmt.Errorf("initramfs cache: %w", err)
		}
		removed++
		freed += fi.Size()
	}
	return removed, freed, nil
}
