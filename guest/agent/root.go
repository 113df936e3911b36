//go:build linux

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// Where arrow-init assembles an image's root inside the initramfs before
// switching to it. None of this is reachable from the new root.
const (
	stageDir = "/.arrow"
	lowerDir = stageDir + "/lower" // the device, read-only
	rwDir    = stageDir + "/rw"    // tmpfs holding the overlay's upper and work directories
	mergeDir = stageDir + "/root"  // the overlay
)

// deviceWait bounds how long arrow-init waits for the root device to
// appear. The kernel probes virtio-mmio devices before it starts init, so
// this only matters on an odd kernel; it must not become a hang.
const deviceWait = 5 * time.Second

// kernelMounts are the mounts moved from the initramfs into the new root,
// with the mode of the directory created for them in a writable root.
var kernelMounts = []struct {
	dir  string
	mode uint32
}{{"/proc", 0o555}, {"/sys", 0o555}, {"/dev", 0o755}}

// setupFS switches to the spec's root file system, when it has one, and
// mounts its volumes. An error leaves the guest unusable: the caller
// reports it as an init failure.
func (a *agent) setupFS(spec *guest.Spec) error {
	readOnlyRoot := false
	if r := spec.Root; r != nil {
		t0 := time.Now()
		if err := switchRoot(r); err != nil {
			return fmt.Errorf("root file system: %w", err)
		}
		readOnlyRoot = r.ReadOnly
		a.debugf("switched to the %s root on %s in %v", r.FSType, r.Device, time.Since(t0))
	}
	if len(spec.Mounts) == 0 {
		return nil
	}
	t0 := time.Now()
	if err := mountVolumes(spec.Mounts, readOnlyRoot); err != nil {
		return err
	}
	a.debugf("mounted %d volumes in %v", len(spec.Mounts), time.Since(t0))
	return nil
}

// switchRoot mounts r, read-only and (unless r.ReadOnly) under a tmpfs
// overlay, moves /proc, /sys and /dev into it and makes it the root, the
// way switch_root(8) leaves an initramfs: pivot_root(2) cannot, since the
// initramfs is the root mount itself.
func switchRoot(r *guest.Root) error {
	dev, err := findDevice(r.Device, deviceWait)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(lowerDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, lowerDir, r.FSType, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s) read-only: %w", dev, r.FSType, err)
	}
	root := lowerDir
	if !r.ReadOnly {
		if err := mountOverlay(lowerDir, rwDir, mergeDir); err != nil {
			return err
		}
		root = mergeDir
	}
	for _, m := range kernelMounts {
		target := root + m.dir
		if err := ensureDir(target, m.mode, r.ReadOnly); err != nil {
			return fmt.Errorf("mount point for %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.dir, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the new root: %w", m.dir, err)
		}
	}
	// The initramfs's scratch mounts are empty still; the new root gets
	// its own below.
	for _, d := range []string{"/tmp", "/run"} {
		_ = unix.Unmount(d, unix.MNT_DETACH)
	}
	freeInitramfs()
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir %s: %w", root, err)
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return mountScratch(r.ReadOnly)
}

// mountOverlay puts a writable overlay on lowerDir at mergeDir, its
// upper layer on a fresh tmpfs mounted at rwDir: writes live in guest
// memory only.
func mountOverlay(lowerDir, rwDir, mergeDir string) error {
	var st unix.Stat_t
	if err := unix.Stat(lowerDir, &st); err != nil {
		return fmt.Errorf("stat the image root: %w", err)
	}
	if err := os.MkdirAll(rwDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", rwDir, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount the overlay's tmpfs: %w", err)
	}
	upper, work := rwDir+"/upper", rwDir+"/work"
	for _, d := range []string{upper, work, mergeDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// The overlay's root directory takes its owner and mode from the
	// upper directory: make them the image's.
	if err := unix.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", upper, err)
	}
	if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", upper, err)
	}
	opts := "lowerdir=" + lowerDir + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", mergeDir, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the overlay: %w", err)
	}
	return nil
}

// ensureDir makes sure dir is a directory, creating it with mode unless
// the root is read-only.
func ensureDir(dir string, mode uint32, readOnly bool) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s is a %s, not a directory", dir, kind(fi.Mode()))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	case readOnly:
		return fmt.Errorf("%s is missing and the root file system is read-only: the image must have it", dir)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return unix.Chmod(dir, mode)
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsRegular():
		return "file"
	}
	return "special file"
}

// mountScratch mounts tmpfs on the new root's /tmp and /run when they are
// empty directories, as on the initramfs. Directories an image fills are
// left as they are, and a read-only image without them goes without.
func mountScratch(readOnly bool) error {
	for _, m := range mounts {
		if !m.ifEmpty {
			continue
		}
		fi, err := os.Lstat(m.target)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !readOnly:
			if err := os.Mkdir(m.target, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", m.target, err)
			}
		case err != nil || !fi.IsDir() || !isEmptyDir(m.target):
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// findDevice returns the /dev path of the block device named name: a /dev
// path as it is, or a virtio-blk serial number.
func findDevice(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		dev, seen := lookupDevice(name)
		if dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			if len(seen) == 0 {
				seen = []string{"none"}
			}
			return "", fmt.Errorf("no block device %q after %v (block devices: %s)", name, wait, strings.Join(seen, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lookupDevice looks name up once; it also returns the devices it saw,
// for the error message.
func lookupDevice(name string) (dev string, seen []string) {
	if strings.HasPrefix(name, "/dev/") {
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return name, nil
		}
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			seen = append(seen, "/dev/"+e.Name())
		}
		return "", seen
	}
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
		if err != nil {
			seen = append(seen, e.Name())
			continue
		}
		serial := strings.TrimRight(string(b), "\x00\n ")
		seen = append(seen, fmt.Sprintf("%s (serial %q)", e.Name(), serial))
		if serial != name {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat("/dev/"+e.Name(), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", seen
}

// freeInitramfs deletes the initramfs's files, as switch_root does: once
// the new root is in place nothing can reach them, but their memory would
// stay taken. Only files of the root file system itself go, never those of
// a mount below it, and only when that root is the kernel's in-memory
// rootfs.
func freeInitramfs() {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil || (sfs.Type != unix.TMPFS_MAGIC && sfs.Type != unix.RAMFS_MAGIC) {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return
	}
	removeTree("/", st.Dev)
}

// removeTree removes what is inside dir and on device dev, best effort.
func removeTree(dir string, dev uint64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Dev != dev {
			continue // a mount point's root: not ours to delete
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			removeTree(p, dev)
			_ = unix.Rmdir(p) // fails for a directory holding a mount point
			continue
		}
		_ = unix.Unlink(p)
	}
}

// mountVolumes mounts the host's shares at their targets, parents first,
// creating missing mount points.
func mountVolumes(ms []guest.Mount, readOnlyRoot bool) error {
	for _, m := range mountOrder(ms) {
		if err := mountVolume(m, readOnlyRoot); err != nil {
			return fmt.Errorf("volume %s on %s: %w", m.Tag, m.Target, err)
		}
	}
	return nil
}

// mountOrder sorts mounts so that a mount comes after every mount on a
// parent directory of its target (targets are clean absolute paths).
func mountOrder(ms []guest.Mount) []guest.Mount {
	sorted := append([]guest.Mount(nil), ms...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return strings.Count(sorted[i].Target, "/") < strings.Count(sorted[j].Target, "/")
	})
	return sorted
}

func mountVolume(m guest.Mount, readOnlyRoot bool) error {
	fi, err := os.Stat(m.Target)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", m.Target)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			if errors.Is(err, unix.EROFS) {
				if readOnlyRoot {
					return fmt.Errorf("mount point %s is missing and the root file system is read-only: the image must have it", m.Target)
				}
				return fmt.Errorf("mount point %s is missing and its parent is read-only", m.Target)
			}
			return fmt.Errorf("create mount point: %w", err)
		}
	case err != nil:
		return err
	}
	var flags uintptr
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	data := ""
	if m.FSType == guest.Mount9P {
		data = "trans=virtio,version=9p2000.L,msize=262144"
	}
	if err := unix.Mount(m.Tag, m.Target, m.FSType, flags, data); err != nil {
		return fmt.Errorf("mount %s share %q: %w (is the share exported by the host?)", m.FSType, m.Tag, err)
	}
	return nil
}
