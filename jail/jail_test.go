package jail

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// buildHelper builds arrow-jailer for the tests that start real jails.
func buildHelper(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a jail needs root")
	}
	bin := filepath.Join(t.TempDir(), HelperName)
	cmd := exec.Command("go", "build", "-o", bin, "github.com/arrowsys/arrow/cmd/arrow-jailer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build arrow-jailer: %v\n%s", err, out)
	}
	return bin
}

// probe is a Python program that plays an escaped QEMU: it tries what the
// jail must refuse and reports what it got, as JSON.
const probe = `
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return 0 if r == 0 else ctypes.get_errno()
r = {}
r["ptrace"] = call("ptrace", 0, 0, 0, 0)            # PTRACE_TRACEME
r["kill"] = call("kill", 1, 0)
r["unshare_user"] = call("unshare", 0x10000000)    # CLONE_NEWUSER
r["mount"] = call("mount", b"none", b"/empty", b"tmpfs", 0, None)
r["getppid"] = os.getppid()
r["root"] = sorted(os.listdir("/"))
r["shadow"] = os.path.exists("/etc/shadow")
r["hostname"] = os.uname().nodename
status = open("/proc/self/status").read()
r["seccomp"] = [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp:")][0]
r["capbnd"] = [l.split()[1] for l in status.splitlines() if l.startswith("CapBnd:")][0]
try:
    open("/usr/jail-write-test", "w")
    r["write_usr"] = 0
except OSError as e:
    r["write_usr"] = e.errno
import resource
r["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
r["core"] = resource.getrlimit(resource.RLIMIT_CORE)[1]
r["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[1]
r["chroot"] = call("chroot", b"/usr")   # last: it changes what paths mean
print(json.dumps(r))
`

// TestJailFromInside starts python3 in QEMU's jail profile (as root, the
// way QEMU is before its -runas) and checks what it can and cannot do.
func TestJailFromInside(t *testing.T) {
	helper := buildHelper(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the filters are x86-64's")
	}
	dir := t.TempDir()
	lease, err := Acquire(filepath.Join(dir, "uids"), Range{First: 1900070100, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd, hs, err := Command(Spec{Profile: ProfileQEMU, Helper: helper, Root: root, NewNet: true, Lease: lease},
		"/usr/bin/python3", []string{"-c", probe}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		hs.Close()
		t.Fatal(err)
	}
	pid, err := hs.Complete(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("handshake: %v\n%s", err, errb.String())
	}
	if pid <= 0 || pid == cmd.Process.Pid {
		t.Errorf("jailed pid %d (helper %d)", pid, cmd.Process.Pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python3 in the jail: %v\n%s", err, errb.String())
	}
	var r struct {
		Ptrace, Kill, Mount, Chroot, Getppid int
		Nofile, Core, Nproc                  int
		UnshareUser                          int `json:"unshare_user"`
		WriteUsr                             int `json:"write_usr"`
		Root                                 []string
		Shadow                               bool
		Hostname, Seccomp, Capbnd            string
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &r); err != nil {
		t.Fatalf("probe output %q: %v (stderr %s)", out.String(), err, errb.String())
	}
	const eperm, erofs = 1, 30
	for name, got := range map[string]int{"ptrace": r.Ptrace, "kill": r.Kill, "unshare(CLONE_NEWUSER)": r.UnshareUser, "mount": r.Mount} {
		if got != eperm {
			t.Errorf("%s: errno %d, want EPERM from the seccomp filter", name, got)
		}
	}
	if r.Chroot != 0 {
		// chroot is QEMU's own -chroot: allowed, and useless without
		// capabilities once QEMU dropped to its uid.
		t.Logf("chroot: errno %d", r.Chroot)
	}
	if r.WriteUsr != erofs {
		t.Errorf("writing into /usr: errno %d, want EROFS", r.WriteUsr)
	}
	if r.Getppid != 1 {
		t.Errorf("parent pid %d in the jail, want 1 (the helper is the namespace's init)", r.Getppid)
	}
	if r.Shadow {
		t.Error("/etc/shadow is reachable from the jail")
	}
	want := []string{"bin", "dev", "empty", "etc", "lib", "lib64", "proc", "sbin", "usr"}
	for _, name := range r.Root {
		if !contains(want, name) {
			t.Errorf("the jail's root holds %q; want only %v", name, want)
		}
	}
	if r.Nofile != 4096 || r.Core != 0 || r.Nproc != 512 {
		t.Errorf("rlimits nofile %d, core %d, nproc %d; want 4096, 0 and 512", r.Nofile, r.Core, r.Nproc)
	}
	if r.Hostname != "arrow" {
		t.Errorf("host name %q: the uts namespace is not the jail's", r.Hostname)
	}
	if r.Seccomp != "2" {
		t.Errorf("Seccomp: %s, want 2 (filter)", r.Seccomp)
	}
	if r.Capbnd != "00000000000404c6" {
		// DAC_OVERRIDE, DAC_READ_SEARCH, SETGID, SETUID, NET_BIND_SERVICE, SYS_CHROOT
		t.Errorf("CapBnd %s, want 00000000000404c6", r.Capbnd)
	}
}

// TestJailHelperFailsClosed: a jail that cannot be built (its root is not
// a directory) is an error naming why, and the process never runs.
func TestJailHelperFailsClosed(t *testing.T) {
	helper := buildHelper(t)
	dir := t.TempDir()
	lease, err := Acquire(filepath.Join(dir, "uids"), Range{First: 1900070200, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	marker := filepath.Join(dir, "ran")
	cmd, hs, err := Command(Spec{Profile: ProfileQEMU, Helper: helper, Root: filepath.Join(dir, "missing"), NewNet: true, Lease: lease},
		"/usr/bin/touch", []string{marker}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		hs.Close()
		t.Fatal(err)
	}
	_, err = hs.Complete(cmd.Process.Pid)
	werr := cmd.Wait()
	if err == nil || !strings.Contains(err.Error(), "jail root") {
		t.Errorf("handshake error %v, want one naming the jail root", err)
	}
	if werr == nil {
		t.Error("the helper exited 0 for a jail it could not build")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the process ran although its jail failed")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
