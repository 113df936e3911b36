package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/vm"
)

// Volume is a host directory shared into the guest.
type Volume struct {
	Source, Target string
	ReadOnly       bool
}

// rootSerial is the virtio-blk serial of the root file system's drive, by
// which arrow-init finds it.
const rootSerial = "arrow-root"

// guestRoot is what a run on a disk root brings: the drive and what the
// spec must say about it, and how to start the application.
type guestRoot struct {
	drive vm.Drive
	root  *guest.Root
	// From the image's config; empty for --rootfs.
	args []string
	env  []string
	dir  string
	user string
}

// ImagesDir is the image store under Arrow's data root.
func ImagesDir(root string) string { return filepath.Join(root, "images") }

// LookupImage returns the image ref names in the store under root, and
// whether there is one. Program names and image names share `arrow run`'s
// first argument: a path never names an image.
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

// prepareImage builds (or reuses) the disk holding image o.Image's root
// file system and works out its command line like docker run does.
func (p *prepared) prepareImage(ctx context.Context, o *Options) (*guestRoot, error) {
	s, err := store.Open(ImagesDir(o.Root))
	if err != nil {
		return nil, fail(ExitArrowFailed, err)
	}
	img, err := s.Get(ctx, o.Image)
	if err != nil {
		return nil, failf(ExitArrowFailed, "image %s: %w", o.Image, err)
	}
	key := img.Tree.Encoded()
	cache := filepath.Join(o.Root, "rootfs")
	disk := filepath.Join(cache, rootfs.ImageName(key))
	if _, err := os.Stat(disk); err != nil {
		// First run of this image: flatten it from the store and build
		// its disk, next to the store so that files are hard links.
		tmp, err := os.MkdirTemp(o.Root, ".materialize-")
		if err != nil {
			return nil, fail(ExitArrowFailed, err)
		}
		defer os.RemoveAll(tmp)
		dst := filepath.Join(tmp, "root")
		if _, err := s.Materialize(ctx, img, dst, store.MaterializeOptions{}); err != nil {
			return nil, failf(ExitArrowFailed, "image %s: %w", o.Image, err)
		}
		// The mount points arrow-init needs, so that --read-only works
		// with images that lack them (most do: docker creates them).
		// So is the working directory, as docker creates it.
		for _, d := range []string{"proc", "sys", "dev", "tmp", "run", img.Config.WorkingDir} {
			if d == "" || strings.Contains(d, "..") {
				continue
			}
			if err := mkdirInside(dst, d); err != nil {
				return nil, fail(ExitArrowFailed, err)
			}
		}
		if disk, err = rootfs.Build(ctx, dst, cache, key); err != nil {
			return nil, failf(ExitArrowFailed, "image %s: %w", o.Image, err)
		}
		if o.Debug {
			fmt.Fprintf(o.Log, "arrow: built root disk %s\n", disk)
		}
	}
	gr := &guestRoot{
		drive: vm.Drive{Path: disk, Serial: rootSerial, ReadOnly: true},
		root:  &guest.Root{Device: rootSerial, FSType: "erofs", ReadOnly: o.ReadOnly},
		env:   img.Config.Env,
		dir:   img.Config.WorkingDir,
		user:  img.Config.User,
	}
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
	if len(gr.args) == 0 {
		return nil, failf(ExitArrowFailed, "image %s has no entrypoint or command: give one", o.Image)
	}
	return gr, nil
}

// prepareRootFS builds (or reuses) a disk from the directory o.RootFS.
func (p *prepared) prepareRootFS(ctx context.Context, o *Options) (*guestRoot, error) {
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
	key, err := rootfs.TreeKey(ctx, dir)
	if err != nil {
		return nil, failf(ExitArrowFailed, "--rootfs %s: %w", o.RootFS, err)
	}
	disk, err := rootfs.Build(ctx, dir, filepath.Join(o.Root, "rootfs"), key)
	if err != nil {
		return nil, failf(ExitArrowFailed, "--rootfs %s: %w", o.RootFS, err)
	}
	args := append([]string{o.Program}, o.Args...)
	if o.Entrypoint != nil {
		args = append(append([]string{}, o.Entrypoint...), args...)
	}
	return &guestRoot{
		drive: vm.Drive{Path: disk, Serial: rootSerial, ReadOnly: true},
		root:  &guest.Root{Device: rootSerial, FSType: "erofs", ReadOnly: o.ReadOnly},
		args:  args,
	}, nil
}

// volumes turns o.Volumes into the VM's shares and the guest's mounts.
func volumes(o *Options) ([]vm.Share, []guest.Mount, error) {
	if len(o.Volumes) == 0 {
		return nil, nil, nil
	}
	fs, _ := vm.ShareFS()
	var shares []vm.Share
	var mounts []guest.Mount
	for i, v := range o.Volumes {
		src, err := filepath.Abs(v.Source)
		if err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(src); err == nil && !fi.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			return nil, nil, failf(ExitArrowFailed, "-v %s:%s: %w", v.Source, v.Target, err)
		}
		tag := fmt.Sprintf("vol%d", i)
		shares = append(shares, vm.Share{Tag: tag, Path: src, ReadOnly: v.ReadOnly, FS: fs})
		mounts = append(mounts, guest.Mount{Tag: tag, Target: v.Target, FSType: fs, ReadOnly: v.ReadOnly})
	}
	return shares, mounts, nil
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
