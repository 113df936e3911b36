package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/vm"
)

// Application snapshots.
//
// A template is a guest saved before any application ran; an
// application snapshot ([App]) is a running arrow's guest saved once its
// application initialized, so that its clones skip the application's
// start-up as a template's skip the kernel's boot (Lambda SnapStart and
// Firecracker's snapshots do the same).
//
// The arrow is itself a clone of its machine's template, and so has the
// same machine and devices: a snapshot is stored as a template of that
// key (same files, same checks), and cloned by [Template.Clone]. Only
// its RAM needs a detour. A clone's RAM is a private mapping of the
// template's file, which QEMU can only stream whole; so the arrow's state
// is saved with its RAM ([vm.Machine.SaveAll]), loaded into a second,
// paused QEMU whose RAM is a new shared file ([vm.Machine.RestoreAll]),
// and saved again from there as a template is, its devices alone. The
// clones of the snapshot then map that file privately and share its
// pages, as a template's do.
//
// The root disk goes with the snapshot: the arrow's disk image is linked
// into its directory, so that removing the image (or pruning a cache)
// cannot take it from under the snapshot. The guest's writes live in its
// RAM (its root is under a tmpfs overlay), so they are in the snapshot.

// App is a published application snapshot.
type App struct {
	Template
	// Name is the snapshot's name, unique under a data root.
	Name string `json:"name"`
	// Arrow is the ID of the arrow it was taken of; Config is what the
	// arrow runs, which its clones run too.
	Arrow  string     `json:"arrow"`
	Config api.Config `json:"config"`
	// Spec is what arrow-init was handed to run the application, its
	// seed left out: exec in a clone takes its defaults from it.
	Spec *guest.Spec `json:"spec,omitempty"`
	// Signal, when not 0, is sent to the application of every clone
	// once it is unique: its hook to draw again from randomness.
	Signal int `json:"signal,omitempty"`
	// SaveTime is how long the arrow was paused to be saved; BuildTime
	// how long the whole snapshot took.
	SaveTime  time.Duration `json:"save_ns"`
	BuildTime time.Duration `json:"build_ns"`
}

// ErrAppNotFound is returned for a snapshot name that does not exist.
var ErrAppNotFound = errors.New("no such snapshot")

// ErrAppExists is returned by [CaptureApp] for a name that is taken.
var ErrAppExists = errors.New("a snapshot of that name exists")

// AppsDir is where the application snapshots under Arrow's data root
// live.
func AppsDir(root string) string { return dataroot.Root(root).Snapshots() }

// DiskPath is the root disk of the snapshot's clones.
func (a *App) DiskPath() string { return filepath.Join(a.Dir, "disk.img") }

// CheckAppName refuses a snapshot name that is not a valid arrow name
// (it names a directory).
func CheckAppName(name string) error {
	if !api.ValidName(name) {
		return fmt.Errorf("snapshot name %q: want letters, digits and _.- (starting with a letter or digit), at most 128 characters", name)
	}
	return nil
}

// Saver is what [CaptureApp] saves: the running arrow's VM, frozen by
// the caller (see guest.Agent.Freeze).
type Saver interface {
	SaveAll(ctx context.Context, w *os.File) error
}

// CaptureApp saves the running clone src, whose machine is c's template
// (in says its inputs) and whose root disk is disk, as the application
// snapshot meta.Name; the rest of meta (Arrow, Config) is recorded as
// given. src is left paused: the caller resumes it, then thaws its
// guest. On failure nothing is published or left behind.
func CaptureApp(ctx context.Context, c Config, in Inputs, src Saver, disk string, meta App) (*App, error) {
	t0 := time.Now()
	if err := c.defaults(); err != nil {
		return nil, err
	}
	if err := CheckAppName(meta.Name); err != nil {
		return nil, err
	}
	if c.TapNet {
		return nil, errors.New("snapshot: an arrow on a bridge network cannot be snapshotted: its clones would share its address")
	}
	if got := c.layout(in.Initrd); got != in.Layout {
		return nil, errors.New("snapshot: the arrow's machine is not its template's")
	}
	dir := AppsDir(c.Root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	final := filepath.Join(dir, meta.Name)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("snapshot %s: %w", meta.Name, ErrAppExists)
	}
	tmp, err := os.MkdirTemp(dir, ".build-"+meta.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(tmp)
		}
	}()
	a := &App{Template: Template{Key: in.Key(), Dir: tmp, Inputs: in, MemFile: filepath.Join(final, "mem")},
		Name: meta.Name, Arrow: meta.Arrow, Config: meta.Config, Spec: meta.Spec, Signal: meta.Signal}
	if a.Spec != nil {
		s := *a.Spec
		s.Seed = nil
		a.Spec = &s
	}
	if err := linkOrCopy(disk, a.DiskPath()); err != nil {
		return nil, fmt.Errorf("snapshot: root disk: %w", err)
	}
	stream, err := os.OpenFile(filepath.Join(tmp, "stream"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer stream.Close()
	t1 := time.Now()
	if err := src.SaveAll(ctx, stream); err != nil {
		return nil, fmt.Errorf("snapshot: save the arrow: %w", err)
	}
	a.SaveTime = time.Since(t1)
	if _, err := stream.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	tmpMem := filepath.Join(tmp, "mem")
	if err := createMem(tmpMem); err != nil {
		return nil, err
	}
	if err := a.reshape(ctx, &c, stream, tmpMem); err != nil {
		return nil, err
	}
	stream.Close()
	os.Remove(stream.Name())
	if a.StateSHA256, err = (cachefile.Memo{}).FileSum(a.statePath()); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	fi, err := os.Stat(tmpMem)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	a.MemSize, a.MemInode, a.MemCtime = fi.Size(), st.Ino, ctime(st)
	a.Created = time.Now().UTC()
	a.BuildTime = time.Since(t0)
	b, _ := json.MarshalIndent(a, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	// A directory renamed onto an existing one fails unless that one
	// is empty: two snapshots of one name cannot both be published.
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil, fmt.Errorf("snapshot %s: %w", meta.Name, ErrAppExists)
		}
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	published = true
	a.Dir = final
	return a, nil
}

// reshape turns the whole-RAM stream into a template's files: a paused
// QEMU of the same machine, its RAM the shared file mem, loads the
// stream, and saves its devices' state alone; its RAM stays in mem.
func (a *App) reshape(ctx context.Context, c *Config, stream *os.File, mem string) error {
	cfg := c.vmConfig(a.Inputs.Initrd, a.DiskPath())
	cfg.NICs = c.nics(false)
	cfg.Memory = &vm.MemoryFile{Path: mem, Shared: true}
	cfg.Incoming = true
	m, err := vm.Start(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer func() {
		_ = m.Kill()
		<-m.Done()
	}()
	if err := m.RestoreAll(ctx, stream); err != nil {
		return fmt.Errorf("snapshot: load the arrow's state: %w", err)
	}
	st, err := os.OpenFile(a.statePath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	err = m.Save(ctx, st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot: save: %w", err)
	}
	return nil
}

// linkOrCopy makes dst the file src: a hard link when both are on one
// file system, a copy otherwise.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
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

// LookupApp returns the published snapshot name, checked as a template
// is ([Lookup]): a failure of the checks wraps [ErrUnusable], a name
// that does not exist [ErrAppNotFound].
func LookupApp(root, name string) (*App, error) {
	if err := CheckAppName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(AppsDir(root), name)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", name, ErrAppNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: %v", ErrUnusable, name, err)
	}
	a := &App{}
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: meta.json: %v", ErrUnusable, name, err)
	}
	a.Dir = dir
	if a.Name != name || a.Inputs.Key() != a.Key || a.MemFile != filepath.Join(dir, "mem") {
		return nil, fmt.Errorf("%w: snapshot %s: meta.json describes another snapshot", ErrUnusable, name)
	}
	if err := a.verify(root); err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: %v", ErrUnusable, name, err)
	}
	return a, nil
}

// ListApps returns the published snapshots, by creation time; one whose
// metadata does not read is listed by name alone.
func ListApps(root string) ([]*App, error) {
	ents, err := os.ReadDir(AppsDir(root))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*App
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		a := &App{Name: e.Name()}
		a.Dir = filepath.Join(AppsDir(root), e.Name())
		if b, err := os.ReadFile(filepath.Join(a.Dir, "meta.json")); err == nil {
			_ = json.Unmarshal(b, a)
			a.Name = e.Name()
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// RemoveApp deletes the snapshot name. Its running clones keep their
// mappings of its memory and their disk.
func RemoveApp(root, name string) error {
	if err := CheckAppName(name); err != nil {
		return err
	}
	dir := filepath.Join(AppsDir(root), name)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snapshot %s: %w", name, ErrAppNotFound)
	}
	// Renamed away first: a reader finds the whole snapshot or none.
	gone := filepath.Join(AppsDir(root), ".rm-"+name+"-"+randomSuffix())
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	return os.RemoveAll(gone)
}
