package jail

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main is arrow-jailer: it runs as root, as the init of the pid namespace
// [Command] made, sets the jail up, starts the jailed process as its child
// and waits for it, exiting with its status. Every failure before the
// process starts is reported on the status pipe and ends the helper with
// status 125, so nothing runs unjailed.
func Main(args []string) int {
	// The capability bounding set is a thread's, and the jailed process
	// inherits the one of the thread that forks it: everything from here
	// to the fork stays on this thread.
	runtime.LockOSThread()
	fs := flag.NewFlagSet(HelperName, flag.ContinueOnError)
	profile := fs.String("profile", "", "qemu or virtiofsd")
	nfds := fs.Int("nfds", 0, "descriptors the process inherits, from 3")
	root := fs.String("root", "", "directory the jail's root is mounted on")
	lease := fs.Bool("lease", false, "a lease lock follows the status pipe")
	kvm := fs.Bool("kvm", false, "bind /dev/kvm")
	logDenied := fs.Bool("log-denied", false, "log the calls the seccomp filter refuses (dmesg)")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || *nfds < 0 || *nfds > 1000 {
		fmt.Fprintln(os.Stderr, "usage: arrow-jailer --profile P --nfds N [--root DIR] [--lease] [--kvm] -- BIN ARGS...")
		return 125
	}
	goFD, stFD := 3+*nfds, 4+*nfds
	goPipe := os.NewFile(uintptr(goFD), "go")
	status := os.NewFile(uintptr(stFD), "status")
	// None of the helper's own descriptors may reach the jailed process;
	// the lease lock stays open here for as long as the helper lives.
	unix.CloseOnExec(goFD)
	unix.CloseOnExec(stFD)
	if *lease {
		unix.CloseOnExec(5 + *nfds)
	}
	fail := func(err error) int {
		fmt.Fprintf(status, "%v\n", err)
		fmt.Fprintf(os.Stderr, "arrow-jailer: %v\n", err)
		return 125
	}
	// The caller moves this process into its cgroup, then says go.
	if n, _ := goPipe.Read(make([]byte, 1)); n != 1 {
		return 125
	}
	goPipe.Close()
	if os.Getpid() != 1 {
		return fail(errors.New("not the init of a new pid namespace"))
	}
	p := Profile(*profile)
	if err := setup(p, *root, *kvm, *logDenied); err != nil {
		return fail(err)
	}
	bin := fs.Arg(0)
	files := make([]uintptr, 3+*nfds)
	for i := range files {
		files[i] = uintptr(i)
	}
	// Signals the helper is sent go to the process; SIGKILL cannot be
	// caught, and as the namespace's init the helper takes the process
	// down with it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	pid, err := syscall.ForkExec(bin, fs.Args(), &syscall.ProcAttr{Env: os.Environ(), Files: files})
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", bin, err))
	}
	fmt.Fprintln(status, "ok")
	status.Close()
	for i := 3; i < 3+*nfds; i++ {
		unix.Close(i)
	}
	go func() {
		for s := range sigs {
			_ = unix.Tgkill(pid, pid, s.(syscall.Signal))
		}
	}()
	return reap(pid)
}

// reap waits for every child, as an init must, and returns the status of
// pid's end: its exit code, or 128+N when a signal N ended it.
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 125
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// setup builds the jail for p, in the helper's own namespaces, and
// installs the seccomp filter the helper and the process then share.
func setup(p Profile, root string, kvm, logDenied bool) error {
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte("arrow")); err != nil {
		return fmt.Errorf("host name: %w", err)
	}
	switch p {
	case ProfileQEMU:
		if err := pivot(root, kvm); err != nil {
			return err
		}
	case ProfileVirtiofsd:
		// virtiofsd pivots into its shared directory by itself.
	default:
		return fmt.Errorf("unknown profile %q", p)
	}
	if err := setRlimits(p); err != nil {
		return err
	}
	if err := dropBounding(p); err != nil {
		return err
	}
	return loadFilter(p, logDenied)
}

// pivot makes a tmpfs on root the jail's root file system and pivots into
// it: read-only /usr (QEMU, its libraries, modules and firmware), the
// links or directories /lib, /lib64, /bin and /sbin into it, ld.so's cache,
// /dev/null, /dev/urandom, /dev/kvm when asked, the pid namespace's /proc
// (QEMU reopens its inherited files through /proc/self/fd), and /empty,
// where QEMU chroots in the end. The host's tree is then detached from the
// namespace: nothing of it is left to escape to.
func pivot(root string, kvm bool) error {
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k,nr_inodes=64"); err != nil {
		return fmt.Errorf("jail root %s: %w", root, err)
	}
	in := func(p string) string { return filepath.Join(root, p) }
	if err := bindDir("/usr", in("usr")); err != nil {
		return err
	}
	for _, d := range []string{"/lib", "/lib64", "/bin", "/sbin"} {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				return fmt.Errorf("jail: %w", err)
			}
			if err := os.Symlink(target, in(d)); err != nil {
				return fmt.Errorf("jail: %w", err)
			}
		case fi.IsDir():
			if err := bindDir(d, in(d)); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(in("etc"), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if err := bindFile("/etc/ld.so.cache", in("etc/ld.so.cache")); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(in("dev"), 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	devs := []string{"/dev/null", "/dev/urandom"}
	if kvm {
		devs = append(devs, "/dev/kvm")
	}
	for _, d := range devs {
		if err := bindFile(d, in(d)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(in("proc"), 0o555); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("proc", in("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("jail: mount /proc: %w", err)
	}
	if err := os.Mkdir(in(emptyDir), 0o555); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	// pivot_root(".", ".") stacks the old root under the new one, and
	// the lazy unmount then takes the whole host tree out of the
	// namespace.
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("jail: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("jail: detach the host's tree: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("jail: read-only root: %w", err)
	}
	return nil
}

// bindDir binds the host directory src read-only (no setuid, no devices)
// at dst.
func bindDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	return bindRO(src, dst)
}

// bindFile binds the host file (or device) src read-only at dst.
func bindFile(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	f.Close()
	return bindRO(src, dst)
}

func bindRO(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("jail: bind %s: %w", src, err)
	}
	// The mounts below src too (mount_setattr, Linux 5.12); the remount
	// below then covers the top one on older kernels.
	attr := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID)
	if !strings.HasPrefix(src, "/dev/") {
		attr |= unix.MOUNT_ATTR_NODEV
	}
	if err := unix.MountSetattr(-1, dst, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr}); err != nil && err != unix.ENOSYS {
		return fmt.Errorf("jail: read-only %s: %w", src, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID)
	if !strings.HasPrefix(src, "/dev/") {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("jail: read-only %s: %w", src, err)
	}
	return nil
}

// rlimits of a jailed process. QEMU's threads are its vCPUs, an I/O
// thread and a worker pool of at most 64: NPROC, counted per uid and so per
// VM, leaves room for 255 vCPUs and bounds a fork bomb. virtiofsd stays
// root, which NPROC does not bind; its cgroup's pids limit does.
var rlimitsQEMU = []struct {
	res int
	val uint64
}{
	{unix.RLIMIT_NOFILE, 4096},
	{unix.RLIMIT_NPROC, 512},
	{unix.RLIMIT_CORE, 0},
	{unix.RLIMIT_MSGQUEUE, 0},
}

func setRlimits(p Profile) error {
	lims := rlimitsQEMU
	if p == ProfileVirtiofsd {
		lims = rlimitsQEMU[2:] // virtiofsd sizes its own NOFILE
	}
	for _, l := range lims {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.val, Max: l.val}); err != nil {
			return fmt.Errorf("jail: rlimit %d: %w", l.res, err)
		}
	}
	return nil
}

// keptCaps are the capabilities a jailed QEMU may still hold; every other
// one leaves the bounding set before exec, so not even root in the jail
// can regain it. QEMU needs these only until -runas, which clears them
// all: opening its files as root (DAC), binding published ports below 1024
// and the chroot and uid change themselves.
//
// virtiofsd keeps its bounding set: it applies its own capability set
// (libcap-ng, bounding set included) before it serves anything, and fails
// when the set it asks for is not there.
var keptCaps = []uintptr{unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SYS_CHROOT}

func dropBounding(p Profile) error {
	if p != ProfileQEMU {
		return nil
	}
	keep := map[uintptr]bool{}
	for _, c := range keptCaps {
		keep[c] = true
	}
	for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("jail: drop capability %d: %w", c, err)
		}
	}
	return nil
}
