package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	reference "github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/cachefile"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/oci"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/vm"
	"github.com/arrowsys/arrow/volume"
)

// guestRoot is what a run on a disk root brings: the drive and what the
// spec must say about it, and how to start the application.
type guestRoot struct {
	drive vm.Drive
	root  *guest.Root
	// disk holds the drive's image in the cache until the run ends.
	disk *rootfs.Disk
	// From the image's config; empty for --rootfs.
	args []string
	env  []string
	dir  string
	// cred is who the application runs as.
	cred credentials
	// users is the root file system's user database, which `arrow exec
	// -u` looks names up in too.
	users *userDB
}

// ImagesDir is the image store under Arrow's data root.
func ImagesDir(root string) string { return dataroot.Root(root).Images() }

// RootDisksDir is the cache of images' root disks under Arrow's data root.
func RootDisksDir(root string) string { return dataroot.Root(root).RootDisks() }

// dirDisksDir is the cache of --rootfs directories' disks: apart from the
// images' disks, which are pruned by the images they belong to.
func dirDisksDir(root string) string { return dataroot.Root(root).DirDisks() }

// RootDiskMaxAge is how long a root disk nothing used is kept.
const RootDiskMaxAge = 30 * 24 * time.Hour

// LookupImage returns the image ref names in the store under root, and
// whether there is one. Program names and image names share `arrow run`'s
// first argument: a path never names an image in the store (see
// [IsImageSource] for paths that are images).
func LookupImage(ctx context.Context, root, ref string) (store.Image, bool) {
	if ref == "" || strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") {
		return store.Image{}, false
	}
	if _, err := os.Stat(ImagesDir(root)); err != nil {
		return store.Image{}, false // no store yet: do not create one
	}
	s, err := store.Open(ImagesDir(root))
	if err != nil {
		return store.Image{}, false
	}
	img, err := s.Get(ctx, ref)
	return img, err == nil
}

// pathTransports are the image sources that name a path.
var pathTransports = []string{"oci:", "oci-archive:", "docker-archive:"}

// IsImageSource reports whether arg, the first argument of `arrow run`,
// names an image to import or pull rather than a host program: an explicit
// transport (oci:DIR, oci-archive:FILE, docker-archive:FILE, docker://REF),
// an OCI image layout directory (one holding an oci-layout file), or an
// image archive (a tar file, possibly compressed, with no execute bit:
// it cannot be a program).
func IsImageSource(arg string) bool {
	if strings.HasPrefix(arg, "docker://") {
		return true
	}
	for _, t := range pathTransports {
		if strings.HasPrefix(arg, t) {
			return true
		}
	}
	fi, err := os.Stat(arg)
	switch {
	case err != nil:
		return false
	case fi.IsDir():
		_, err := os.Stat(filepath.Join(arg, "oci-layout"))
		return err == nil
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 != 0:
		return false
	}
	return isArchive(arg)
}

// isArchive reports whether the file at p starts like a tar file, or a
// gzip, zstd or bzip2 stream (a compressed one).
func isArchive(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	b = b[:n]
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}), bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}), bytes.HasPrefix(b, []byte("BZh")):
		return true
	case n >= 262 && string(b[257:262]) == "ustar":
		return true
	}
	return false
}

// findImage returns the image ref names, bringing it into the store when
// it is not there: a path (an OCI layout directory or an archive, with or
// without an oci:, oci-archive: or docker-archive: prefix) is imported,
// which is cheap when the store has the image already; anything else is
// an image of the store, or else a registry reference, pulled.
func findImage(ctx context.Context, s *store.Store, ref string, log io.Writer) (store.Image, error) {
	src, isPath := imagePath(ref)
	if isPath {
		img, err := importImage(ctx, s, src)
		if err != nil {
			return img, failf(ExitArrowFailed, "image %s: %w", ref, err)
		}
		return img, nil
	}
	name, explicit := strings.CutPrefix(ref, "docker://")
	img, err := s.Get(ctx, name)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		if err != nil {
			return img, failf(ExitArrowFailed, "image %s: %w", ref, err)
		}
		return img, nil
	}
	r, perr := reference.ParseReference(name)
	if perr != nil {
		if explicit {
			return img, failf(ExitArrowFailed, "image %s: %w", ref, perr)
		}
		return img, failf(ExitArrowFailed, "image %s: not in the store, and not a registry reference (%w)", ref, perr)
	}
	// `arrow image pull` names images by the full reference.
	if img, err := s.Get(ctx, r.Name()); err == nil {
		return img, nil
	}
	fmt.Fprintf(log, "arrow: image %s is not in the store: pulling %s\n", ref, r.Name())
	src2, err := oci.FromRegistry(ctx, name, oci.Options{})
	if err != nil {
		return img, failf(ExitArrowFailed, "image %s: not in the store, and pulling it failed: %w", ref, err)
	}
	defer src2.Close()
	img, err = s.Import(ctx, src2, "")
	if err != nil {
		return img, failf(ExitArrowFailed, "image %s: %w", ref, err)
	}
	return img, nil
}

// imagePath returns the image source ref names as a path, made absolute,
// and whether it is one.
func imagePath(ref string) (string, bool) {
	for _, t := range pathTransports {
		if rest, ok := strings.CutPrefix(ref, t); ok {
			if abs, err := filepath.Abs(rest); err == nil && rest != "" {
				rest = abs
			}
			return t + rest, true
		}
	}
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") || ref == "." || ref == ".." {
		abs, err := filepath.Abs(ref)
		if err != nil {
			return ref, true
		}
		return abs, true
	}
	return "", false
}

// importImage imports the image at src (a path, or a path with a
// transport) under the name of its source ("oci:/path/to/layout").
func importImage(ctx context.Context, s *store.Store, src string) (store.Image, error) {
	if _, err := os.Stat(src); err != nil && !strings.Contains(src, ":") {
		return store.Image{}, err
	}
	img, err := oci.Open(ctx, src, oci.Options{})
	if err != nil {
		return store.Image{}, err
	}
	defer img.Close()
	return s.Import(ctx, img, "")
}

// storeUserDB reads img's /etc/passwd and /etc/group from the store.
func storeUserDB(ctx context.Context, s *store.Store, img store.Image) (*userDB, error) {
	var files [2][]byte
	for i, name := range []string{"/etc/passwd", "/etc/group"} {
		b, err := s.ReadFile(ctx, img, name, maxIdentityFile)
		switch {
		case err == nil:
			files[i] = b
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, err
		}
	}
	return newUserDB(files[0], files[1]), nil
}

// prepareImage builds (or reuses) the disk holding image o.Image's root
// file system and works out its command line like docker run does.
func (p *plan) prepareImage(ctx context.Context, o *Options) (*guestRoot, error) {
	s, err := store.Open(ImagesDir(o.Root))
	if err != nil {
		return nil, fail(ExitArrowFailed, err)
	}
	img, err := findImage(ctx, s, o.Image, o.Log)
	if err != nil {
		return nil, err
	}
	if err := populateVolumes(ctx, s, img, p.fresh); err != nil {
		return nil, err
	}
	// The user first: an unknown name fails before any disk is built.
	db, err := storeUserDB(ctx, s, img)
	if err != nil {
		return nil, failf(ExitArrowFailed, "image %s: user database: %w", o.Image, err)
	}
	cred, err := userCredentials(o, img.Config.User, "image "+o.Image, db)
	if err != nil {
		return nil, err
	}
	key := img.Tree.Encoded()
	cache := RootDisksDir(o.Root)
	path := filepath.Join(cache, rootfs.ImageName(key))
	var buildErr error // says what failed itself
	disk, err := rootfs.HoldOrBuild(path, func() error {
		buildErr = buildImageDisk(ctx, s, img, o, cache, key)
		return buildErr
	})
	if buildErr != nil {
		return nil, buildErr
	}
	if err != nil {
		return nil, failf(ExitArrowFailed, "image %s: %w", o.Image, err)
	}
	gr := diskRoot(disk, o.ReadOnly, cred)
	gr.env, gr.dir, gr.users = img.Config.Env, img.Config.WorkingDir, db
	// docker run: ARGS replace Cmd; --entrypoint replaces Entrypoint and
	// drops Cmd.
	entrypoint, cmd := img.Config.Entrypoint, img.Config.Cmd
	if o.Entrypoint != nil {
		entrypoint, cmd = o.Entrypoint, nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	gr.args = append(append([]string{}, entrypoint...), cmd...)
	if len(gr.args) == 0 && o.Service == "" {
		disk.Close()
		return nil, failf(ExitArrowFailed, "image %s has no entrypoint or command: give one", o.Image)
	}
	return gr, nil
}

// buildImageDisk flattens img from the store and builds its disk in cache.
func buildImageDisk(ctx context.Context, s *store.Store, img store.Image, o *Options, cache, key string) error {
	// Next to the store, so that files are hard links.
	tmp, err := os.MkdirTemp(o.Root, ".materialize-")
	if err != nil {
		return fail(ExitArrowFailed, err)
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "root")
	if _, err := s.Materialize(ctx, img, dst, store.MaterializeOptions{}); err != nil {
		return failf(ExitArrowFailed, "image %s: %w", o.Image, err)
	}
	// The mount points arrow-init needs, so that --read-only works
	// with images that lack them (most do: docker creates them).
	// So is the working directory, as docker creates it.
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", img.Config.WorkingDir} {
		if d == "" || strings.Contains(d, "..") {
			continue
		}
		if err := mkdirInside(dst, d); err != nil {
			return fail(ExitArrowFailed, err)
		}
	}
	disk, err := rootfs.Build(ctx, dst, cache, key)
	if err != nil {
		return failf(ExitArrowFailed, "image %s: %w", o.Image, err)
	}
	if o.Debug {
		fmt.Fprintf(o.Log, "arrow: built root disk %s\n", disk)
	}
	return nil
}

// prepareRootFS builds (or reuses) a disk from the directory o.RootFS.
func (p *plan) prepareRootFS(ctx context.Context, o *Options) (*guestRoot, error) {
	dir, err := filepath.Abs(o.RootFS)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(dir); err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
	}
	if err != nil {
		return nil, failf(ExitArrowFailed, "--rootfs %s: %w", o.RootFS, err)
	}
	db, err := readDirUserDB(dir)
	if err != nil {
		return nil, failf(ExitArrowFailed, "--rootfs %s: user database: %w", o.RootFS, err)
	}
	cred, err := userCredentials(o, "", "--rootfs "+o.RootFS, db)
	if err != nil {
		return nil, err
	}
	key := o.RootFSKey
	if key == "" {
		if key, err = rootfs.TreeKey(ctx, dir); err != nil {
			return nil, failf(ExitArrowFailed, "--rootfs %s: %w", o.RootFS, err)
		}
	}
	cache := dirDisksDir(o.Root)
	disk, err := rootfs.HoldOrBuild(filepath.Join(cache, rootfs.ImageName(key)), func() error {
		_, err := rootfs.Build(ctx, dir, cache, key)
		return err
	})
	if err != nil {
		return nil, failf(ExitArrowFailed, "--rootfs %s: %w", o.RootFS, err)
	}
	// Every change to a directory makes a new disk: the old ones go
	// after a month unused.
	if cachefile.PruneDue(cache, pruneEvery) {
		if _, err := rootfs.Prune(cache, nil, RootDiskMaxAge); err != nil && o.Debug {
			fmt.Fprintf(o.Log, "arrow: pruning the --rootfs disk cache: %v\n", err)
		}
	}
	args := append([]string{o.Program}, o.Args...)
	if o.Service != "" {
		args = nil // the unit's commands
	}
	if o.Entrypoint != nil {
		args = append(append([]string{}, o.Entrypoint...), args...)
	}
	gr := diskRoot(disk, o.ReadOnly, cred)
	gr.args, gr.users = args, db
	return gr, nil
}

// PruneRootDisks removes the cached root disks of images the store under
// root no longer has, and disks (of images, --rootfs directories and host
// programs' closures) not used within maxAge (see rootfs.Prune; a disk in
// use by a run stays). A removed disk of a stored image is
// rebuilt by its next run.
func PruneRootDisks(ctx context.Context, root string, maxAge time.Duration) (rootfs.PruneStats, error) {
	var total rootfs.PruneStats
	if _, err := os.Stat(RootDisksDir(root)); err != nil {
		return total, nil
	}
	s, err := store.Open(ImagesDir(root))
	if err != nil {
		return total, err
	}
	imgs, err := s.List(ctx)
	if err != nil {
		return total, err
	}
	wanted := make(map[string]bool, len(imgs))
	for _, img := range imgs {
		wanted[rootfs.ImageName(img.Tree.Encoded())] = true
	}
	st, err := rootfs.Prune(RootDisksDir(root), func(name string) bool { return wanted[name] }, maxAge)
	if err != nil {
		return st, err
	}
	// --rootfs disks and host programs' closure disks: nothing
	// names them, so age alone decides.
	for _, dir := range []string{dirDisksDir(root), closuresDir(root)} {
		more, err := rootfs.Prune(dir, nil, maxAge)
		st.Images += more.Images
		st.Bytes += more.Bytes
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// volumes turns o.Volumes into the VM's shares and the guest's mounts. A
// named volume is created when it does not exist and held (see
// volume.Store.Acquire) until the run ends; those still empty are
// returned in fresh, for the image to populate.
func (p *plan) volumes(ctx context.Context, o *Options) ([]vm.Share, []guest.Mount, []freshVolume, error) {
	if len(o.Volumes) == 0 {
		return nil, nil, nil, nil
	}
	fs, _ := vm.ShareFS()
	var (
		shares []vm.Share
		mounts []guest.Mount
		fresh  []freshVolume
		vs     *volume.Store
	)
	for i, v := range o.Volumes {
		var src string
		var err error
		if v.Named() {
			if vs == nil {
				if vs, err = volume.Open(dataroot.Root(o.Root).Volumes()); err != nil {
					return nil, nil, nil, fail(ExitArrowFailed, err)
				}
			}
			m, err := vs.Acquire(ctx, v.Source)
			if err != nil {
				return nil, nil, nil, failf(ExitArrowFailed, "-v %s:%s: %w", v.Source, v.Target, err)
			}
			p.held = append(p.held, m)
			if m.Empty {
				fresh = append(fresh, freshVolume{m, v.Target})
			}
			src = m.Dir
		} else {
			src, err = filepath.Abs(v.Source)
			if err == nil {
				var fi os.FileInfo
				if fi, err = os.Stat(src); err == nil && !fi.IsDir() {
					err = errors.New("not a directory")
				}
			}
			if err != nil {
				return nil, nil, nil, failf(ExitArrowFailed, "-v %s:%s: %w", v.Source, v.Target, err)
			}
		}
		tag := fmt.Sprintf("vol%d", i)
		shares = append(shares, vm.Share{Tag: tag, Path: src, ReadOnly: v.ReadOnly, FS: fs})
		mounts = append(mounts, guest.Mount{Tag: tag, Target: v.Target, FSType: fs, ReadOnly: v.ReadOnly})
	}
	return shares, mounts, fresh, nil
}

// freshVolume is a named volume that was empty when the run took it,
// mounted at target.
type freshVolume struct {
	m      *volume.Mount
	target string
}

// populateVolumes fills the empty named volumes from img's content at
// their mount paths, owners and modes kept, as docker does on a volume's
// first use. An image with nothing there leaves the volume empty. Each is
// built aside and renamed into place, so a failed or interrupted copy
// leaves the volume empty, to be populated by its next run.
func populateVolumes(ctx context.Context, s *store.Store, img store.Image, fresh []freshVolume) error {
	for _, f := range fresh {
		tmp, err := os.MkdirTemp(filepath.Dir(f.m.Dir), cachefile.TempPrefix+"populate-")
		if err != nil {
			return failf(ExitArrowFailed, "volume %s: %w", f.m.Name, err)
		}
		_, err = s.Materialize(ctx, img, tmp, store.MaterializeOptions{Copy: true, Subtree: f.target})
		if errors.Is(err, store.ErrNotFound) {
			os.RemoveAll(tmp)
			continue
		}
		if err == nil {
			// Over the empty directory: rename(2) replaces an empty
			// one, and fails on one that another run has just filled.
			// (rename(2) itself: os.Rename refuses any directory.)
			err = unix.Rename(tmp, f.m.Dir)
			if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
				os.RemoveAll(tmp)
				continue
			}
		}
		if err != nil {
			os.RemoveAll(tmp)
			return failf(ExitArrowFailed, "volume %s: populate from the image's %s: %w", f.m.Name, f.target, err)
		}
	}
	return nil
}

// emptySet is the initramfs closure of a run whose application lives on a
// disk: arrow-init alone.
func emptySet() *closure.Set { return closure.NewSet() }

// mkdirInside creates the directory rel (a guest path) under root, but
// only through real directories: the tree comes from an untrusted image,
// and a symlink on the way (srv -> /etc) must not make Arrow create
// directories on the host. Such a path is left alone.
func mkdirInside(root, rel string) error {
	p := root
	for _, c := range strings.Split(filepath.Clean("/"+rel), "/") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return nil // a symlink or a file: not ours to replace
		case os.IsNotExist(err):
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}
