package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/closure"
	"github.com/arrowsys/arrow/image/initramfs"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/jail"
	"github.com/arrowsys/arrow/vm"
)

// The tests in this file and volume_test.go drive vm.Start and the guest
// protocol directly, below `arrow run`: the guest boots an initramfs that
// holds arrow-init alone and switches to a disk image's root.

// osRelease is what the test image's /etc/os-release says.
const osRelease = "NAME=\"Arrow test image\"\nID=arrow-test\n"

// rootSerial is the serial number the tests give the root drive.
const rootSerial = "root"

// guestEnv is what the vm-level tests boot with.
type guestEnv struct {
	kernel, initrd string
	accel          vm.Accel
	jail           *vm.Jail
	virtiofsd      string // vm.Config.Virtiofsd
}

// newGuestEnv finds Arrow's kernel and builds an initramfs holding only the
// arrow-init that TestMain built.
func newGuestEnv(t *testing.T) guestEnv {
	t.Helper()
	out, err := exec.Command(arrowBin, "kernel", "path").Output()
	if err != nil {
		t.Fatalf("arrow kernel path: %v", err)
	}
	b := &initramfs.Builder{Dir: t.TempDir()}
	initrd, err := b.Build(context.Background(), closure.NewSet(),
		initramfs.Entry{Path: "/init", Source: filepath.Join(filepath.Dir(arrowBin), "arrow-init"), Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	accel, err := vm.DetectAccel("auto", vm.LocalHost())
	if err != nil {
		t.Fatal(err)
	}
	env := guestEnv{kernel: strings.TrimSpace(string(out)), initrd: initrd, accel: accel}
	// As `arrow run` does: QEMU runs in its jail when the tests run as
	// root (the helper TestMain built, found through $ARROW_JAILER).
	if os.Geteuid() == 0 {
		helper, err := jail.FindHelper("")
		if err != nil {
			t.Fatal(err)
		}
		env.jail = &vm.Jail{Helper: helper, Dir: vm.DefaultJailDir, UIDs: jail.DefaultRange()}
	}
	return env
}

// guestRun is how one VM went.
type guestRun struct {
	stdout, stderr string
	status         guest.ExitStatus
	gotStatus      bool
	console        string
	waitErr        error
}

// boot runs spec in a VM with drives and shares and returns what happened.
// onStdout, when set, sees the output so far each time some arrives, with
// the machine (to kill it, say). It checks that no QEMU or virtiofsd
// process and no vhost-user socket outlives the VM.
func (e guestEnv) boot(t *testing.T, drives []vm.Drive, shares []vm.Share, spec guest.Spec, onStdout func(m *vm.Machine, out string)) guestRun {
	t.Helper()
	beforeQEMU := qemuProcesses(t)
	beforeVFS := processesNamed(t, "virtiofsd")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := vm.Config{
		Kernel: e.kernel, Initrd: e.initrd, MemoryMiB: 256, CPUs: 1, Accel: e.accel,
		Jail: e.jail, Drives: drives, Shares: shares, Virtiofsd: e.virtiofsd,
	}
	var console bytes.Buffer
	m, err := vm.Start(ctx, cfg, &console)
	if err != nil {
		t.Fatalf("vm.Start: %v", err)
	}
	defer func() {
		_ = m.Kill()
		<-m.Done()
	}()
	spec.Version = guest.ProtocolVersion
	spec.TimeUnixNano = time.Now().UnixNano()
	if spec.Env == nil {
		spec.Env = []string{"PATH=/bin"}
	}
	c := guest.NewClient(m.Control())
	if err := c.Start(&spec); err != nil {
		t.Fatalf("send spec: %v", err)
	}
	var r guestRun
	var stdout, stderr strings.Builder
	for ev := range c.Events() {
		switch ev.Kind {
		case guest.EventStdout:
			stdout.Write(ev.Data)
			if onStdout != nil {
				onStdout(m, stdout.String())
			}
		case guest.EventStderr:
			stderr.Write(ev.Data)
		case guest.EventExit:
			if ev.Err != nil {
				t.Fatalf("exit status: %v", ev.Err)
			}
			r.status, r.gotStatus = ev.Status, true
		case guest.EventEnd:
			if ev.Err != nil {
				t.Logf("control channel: %v", ev.Err)
			}
		}
	}
	r.waitErr = m.Wait()
	r.stdout, r.stderr, r.console = stdout.String(), stderr.String(), console.String()
	assertNoNewQEMU(t, beforeQEMU)
	if extra := newProcesses(t, "virtiofsd", beforeVFS); len(extra) > 0 {
		t.Errorf("virtiofsd processes left behind: %v", extra)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "arrow-vhost-*")); len(left) > 0 {
		t.Errorf("vhost-user socket directories left behind: %v", left)
	}
	return r
}

// processesNamed lists the PIDs of processes whose command name is name.
func processesNamed(t *testing.T, name string) map[string]bool {
	t.Helper()
	return processesWhere(t, func(_, comm string) bool { return comm == name })
}

// processesWhere lists the PIDs of the processes match accepts, given
// their PID and command name.
func processesWhere(t *testing.T, match func(pid, comm string) bool) map[string]bool {
	t.Helper()
	pids := map[string]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && match(e.Name(), strings.TrimSpace(string(comm))) {
			pids[e.Name()] = true
		}
	}
	return pids
}

// newProcesses returns the processes named name that were not in before,
// giving them a moment to be reaped.
func newProcesses(t *testing.T, name string, before map[string]bool) []string {
	t.Helper()
	var extra []string
	for i := 0; i < 50; i++ {
		extra = extra[:0]
		for pid := range processesNamed(t, name) {
			if !before[pid] {
				extra = append(extra, pid)
			}
		}
		if len(extra) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return extra
}

// testImage builds an erofs image of a tiny root: busybox with its applets
// as links, /etc/os-release, and the directories the guest mounts on.
func testImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "run", "tmp", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil { // os.Chmod drops a raw sticky bit
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "id", "mount", "sync", "sleep", "stat", "touch"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "os-release"), []byte(osRelease), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := rootfs.Build(context.Background(), dir, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestRootFS boots an erofs root, with and without the writable overlay.
func TestRootFS(t *testing.T) {
	env := newGuestEnv(t)
	img := testImage(t)
	before := fileSum(t, img)
	root := &guest.Root{Device: rootSerial, FSType: rootfs.FSType}
	readOnly := &guest.Root{Device: rootSerial, FSType: rootfs.FSType, ReadOnly: true}
	tests := []struct {
		name       string
		root       *guest.Root
		spec       guest.Spec
		wantOut    string
		wantErr    string // substring of stderr
		wantCode   int
		wantReason guest.ExitReason // when not Exited
		wantMsg    string           // substring of the init failure message
	}{
		{name: "runs from the disk, found in its PATH", root: root,
			spec: guest.Spec{Args: []string{"cat", "/etc/os-release"}}, wantOut: osRelease},
		{name: "writes land in the overlay", root: root,
			spec:    guest.Spec{Args: []string{"sh", "-c", "echo changed > /etc/os-release && echo new > /new && cat /etc/os-release /new"}},
			wantOut: "changed\nnew\n"},
		{name: "working directory and user inside the root", root: root,
			spec:    guest.Spec{Args: []string{"sh", "-c", "pwd; id -u; id -g; echo x > /tmp/f; stat -c %u:%g /tmp/f"}, Dir: "/home/app", UID: 1000, GID: 1000},
			wantOut: "/home/app\n1000\n1000\n1000:1000\n"},
		{name: "read-only root refuses writes", root: readOnly,
			spec:    guest.Spec{Args: []string{"sh", "-c", "cat /etc/os-release; echo x > /new"}},
			wantOut: osRelease, wantErr: "Read-only file system", wantCode: 1},
		{name: "read-only root keeps tmpfs on /tmp", root: readOnly,
			spec:    guest.Spec{Args: []string{"sh", "-c", "echo scratch > /tmp/x && cat /tmp/x"}},
			wantOut: "scratch\n"},
		{name: "no such device", root: &guest.Root{Device: "nosuch", FSType: rootfs.FSType},
			spec:       guest.Spec{Args: []string{"/bin/sh"}},
			wantReason: guest.InitFailed, wantMsg: `no block device "nosuch"`},
		{name: "wrong file system type", root: &guest.Root{Device: rootSerial, FSType: "ext4"},
			spec:       guest.Spec{Args: []string{"/bin/sh"}},
			wantReason: guest.InitFailed, wantMsg: "mount /dev/vda (ext4) read-only"},
		{name: "program not in the image", root: root,
			spec:       guest.Spec{Args: []string{"/usr/bin/python3"}},
			wantReason: guest.NotFound, wantMsg: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Root = tt.root
			r := env.boot(t, []vm.Drive{{Path: img, Serial: rootSerial, ReadOnly: true}}, nil, spec, nil)
			if !r.gotStatus {
				t.Fatalf("no exit status; wait: %v\nconsole:\n%s", r.waitErr, r.console)
			}
			if tt.wantReason != "" {
				if r.status.Reason != tt.wantReason || !strings.Contains(r.status.Message, tt.wantMsg) {
					t.Fatalf("status %+v, want %s with %q", r.status, tt.wantReason, tt.wantMsg)
				}
				return
			}
			if r.status.Reason != guest.Exited || r.status.Code != tt.wantCode {
				t.Fatalf("status %+v, want exit %d; stderr %q", r.status, tt.wantCode, r.stderr)
			}
			if r.stdout != tt.wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, tt.wantOut)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q, want %q in it", r.stderr, tt.wantErr)
			}
			if r.waitErr != nil {
				t.Errorf("QEMU: %v", r.waitErr)
			}
		})
	}
	if fileSum(t, img) != before {
		t.Error("the guest changed the image")
	}
}
