// Package cachefile publishes files into a cache directory atomically.
//
// A file is written under a temporary name, locked with flock while it is
// written, synced and renamed into place, and the directory is synced: a
// reader never sees a partial file, and a crash leaves at most a temporary
// file. [RemoveStale] deletes temporary files that are old enough and that
// no process holds locked, which is how the leftovers of a killed writer
// go. The initramfs and root-disk caches both work this way. [Memo] keeps
// small values derived from files (hashes, version lines) the same way.
//
// The caches hold the programs, libraries and images of whoever built
// them, so they are private: [PrivateDir] makes a cache directory 0700 and
// callers publish files 0600 ([FileMode]). Modes are set with chmod, never
// left to the umask, which can only take bits away and may be 0.
package cachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TempPrefix starts the names of files being written.
const TempPrefix = ".build-"

// Modes of cache directories and of the files published in them.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// PrivateDir creates dir, and its missing parents, as a directory only its
// owner can enter (DirMode), and tightens an existing dir whose mode lets
// others in. Parents it creates are DirMode too (less the umask); existing
// parents are left alone.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm() != DirMode {
		// Exact, not merely "no bits for others": MkdirAll under a umask
		// such as 0o200 would leave the owner unable to write.
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}

// Temp is a file being written for a cache directory.
type Temp struct {
	*os.File
	dir string
}

// Create creates and locks a temporary file in dir whose name ends with
// suffix.
func Create(dir, suffix string) (*Temp, error) {
	f, err := os.CreateTemp(dir, TempPrefix+"*"+suffix)
	if err != nil {
		return nil, err
	}
	// The lock tells RemoveStale that this file is being written.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &Temp{File: f, dir: dir}, nil
}

// Publish gives the file mode, syncs it and renames it to final (in the
// same directory), then syncs the directory so that the rename is durable.
// The file is closed either way; on error it is removed.
func (t *Temp) Publish(final string, mode os.FileMode) (err error) {
	defer func() {
		t.File.Close() // also releases the lock
		if err != nil {
			os.Remove(t.Name())
		}
	}()
	if err := t.Chmod(mode); err != nil {
		return err
	}
	if err := t.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.Name(), err)
	}
	if err := os.Rename(t.Name(), final); err != nil {
		return err
	}
	if d, err := os.Open(t.dir); err == nil {
		_ = d.Sync() // best effort: the file is complete either way
		d.Close()
	}
	return nil
}

// Abort closes and removes the file.
func (t *Temp) Abort() {
	t.File.Close()
	os.Remove(t.Name())
}

// RemoveStale removes temporary files in dir that no process is writing:
// older than age and not locked.
func RemoveStale(dir string, age time.Duration, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), TempPrefix) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) < age {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// WriteFile atomically replaces path with data: written to a temporary
// file in the same directory, synced and renamed over path.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	t, err := Create(filepath.Dir(path), ".tmp")
	if err != nil {
		return err
	}
	if _, err := t.Write(data); err != nil {
		t.Abort()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return t.Publish(path, mode)
}

// pruneStamp is the file whose modification time says when a cache
// directory was last pruned.
const pruneStamp = ".pruned"

// PruneDue reports whether the cache in dir was not pruned within every,
// and if so marks it pruned now: a cache of hundreds of files is pruned
// once a day, not on every run that uses it (listing it costs
// milliseconds). Concurrent callers may both see it due; pruning twice is
// harmless.
func PruneDue(dir string, every time.Duration) bool {
	stamp := filepath.Join(dir, pruneStamp)
	if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < every {
		return false
	}
	now := time.Now()
	if err := os.Chtimes(stamp, now, now); err != nil {
		if f, err := os.OpenFile(stamp, os.O_CREATE|os.O_WRONLY, FileMode); err == nil {
			f.Close()
		}
	}
	return true
}
