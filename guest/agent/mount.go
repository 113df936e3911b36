//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mount is one file system arrow-init mounts before the application starts.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   uint32 // raw mode bits: os.FileMode has no 0o1000 sticky bit
	// optional mounts may fail (a --kernel without cgroup v2, say) without
	// failing the run.
	optional bool
	// ifEmpty mounts only over an empty directory: files the root file
	// system brings there (a program or an --include under /tmp) must
	// stay visible. The initramfs root is writable memory already.
	ifEmpty bool
}

// mounts is the guest's file system layout. The root itself is the
// initramfs (or, later, an image's root), already mounted by the kernel.
var mounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555, false, false},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555, false, false},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755, false, false},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755, true, false},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777, true, false},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777, false, true},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755, false, true},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555, true, false},
}

// devLinks are the /dev symlinks programs expect (bash process
// substitution uses /dev/fd, many tools /dev/stdin).
var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"pts/ptmx", "/dev/ptmx"},
}

// mountAll mounts the guest's file systems. Mounts that exist already (a
// kernel that mounts devtmpfs itself) are left as they are.
func mountAll() error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil && !m.optional {
			return fmt.Errorf("mount %s: %w", m.target, err)
		}
		if m.ifEmpty && !isEmptyDir(m.target) {
			// Keep what is there; give it the mode the mount would have.
			if err := unix.Chmod(m.target, m.mode); err != nil {
				return fmt.Errorf("chmod %s: %w", m.target, err)
			}
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) && !m.optional {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	for _, l := range devLinks {
		if l[1] == "/dev/ptmx" {
			// devtmpfs has a ptmx node of its own that does not serve
			// the new devpts instance; replace it with the link.
			if _, err := os.Stat("/dev/pts/ptmx"); err != nil {
				continue
			}
			_ = os.Remove(l[1])
		}
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", l[1], err)
		}
	}
	return nil
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}
