// Package volume keeps named volumes: directories under the data root
// that outlive the arrows that mount them, as docker's named volumes do.
//
// A volume NAME is dataroot's Volume(NAME), holding:
//
//	volume.json   its record (name, creation time, labels), written
//	              atomically
//	lock          flock'ed shared by every run that mounts the volume,
//	              exclusively by rm and prune, which therefore never
//	              remove a volume a VM is using
//	refs/ID       one empty file per detached arrow (running or not)
//	              whose config names the volume, written by arrowd
//	_data/        the content, shared with the guest over virtiofs
//
// A run that mounts a volume while it is empty fills it from the image's
// content at the mount path, owners and modes kept: docker's rule, so
// the first use populates it and later ones find the data left there.
package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/image/cachefile"
)

// Errors of volume operations; the API maps them to statuses.
var (
	ErrInvalidName = errors.New("invalid volume name")
	// ErrInvalidLabels is wrapped when Create is given labels beyond
	// api.ValidateLabels' bounds.
	ErrInvalidLabels = errors.New("invalid volume labels")
	ErrNotFound      = errors.New("no such volume")
	ErrInUse         = errors.New("volume is in use")
)

// ValidateName checks a volume name as docker does (see
// api.ValidateVolumeName).
func ValidateName(name string) error {
	if err := api.ValidateVolumeName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	return nil
}

// Volume is a volume's record, with what Get and List measure: its
// size, the detached arrows that name it, whether it is in use. Only
// Name, Created and Labels are stored (volume.json).
type Volume = api.VolumeInfo

// Store is the volumes under one directory (dataroot's Volumes()).
type Store struct{ dir string }

// Open returns the store of volumes in dir, creating dir private.
func Open(dir string) (*Store, error) {
	if err := cachefile.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(name string, elem ...string) string {
	return filepath.Join(append([]string{s.dir, name}, elem...)...)
}

// Data returns the directory holding volume name's content.
func (s *Store) Data(name string) string { return s.path(name, "_data") }

// Create creates volume name with labels (see [api.ValidateLabels]; nil
// for none), or returns it as it is when it exists (as docker volume
// create does: its labels are those it was created with). created says
// which.
func (s *Store) Create(ctx context.Context, name string, labels map[string]string) (v Volume, created bool, err error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, false, err
	}
	if err := api.ValidateLabels(labels); err != nil {
		return Volume{}, false, fmt.Errorf("%w: volume %s: %w", ErrInvalidLabels, name, err)
	}
	l, err := s.lockStore(ctx)
	if err != nil {
		return Volume{}, false, err
	}
	defer l.Close()
	if v, err := s.read(name); err == nil {
		return v, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Volume{}, false, err
	}
	// Built under a temporary name and renamed into place with its
	// record: a volume is whole or absent.
	tmp, err := os.MkdirTemp(s.dir, cachefile.TempPrefix+name+"-")
	if err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	v = Volume{Name: name, Created: time.Now().UTC().Truncate(time.Second), Labels: maps.Clone(labels)}
	for _, d := range []string{"_data", "refs"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
		}
	}
	// The content's top directory is the guest's mount point: 0755, as
	// docker makes it, until population gives it the image's mode.
	if err := os.Chmod(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := writeRecord(tmp, v); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.Rename(tmp, s.path(name)); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return Volume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	v.Mountpoint = s.Data(name)
	return v, true, nil
}

func writeRecord(dir string, v Volume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return cachefile.WriteFile(filepath.Join(dir, "volume.json"), append(b, '\n'), cachefile.FileMode)
}

// maxRecord bounds a record read back: the data root is the user's own,
// but a damaged file must not be read whole. Labels within
// api.ValidateLabels' bounds take at most 1 MiB, 6 MiB as JSON at worst
// (every byte a \u escape).
const maxRecord = 8 << 20

// read reads volume name's record.
func (s *Store) read(name string) (Volume, error) {
	f, err := os.Open(s.path(name, "volume.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Volume{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Volume{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: record: %w", name, err)
	}
	if len(b) > maxRecord {
		return Volume{}, fmt.Errorf("volume %s: record larger than %d bytes", name, maxRecord)
	}
	var v Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return Volume{}, fmt.Errorf("volume %s: record: %w", name, err)
	}
	if v.Name != name {
		return Volume{}, fmt.Errorf("volume %s: record names %q", name, v.Name)
	}
	v.Mountpoint = s.Data(name)
	return v, nil
}

// Get returns volume name with its size and users.
func (s *Store) Get(ctx context.Context, name string) (Volume, error) {
	if err := ValidateName(name); err != nil {
		return Volume{}, err
	}
	v, err := s.read(name)
	if err != nil {
		return Volume{}, err
	}
	return s.measure(ctx, v)
}

// measure fills v's size and users.
func (s *Store) measure(ctx context.Context, v Volume) (Volume, error) {
	var err error
	if v.Arrows, err = s.refs(v.Name); err != nil {
		return v, err
	}
	v.InUse = len(v.Arrows) > 0
	if !v.InUse {
		if l, ok, err := tryLock(s.path(v.Name, "lock"), unix.LOCK_EX); err != nil {
			return v, err
		} else if ok {
			l.Close()
		} else {
			v.InUse = true
		}
	}
	v.Size, err = dirSize(ctx, s.Data(v.Name))
	return v, err
}

// List returns every volume, sorted by name.
func (s *Store) List(ctx context.Context) ([]Volume, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	var out []Volume
	for _, e := range entries {
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue // temporary directories, the lock
		}
		v, err := s.read(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if v, err = s.measure(ctx, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// refs lists the detached arrows that name volume name.
func (s *Store) refs(name string) ([]string, error) {
	entries, err := os.ReadDir(s.path(name, "refs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	slices.Sort(ids)
	return ids, nil
}

// maxRefLen bounds an arrow ID written as a reference's file name.
const maxRefLen = 128

// AddRef records that the detached arrow id names volume name, creating
// the volume when it does not exist (as docker run does): rm refuses it
// until RemoveRef.
func (s *Store) AddRef(ctx context.Context, name, id string) error {
	if id == "" || len(id) > maxRefLen || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("volume %s: arrow ID %q", name, id)
	}
	if _, _, err := s.Create(ctx, name, nil); err != nil {
		return err
	}
	l, err := s.lockStore(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	if _, err := s.read(name); err != nil { // removed in between
		return err
	}
	f, err := os.OpenFile(s.path(name, "refs", id), os.O_CREATE|os.O_WRONLY, cachefile.FileMode)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	f.Close()
	return syncDir(s.path(name, "refs"))
}

// RemoveRef undoes AddRef; a reference or volume already gone is fine.
func (s *Store) RemoveRef(name, id string) error {
	if ValidateName(name) != nil || id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil
	}
	err := os.Remove(s.path(name, "refs", id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	return nil
}

// Remove removes volume name and its content. It is refused (ErrInUse)
// while a detached arrow names it or a VM mounts it; force skips the
// first check, never the second.
func (s *Store) Remove(ctx context.Context, name string, force bool) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	l, err := s.lockStore(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	return s.removeLocked(name, force)
}

func (s *Store) removeLocked(name string, force bool) error {
	if _, err := s.read(name); err != nil {
		return err
	}
	ids, err := s.refs(name)
	if err != nil {
		return err
	}
	if len(ids) > 0 && !force {
		return fmt.Errorf("%w: %s: by arrow %s (remove it first)", ErrInUse, name, strings.Join(ids, ", "))
	}
	vl, ok, err := tryLock(s.path(name, "lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s: a running VM mounts it", ErrInUse, name)
	}
	defer vl.Close()
	// Renamed away first, so that the name is free at once and a crash
	// halfway leaves only a temporary directory, which prune removes.
	gone, err := os.MkdirTemp(s.dir, cachefile.TempPrefix+"rm-")
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.Rename(s.path(name), filepath.Join(gone, name)); err != nil {
		os.Remove(gone)
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// PruneStats says what Prune removed.
type PruneStats = api.VolumePruneResponse

// Prune removes every volume no arrow uses: none names it and no VM
// mounts it. It also removes what interrupted creations and removals
// left.
func (s *Store) Prune(ctx context.Context) (PruneStats, error) {
	var st PruneStats
	l, err := s.lockStore(ctx)
	if err != nil {
		return st, err
	}
	defer l.Close()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return st, fmt.Errorf("volumes: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if strings.HasPrefix(e.Name(), cachefile.TempPrefix) {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
			continue
		}
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		size, _ := dirSize(ctx, s.Data(e.Name()))
		err := s.removeLocked(e.Name(), false)
		switch {
		case err == nil:
			st.Removed = append(st.Removed, e.Name())
			st.Bytes += size
		case errors.Is(err, ErrInUse), errors.Is(err, ErrNotFound):
		default:
			return st, err
		}
	}
	return st, nil
}

// Mount is a volume held by a run: its content directory, which stays
// while the Mount is open.
type Mount struct {
	Name string
	Dir  string
	// Empty is set when Dir held nothing when the run acquired it: the
	// run fills it from its image.
	Empty bool
	lock  *os.File
}

// Acquire holds volume name for a run, creating it when it does not
// exist (docker run's rule): rm and prune refuse it until Close.
func (s *Store) Acquire(ctx context.Context, name string) (*Mount, error) {
	if _, _, err := s.Create(ctx, name, nil); err != nil {
		return nil, err
	}
	sl, err := s.lockStore(ctx)
	if err != nil {
		return nil, err
	}
	defer sl.Close()
	if _, err := s.read(name); err != nil {
		return nil, err
	}
	// Shared: many VMs may mount one volume, as docker allows; rm takes
	// it exclusively. Taken under the store's lock, so rm cannot come in
	// between the record and the lock.
	f, ok, err := tryLock(s.path(name, "lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("volume %s: being removed", name)
	}
	empty, err := isEmpty(s.Data(name))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	return &Mount{Name: name, Dir: s.Data(name), Empty: empty, lock: f}, nil
}

// Close releases the volume.
func (m *Mount) Close() error { return m.lock.Close() }

// isEmpty reports whether dir has no entries.
func isEmpty(dir string) (bool, error) {
	d, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) == 0 {
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// lockStore takes the store's lock: creations, removals and reference
// changes are one at a time.
func (s *Store) lockStore(ctx context.Context) (*os.File, error) {
	for {
		f, ok, err := tryLock(filepath.Join(s.dir, ".lock"), unix.LOCK_EX)
		if err != nil || ok {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tryLock opens path (creating it) and flocks it without waiting; ok is
// false when another holds it.
func tryLock(path string, how int) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, cachefile.FileMode)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// dirSize sums the sizes of dir's regular files, hard links once, without
// following symbolic links.
func dirSize(ctx context.Context, dir string) (int64, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil
		}
		k := ino{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		n += st.Size
		return nil
	})
	return n, err
}
