package containerdshim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/api/types"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/image/rootfs"
)

// maxMountData is what mount(2) takes as its data (one page): an overlay
// of more layers than fit is refused rather than mounted through tricks.
const maxMountData = 4095

// mountFlags are the mount options that are flags, not data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"noatime": {false, unix.MS_NOATIME}, "relatime": {false, unix.MS_RELATIME},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"defaults": {false, 0},
}

// mountRootfs mounts the snapshot containerd hands the task (an overlay
// of the image's committed layers with a writable upper directory, or a
// bind of a directory) at target, as runc's shim does before it runs the
// container. Only overlay and bind mounts of one snapshot are taken: the
// two the snapshotters containerd ships produce.
func mountRootfs(ms []*types.Mount, target string) error {
	if len(ms) != 1 {
		return fmt.Errorf("rootfs: %d mounts: want one (an overlay or a bind mount of the snapshot)", len(ms))
	}
	m := ms[0]
	var flags uintptr
	var data []string
	for _, o := range m.Options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if strings.ContainsRune(o, 0) {
			return errors.New("rootfs: a NUL byte in a mount option")
		}
		data = append(data, o)
	}
	switch {
	case m.Type == "overlay":
	case m.Type == "bind" || flags&unix.MS_BIND != 0:
		flags |= unix.MS_BIND
	default:
		return fmt.Errorf("rootfs: mount type %.20q: want overlay or bind", m.Type)
	}
	d := strings.Join(data, ",")
	if len(d) > maxMountData {
		return fmt.Errorf("rootfs: mount options of %d bytes: more than mount(2) takes (%d)", len(d), maxMountData)
	}
	if err := os.MkdirAll(target, 0o711); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.Mount(m.Source, target, m.Type, flags&^unix.MS_RDONLY, d); err != nil {
		return fmt.Errorf("rootfs: mount %s (%s) on %s: %w", m.Source, m.Type, target, err)
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		// A bind mount takes read-only only on a remount.
		if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT, ""); err != nil {
			_ = unmountAll(target)
			return fmt.Errorf("rootfs: remount %s read-only: %w", target, err)
		}
	}
	return nil
}

// unmountAll unmounts whatever is mounted at target, however often, and
// removes the directory when it is empty. Nothing mounted is no error.
func unmountAll(target string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	_ = os.Remove(target) // only when empty: never through a mount
	return nil
}

// rootfsDir is where a task's snapshot is mounted: bundle/rootfs, as
// config.json's root.path names it for runc.
func rootfsDir(bundle string) string { return filepath.Join(bundle, "rootfs") }

// snapshotKey is the key of the root disk built from an overlay of
// containerd's snapshots (see run.Options.RootFSKey), or "" when the tree
// has to be walked for one. An overlay's lower directories are committed
// snapshots, which containerd never changes: they are named by their
// paths, and by the device, inode and change time of each directory
// itself, so that a snapshotter's tree made anew (its IDs start again)
// gives new keys. Its upper directory is the container's own writable
// layer: empty, it adds nothing (every container of an image then shares
// one disk); holding anything (image volumes containerd copied in), the
// key covers its tree, as no other container has that content.
//
// Without it every container would get a disk of its own: a mount's
// metadata differs each time, so the tree's key does too, and each
// create would build (about 0.7 s for a 100 MiB Debian tree) and keep
// (for a month) a disk of the whole image.
func snapshotKey(ctx context.Context, ms []*types.Mount) (string, error) {
	if len(ms) != 1 || ms[0].Type != "overlay" {
		return "", nil
	}
	var lower []string
	upper := ""
	for _, o := range ms[0].Options {
		switch k, v, _ := strings.Cut(o, "="); k {
		case "lowerdir":
			lower = strings.Split(v, ":")
		case "upperdir":
			upper = v
		}
	}
	if len(lower) == 0 {
		return "", nil
	}
	h := sha256.New()
	for _, d := range lower {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return "", fmt.Errorf("snapshot %s: %w", d, err)
		}
		fmt.Fprintf(h, "lower %q %d %d %d.%d\n", d, st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	if upper != "" {
		ents, err := os.ReadDir(upper)
		if err != nil {
			return "", fmt.Errorf("snapshot %s: %w", upper, err)
		}
		if len(ents) > 0 {
			k, err := rootfs.TreeKey(ctx, upper)
			if err != nil {
				return "", fmt.Errorf("snapshot %s: %w", upper, err)
			}
			fmt.Fprintf(h, "upper %s\n", k)
		}
	}
	return "snapshot-" + hex.EncodeToString(h.Sum(nil)), nil
}
