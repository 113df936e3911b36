package initramfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/image/closure"
)

// Key returns the cache key of the archive [Builder.Build] would write for
// set and extra, without writing anything: the name of the archive, less
// its .cpio suffix. Other forms of the same files (an erofs image of
// [WriteTree]'s tree, for clones of VM templates) are cached by it too.
func (b *Builder) Key(ctx context.Context, set *closure.Set, extra ...Entry) (string, error) {
	if b.Dir == "" {
		return "", errors.New("initramfs: no cache directory")
	}
	items, err := plan(set, extra)
	if err != nil {
		return "", err
	}
	return cacheKey(ctx, b.Dir, items)
}

// WriteTree writes the files the archive of set and extra would hold as a
// directory tree at dst, which must not exist: for a file system image of
// the same files. Regular files are hard links to their sources where the
// file system allows, copies otherwise; device nodes are left out (the
// guest mounts devtmpfs). Owners are the entries' when the caller may set
// them (root), and modification times are kept.
func WriteTree(ctx context.Context, set *closure.Set, dst string, extra ...Entry) error {
	items, err := plan(set, extra)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("initramfs tree: %w", err)
	}
	root := os.Geteuid() == 0
	var dirs []*item // their modes and times are set last: files go in first
	for i, it := range items {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		p := filepath.Join(dst, filepath.FromSlash(it.Path))
		switch {
		case it.Mode.IsDir():
			if err := os.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("initramfs tree: %w", err)
			}
			dirs = append(dirs, it)
			continue
		case it.Mode&fs.ModeSymlink != 0:
			if err := os.Symlink(it.Target, p); err != nil {
				return fmt.Errorf("initramfs tree: %w", err)
			}
		case it.Mode.IsRegular():
			if err := placeFile(it, p, root); err != nil {
				return fmt.Errorf("initramfs tree: %s: %w", it.Path, err)
			}
			continue
		default:
			continue // devices, FIFOs, sockets
		}
		if root {
			_ = os.Lchown(p, int(it.UID), int(it.GID))
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		it := dirs[i]
		p := filepath.Join(dst, filepath.FromSlash(it.Path))
		if root {
			_ = os.Lchown(p, int(it.UID), int(it.GID))
		}
		if err := os.Chmod(p, it.Mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)); err != nil {
			return fmt.Errorf("initramfs tree: %w", err)
		}
		setTime(p, it.ModTime)
	}
	return nil
}

// placeFile puts the regular file it at p: a hard link to its source when
// that has the entry's mode and owner already, a copy otherwise.
func placeFile(it *item, p string, root bool) error {
	perm := it.Mode & (fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid)
	if it.Source == "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	} else {
		if fi, err := os.Stat(it.Source); err == nil {
			st, _ := fi.Sys().(*unix.Stat_t)
			if fi.Mode() == it.Mode && st != nil && st.Uid == it.UID && st.Gid == it.GID && os.Link(it.Source, p) == nil {
				return nil
			}
		}
		if err := copyFile(it.Source, p); err != nil {
			return err
		}
	}
	if root {
		if err := os.Lchown(p, int(it.UID), int(it.GID)); err != nil {
			return err
		}
	}
	if err := os.Chmod(p, perm); err != nil {
		return err
	}
	setTime(p, it.ModTime)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func setTime(p string, t time.Time) {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	_ = os.Chtimes(p, t, t)
}
