package vm

import (
	"github.com/arrowsys/arrow/jail"

	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// virtiofsd is one running virtiofsd serving one share.
type virtiofsd struct {
	share  Share
	stderr *tail
	proc   *os.Process
	done   chan struct{} // closed once the process is reaped
	err    error         // its exit error, read after done
}

// ErrNoVirtiofsd is returned by [Start] for a virtiofs share when virtiofsd
// is not installed.
var ErrNoVirtiofsd = errors.New("virtiofsd not found: install it with `apt-get install " + VirtiofsdPackage + "`, or share with 9p")

// vhostUserPair returns a listening vhost-user socket for virtiofsd (which
// insists on accepting its connection itself) and QEMU's end, already
// connected. The socket's name lives in a private directory only for the
// instant it takes to connect, and is gone before either process starts:
// nothing else can ever connect, and nothing is left behind.
func vhostUserPair() (listener, client *os.File, err error) {
	dir, err := os.MkdirTemp("", "arrow-vhost-")
	if err != nil {
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "s")
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	listener = os.NewFile(uintptr(lfd), "vhost-user-listener")
	cfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		listener.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	client = os.NewFile(uintptr(cfd), "vhost-user")
	addr := &unix.SockaddrUnix{Name: name}
	err = unix.Bind(lfd, addr)
	if err == nil {
		err = unix.Listen(lfd, 1)
	}
	if err == nil {
		// A Unix stream connect completes into the backlog at once.
		err = unix.Connect(cfd, addr)
	}
	if err != nil {
		listener.Close()
		client.Close()
		return nil, nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	return listener, client, nil
}

// startVirtiofsd starts virtiofsd for s on the listening socket. It runs
// with the caller's credentials (root): it sandboxes itself (namespaces,
// pivot_root into the share, seccomp) and changes its file system
// credentials to the guest's for each request, so files get the owners the
// guest gave them.
//
// A read-only share is made read-only for virtiofsd itself: it starts in a
// mount namespace of its own where the directory is a read-only bind mount.
// Writes then fail in the host kernel, whatever the guest does.
//
// In a jail (j set), virtiofsd also starts in new namespaces, in the
// arrow's cgroup, with rlimits and a seccomp filter that refuses setuid
// and setgid bits, device nodes and extended attributes (jail.ProfileVirtiofsd):
// guest root can write files into a volume, but none that carries
// privilege on the host.
func startVirtiofsd(bin string, s Share, listener *os.File, j *Jail) (*virtiofsd, error) {
	d := &virtiofsd{share: s, stderr: newTail(4<<10, nil), done: make(chan struct{})}
	started := make(chan error, 1)
	go onPrivateThread(func() { d.run(bin, listener, j, started) })
	if err := <-started; err != nil {
		return nil, fmt.Errorf("share %s: %w", s.Tag, err)
	}
	return d, nil
}

// onPrivateThread runs f locked to an OS thread that is retired when f
// returns, so that f may change the thread's mount namespace. It must be
// the whole body of a goroutine (go onPrivateThread(f)). The runtime
// cannot retire the main thread (it would keep it, namespace and all, as
// the process's leader), so f never runs there.
func onPrivateThread(f func()) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// Hold the main thread so that the new goroutine gets another.
		done := make(chan struct{})
		go func() {
			defer close(done)
			onPrivateThread(f)
		}()
		<-done
		runtime.UnlockOSThread()
		return
	}
	f()
	// No UnlockOSThread: the thread ends with this goroutine.
}

// run starts and waits for the process, on a private thread (see
// onPrivateThread): it may hold a private mount namespace, and it must
// live as long as virtiofsd, whose parent-death signal fires when the
// thread that started it exits.
func (d *virtiofsd) run(bin string, listener *os.File, j *Jail, started chan<- error) {
	defer close(d.done)
	if d.share.ReadOnly {
		if err := readOnlyView(d.share.Path); err != nil {
			d.err = err
			started <- err
			return
		}
	}
	args := []string{
		"--fd=3",
		"-o", "source=" + fuseOptEscape(d.share.Path),
		"-o", "sandbox=namespace",
		"-o", "cache=auto",
		// No device nodes on the host: a guest's root may create any
		// file in a writable share, but not a door to a host device.
		"-o", "modcaps=-mknod",
		"-o", "log_level=warn",
	}
	var cmd *exec.Cmd
	var hs *jail.Handshake
	if j != nil {
		var err error
		spec := jail.Spec{Profile: jail.ProfileVirtiofsd, Helper: j.Helper, NewNet: true, Cgroup: j.Cgroup, LogDenied: j.LogDenied}
		if cmd, hs, err = jail.Command(spec, bin, args, []*os.File{listener}); err != nil {
			d.err = err
			started <- err
			return
		}
	} else {
		cmd = exec.Command(bin, args...)
		cmd.ExtraFiles = []*os.File{listener}
		// Its own process group, so that killing it reaches the child
		// it forks into its sandbox too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	cmd.Stdout, cmd.Stderr = d.stderr, d.stderr
	if err := cmd.Start(); err != nil {
		if hs != nil {
			hs.Close()
		}
		d.err = err
		started <- fmt.Errorf("start %s: %w", bin, err)
		return
	}
	if hs != nil {
		// The helper is the process group's leader and its pid
		// namespace's init: killing it ends virtiofsd.
		if _, err := hs.Complete(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			d.err = err
			started <- err
			return
		}
	}
	d.proc = cmd.Process
	started <- nil
	d.err = cmd.Wait()
}

// fuseOptEscape escapes s for virtiofsd's -o option list, which splits
// at commas and takes a backslash to mean "the next byte as it is".
func fuseOptEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`).Replace(s)
}

// readOnlyView gives the calling thread a private mount namespace in which
// dir is a read-only bind mount of itself, recursively when the kernel can
// (mount_setattr, Linux 5.12), else without the mounts below dir.
func readOnlyView(dir string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("read-only share: private mount namespace: %w", err)
	}
	// Nothing done here may propagate back to the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("read-only share: make mounts private: %w", err)
	}
	err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, "")
	if err == nil {
		err = unix.MountSetattr(-1, dir, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("read-only share: make %s read-only: %w", dir, err)
		}
		// Old kernel: start over with the directory alone.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("read-only share: %w", err)
		}
		err = unix.Mount(dir, dir, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("read-only share: bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("read-only share: make %s read-only: %w", dir, err)
	}
	return nil
}

// kill ends virtiofsd and its sandboxed child.
func (d *virtiofsd) kill() {
	if d.proc == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = syscall.Kill(-d.proc.Pid, syscall.SIGKILL)
}

// failure explains an exit of virtiofsd while the VM needed it.
func (d *virtiofsd) failure() error {
	msg := fmt.Sprintf("virtiofsd for share %s (%s) exited", d.share.Tag, d.share.Path)
	if d.err != nil {
		msg += ": " + d.err.Error()
	}
	if out := d.stderr.String(); out != "" {
		msg += ": " + out
	}
	return errors.New(msg)
}
