package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/arrowsys/arrow/e2e/fixture"
	"github.com/arrowsys/arrow/internal/mountinfo"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

// The containerd runtime v2 shim (containerd-shim-arrow-v1) driven by an
// unmodified containerd and ctr: a private containerd per test (its own
// root, state and sockets, the CRI plugin off), whose PATH starts with the
// suite's binaries so that it finds the shim, and whose VMs use a data
// root of the test's own (sharing the host's kernels), so that it passes
// beside a host's containerd and arrowd.

const (
	ctrNamespace  = "arrowtest"
	arrowRuntime  = "io.containerd.arrow.v1"
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
)

// testContainerd is one private containerd: its root, state, sockets,
// config and log in a temporary directory, the suite's binaries first
// in its PATH (where it finds the shim), and a data root of its own for
// the VMs, which marks every process the test's containerd starts.
type testContainerd struct {
	t         *testing.T
	dir       string
	address   string
	namespace string // ctr's -n
	arrowRoot string
	env       []string
	netns     string // the network namespace it runs in, or "" for the host's
	cmd       *exec.Cmd
	log       *os.File
	image     string
	// cgroupParents are cgroups (relative to each hierarchy's root)
	// that the test's tasks were put under, removed at the end when
	// empty, as kubelet removes a pod's.
	cgroupParents []string
	// beforeStop, if set, runs first when the test ends (the CRI tests
	// remove their pods through CRI, as kubelet would).
	beforeStop func()
}

// containerdSetup is what differs between the tests' containerds.
type containerdSetup struct {
	// cri is the CRI plugin's section of config.toml; without it the
	// plugin is disabled.
	cri string
	// netns is a network namespace (by name, in /var/run/netns) to
	// run containerd in.
	netns string
	// namespace is the containerd namespace ctr works in.
	namespace string
}

// startContainerd starts a private containerd without CRI and imports
// the busybox image into its namespace.
func startContainerd(t *testing.T) *testContainerd {
	t.Helper()
	d := newContainerd(t, containerdSetup{namespace: ctrNamespace})
	// ctr runs a task in the cgroup /NAMESPACE/ID.
	d.cgroupParents = []string{"/" + ctrNamespace}
	archive := filepath.Join(d.dir, "busybox.tar")
	if err := fixture.BusyboxArchive(archive, busyboxTag); err != nil {
		t.Fatal(err)
	}
	d.mustCtr("images", "import", archive)
	names := strings.Fields(d.mustCtr("images", "ls", "-q"))
	if len(names) != 1 {
		t.Fatalf("ctr images ls: %q, want the one imported image", names)
	}
	d.image = names[0]
	return d
}

// newContainerd starts a private containerd as setup says; it is
// stopped, and what it left checked, when the test ends.
func newContainerd(t *testing.T, setup containerdSetup) *testContainerd {
	t.Helper()
	for _, bin := range []string{containerdBin, ctrBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is needed for the containerd tests: run setup.sh (%v)", bin, err)
		}
	}
	// Short paths: containerd's and the shims' sockets live under them.
	dir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "arrow")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, shared := range []string{"kernels", "initramfs"} {
		if err := os.Symlink(filepath.Join("/var/lib/arrow", shared), filepath.Join(root, shared)); err != nil {
			t.Fatal(err)
		}
	}
	d := &testContainerd{t: t, dir: dir, address: filepath.Join(dir, "c.sock"),
		namespace: setup.namespace, arrowRoot: root, netns: setup.netns}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if setup.cri != "" {
		disabled = ""
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
%s
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = %q
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, d.address, d.address+".ttrpc",
		filepath.Join(dir, "opt"), setup.cri)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "ARROW_ROOT="+root)
	if d.log, err = os.Create(filepath.Join(dir, "containerd.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	d.start()
	return d
}

func (d *testContainerd) start() {
	d.t.Helper()
	args := []string{containerdBin, "--config", filepath.Join(d.dir, "config.toml")}
	if d.netns != "" {
		// nsenter --net, not ip netns exec: that one also unshares the
		// mount namespace and mounts a fresh /sys without
		// /sys/fs/cgroup, which the VMs' jails (and runc) need.
		args = append([]string{"nsenter", "--net=/var/run/netns/" + d.netns}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// Its own session: the shims it starts outlive it, as they would a
	// containerd restarted by systemd.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	for i := 0; ; i++ {
		if r := d.ctr("version"); r.code == 0 {
			return
		}
		if i == 100 {
			d.t.Fatalf("containerd did not answer; its log:\n%s", d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 kills containerd with SIGKILL, as a crash would.
func (d *testContainerd) kill9() {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

// logTail is the end of containerd's log, with its shims' messages.
func (d *testContainerd) logTail() string {
	b, _ := os.ReadFile(d.log.Name())
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// cleanup removes every container, stops containerd, and checks that
// nothing it started outlived it (its shims and their VMs and pause
// processes, found by the test's ARROW_ROOT in their environment) and
// that nothing is mounted under its directory; what is left is killed
// or unmounted. The directory is kept when the test failed.
func (d *testContainerd) cleanup() {
	if d.beforeStop != nil && d.cmd != nil {
		d.beforeStop()
	}
	for _, id := range strings.Fields(d.ctr("containers", "ls", "-q").stdout) {
		d.ctr("tasks", "kill", "-s", "SIGKILL", id)
		d.ctr("tasks", "rm", "-f", id)
		d.ctr("containers", "rm", id)
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	}
	marker := []byte("ARROW_ROOT=" + d.arrowRoot + "\x00")
	left := func() map[string]bool {
		return processesWhere(d.t, func(pid, comm string) bool {
			env, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
			return err == nil && bytes.Contains(append(env, 0), marker)
		})
	}
	for i := 0; len(left()) > 0 && i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for pid := range left() {
		d.t.Errorf("process %s (%s) outlived the test's containerd: killed", pid, readComm(pid))
		_ = syscall.Kill(atoi(pid), syscall.SIGKILL)
	}
	// Never delete through a mount.
	mounts, _ := mountinfo.Under(d.dir)
	if len(mounts) > 0 {
		d.t.Errorf("mounts left under %s: %v", d.dir, mounts)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	for _, p := range d.cgroupParents {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + p)
		if fi, err := os.Stat("/sys/fs/cgroup" + p); err == nil && fi.IsDir() {
			dirs = append(dirs, "/sys/fs/cgroup"+p)
		}
		for _, dir := range dirs {
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				d.t.Errorf("cgroup %s: %v (a group left in it?)", dir, err)
			}
		}
	}
	d.log.Close()
	if d.t.Failed() {
		d.t.Logf("containerd's log (tail):\n%s", d.logTail())
		d.t.Logf("kept %s", d.dir)
		return
	}
	_ = os.RemoveAll(d.dir)
}

func readComm(pid string) string {
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "comm"))
	return strings.TrimSpace(string(b))
}

// shims lists this containerd's shim processes (by its address on their
// command line).
func (d *testContainerd) shims() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("containerd-shim-arrow-v1")) || !bytes.Contains(b, []byte(d.address)) {
			continue
		}
		pids = append(pids, atoi(e.Name()))
	}
	return pids
}

func (d *testContainerd) ctr(args ...string) result {
	d.t.Helper()
	return d.ctrIn("", args...)
}

func (d *testContainerd) ctrIn(stdin string, args ...string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctrBin, append([]string{"--address", d.address, "-n", d.namespace}, args...)...)
	cmd.Env = d.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		d.t.Fatalf("ctr %q did not finish: %v\nstderr: %s", args, err, r.stderr)
	}
	return r
}

func (d *testContainerd) mustCtr(args ...string) string {
	d.t.Helper()
	r := d.ctr(args...)
	if r.code != 0 {
		d.t.Fatalf("ctr %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// taskStatus is the STATUS column of `ctr task ls` for id ("" if absent).
func (d *testContainerd) taskStatus(id string) string {
	d.t.Helper()
	for _, line := range strings.Split(d.mustCtr("tasks", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

func (d *testContainerd) waitStatus(id, want string, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := d.taskStatus(id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("task %s: status %q, want %q", id, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// assertClean checks that nothing of the test's tasks is left: no shim,
// no VM, no mount under containerd's state.
func (d *testContainerd) assertClean(before map[string]bool) {
	d.t.Helper()
	assertNoNewQEMU(d.t, before)
	for i := 0; len(d.shims()) > 0 && i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if pids := d.shims(); len(pids) > 0 {
		d.t.Errorf("shim processes left: %v", pids)
	}
	mounts, err := mountinfo.Under(filepath.Join(d.dir, "state"))
	if err != nil {
		d.t.Fatal(err)
	}
	if len(mounts) > 0 {
		d.t.Errorf("mounts left under containerd's state: %v", mounts)
	}
	// The tasks' cgroups (v2, or each v1 controller's).
	// ctr names /NAMESPACE/ID as a task's cgroup, which the shim
	// follows (as runc does), else arrow-containerd/NAMESPACE-ID.
	var groups []string
	for _, pattern := range []string{"/sys/fs/cgroup/arrow-containerd/" + ctrNamespace + "-*",
		"/sys/fs/cgroup/*/arrow-containerd/" + ctrNamespace + "-*",
		"/sys/fs/cgroup/" + ctrNamespace + "/*/", "/sys/fs/cgroup/*/" + ctrNamespace + "/*/"} {
		m, _ := filepath.Glob(pattern)
		groups = append(groups, m...)
	}
	if len(groups) > 0 {
		d.t.Errorf("cgroups left: %v", groups)
	}
}

// guestKernelRelease is the release of the kernel Arrow boots, as its
// image says it ("Linux version RELEASE ...").
func guestKernelRelease(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(arrowBin, "kernel", "path").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Linux version (\S+) `).FindSubmatch(b)
	if m == nil {
		t.Fatal("no Linux version in the guest kernel's image")
	}
	return string(m[1])
}

// TestContainerdRun: `ctr run --rm` with the arrow runtime runs the
// command in a VM (the guest's kernel answers uname), relays its output
// exactly and ends with its exit status.
func TestContainerdRun(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	release := guestKernelRelease(t)
	r := d.ctr("run", "--rm", "--runtime", arrowRuntime, d.image, "run-uname", "uname", "-r")
	if r.code != 0 || strings.TrimSpace(r.stdout) != release {
		t.Fatalf("ctr run uname -r: exit %d, output %q, want %q (the guest kernel's)\nstderr: %s", r.code, r.stdout, release, r.stderr)
	}
	if host, _ := exec.Command("uname", "-r").Output(); strings.TrimSpace(string(host)) == release {
		t.Logf("the host runs the same kernel release (%s): the check proves less", release)
	}
	r = d.ctr("run", "--rm", "--runtime", arrowRuntime, d.image, "run-echo", "echo", "hello,  world")
	if r.code != 0 || r.stdout != "hello,  world\n" {
		t.Errorf("ctr run echo: exit %d, output %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = d.ctr("run", "--rm", "--runtime", arrowRuntime, d.image, "run-exit", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("ctr run exit 3: exit %d, stdout %q, stderr %q; want 3, \"out\\n\", \"err\\n\"", r.code, r.stdout, r.stderr)
	}
	r = d.ctrIn("first\nsecond\n", "run", "--rm", "--runtime", arrowRuntime, d.image, "run-cat", "cat")
	if r.code != 0 || r.stdout != "first\nsecond\n" {
		t.Errorf("ctr run cat with input: exit %d, output %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if ids := strings.Fields(d.mustCtr("containers", "ls", "-q")); len(ids) != 0 {
		t.Errorf("containers left after --rm: %v", ids)
	}
	// The containers of one image share one root disk, keyed by
	// the image's snapshots, not one each.
	disks, _ := filepath.Glob(filepath.Join(d.dir, "arrow", "rootfs", "dirs", "*.erofs"))
	if len(disks) != 1 {
		t.Errorf("root disks %v: want the one of the image's snapshots", disks)
	}
	d.assertClean(before)
}

// TestContainerdDetached: a detached task is listed RUNNING, runs an exec
// (output and status), ends by SIGTERM with 143, and once removed leaves
// no VM, shim or mount.
func TestContainerdDetached(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	id := "detached"
	d.mustCtr("run", "-d", "--runtime", arrowRuntime, d.image, id, "sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.2; done")
	d.waitStatus(id, "RUNNING", time.Minute)
	r := d.ctr("tasks", "exec", "--exec-id", "e1", id, "sh", "-c", "echo hi; exit 4")
	if r.code != 4 || r.stdout != "hi\n" {
		t.Errorf("ctr task exec: exit %d, output %q, want 4 and \"hi\\n\"\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = d.ctrIn("piped\n", "tasks", "exec", "--exec-id", "e2", id, "cat")
	if r.code != 0 || r.stdout != "piped\n" {
		t.Errorf("ctr task exec cat with input: exit %d, output %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if ps := d.mustCtr("tasks", "ps", id); !strings.Contains(ps, strconv.Itoa(d.taskPid(id))) {
		t.Errorf("ctr task ps %s: %q, want the VM's pid %d", id, ps, d.taskPid(id))
	}
	// The VM is in the cgroup the spec names (ctr's /NAMESPACE/ID), as
	// a runc container would be.
	if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", d.taskPid(id))); err != nil || !strings.Contains(string(cg), ":/"+ctrNamespace+"/"+id+"\n") {
		t.Errorf("the VM's cgroups: %v\n%s\nwant /%s/%s", err, cg, ctrNamespace, id)
	}
	if m := d.mustCtr("tasks", "metrics", id); !strings.Contains(m, "memory.usage") {
		t.Errorf("ctr task metrics: %q", m)
	}
	d.mustCtr("tasks", "pause", id)
	d.waitStatus(id, "PAUSED", 10*time.Second)
	d.mustCtr("tasks", "resume", id)
	d.waitStatus(id, "RUNNING", 10*time.Second)
	d.mustCtr("tasks", "kill", id)
	d.waitStatus(id, "STOPPED", time.Minute)
	if r := d.ctr("tasks", "rm", id); r.code != 0 || !strings.Contains(r.stderr, "exit code 143") {
		t.Errorf("ctr task rm after SIGTERM: exit %d, stderr %q; want exit code 143 reported", r.code, r.stderr)
	}
	d.mustCtr("containers", "rm", id)
	d.assertClean(before)
}

// taskPid is the PID column of `ctr task ls` for id.
func (d *testContainerd) taskPid(id string) int {
	d.t.Helper()
	for _, line := range strings.Split(d.mustCtr("tasks", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// TestContainerdTerminal: `ctr run -t` under a pty gives the command a
// terminal of the host's size.
func TestContainerdTerminal(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 37, Cols: 111}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctrBin, "--address", d.address, "-n", ctrNamespace, "run", "--rm", "-t",
		"--runtime", arrowRuntime, d.image, "tty1", "sh", "-c", `tty; echo "size: $(stty size)"; exit 5`)
	cmd.Env = d.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var seen syncbuf.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			_, _ = seen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	code := waitExit(t, cmd, 2*time.Minute)
	out := seen.String()
	if !regexp.MustCompile(`/dev/(pts/\d+|console|tty\w*)`).MatchString(out) || strings.Contains(out, "not a tty") {
		t.Errorf("the command's stdin is not a terminal: %q", out)
	}
	if !strings.Contains(out, "size: 37 111") {
		t.Errorf("the terminal is not the host's size (37 111): %q", out)
	}
	if code != 5 {
		t.Errorf("ctr run -t: exit %d, want 5; output %q", code, out)
	}
	d.assertClean(before)
}

// TestContainerdRestart: a task outlives containerd killed with SIGKILL;
// the restarted containerd finds it RUNNING through its shim and can kill
// and remove it.
func TestContainerdRestart(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	id := "survivor"
	d.mustCtr("run", "-d", "--runtime", arrowRuntime, d.image, id, "sh", "-c", "while :; do sleep 0.2; done")
	d.waitStatus(id, "RUNNING", time.Minute)
	pid := d.taskPid(id)
	d.kill9()
	d.start()
	d.waitStatus(id, "RUNNING", 30*time.Second)
	if got := d.taskPid(id); got != pid || pid == 0 {
		t.Errorf("the task's pid after containerd's restart: %d, want %d", got, pid)
	}
	r := d.ctr("tasks", "exec", "--exec-id", "after", id, "echo", "still here")
	if r.code != 0 || r.stdout != "still here\n" {
		t.Errorf("exec after containerd's restart: exit %d, output %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	d.mustCtr("tasks", "kill", "-s", "SIGKILL", id)
	d.waitStatus(id, "STOPPED", time.Minute)
	if r := d.ctr("tasks", "rm", id); r.code != 0 || !strings.Contains(r.stderr, "exit code 137") {
		t.Errorf("ctr task rm after SIGKILL: exit %d, stderr %q; want exit code 137 reported", r.code, r.stderr)
	}
	d.mustCtr("containers", "rm", id)
	d.assertClean(before)
}

// TestContainerdShimKilled: a shim killed with SIGKILL takes its VM with
// it; containerd runs the shim's delete, which leaves no mount or cgroup,
// and the task is gone.
func TestContainerdShimKilled(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	id := "orphan"
	d.mustCtr("run", "-d", "--runtime", arrowRuntime, d.image, id, "sh", "-c", "while :; do sleep 0.2; done")
	d.waitStatus(id, "RUNNING", time.Minute)
	shims := d.shims()
	if len(shims) != 1 {
		t.Fatalf("shims: %v, want one", shims)
	}
	if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(id, "", 30*time.Second)
	d.mustCtr("containers", "rm", id)
	d.assertClean(before)
}

// TestContainerdBadCommand: a program the image lacks fails the task's
// creation with a message that names it, as runc's does, and leaves
// nothing behind.
func TestContainerdBadCommand(t *testing.T) {
	d := startContainerd(t)
	before := qemuProcesses(t)
	r := d.ctr("run", "--rm", "--runtime", arrowRuntime, d.image, "bad", "no-such-program")
	if r.code == 0 || !strings.Contains(r.stderr, `"no-such-program": executable file not found in $PATH`) {
		t.Errorf("ctr run of a missing program: exit %d, stderr %q; want a failure naming it", r.code, r.stderr)
	}
	d.ctr("containers", "rm", "bad")
	d.assertClean(before)
}
