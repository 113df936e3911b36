package template

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/image/rootfs"
	"github.com/arrowsys/arrow/jail"
	"github.com/arrowsys/arrow/kernel"
	"github.com/arrowsys/arrow/vm"
)

// These tests boot real VMs: they need QEMU, Arrow's kernel (`make
// kernel`, found under $ARROW_ROOT or /var/lib/arrow), mkfs.erofs and a
// static busybox.

var (
	env     testEnv
	envOnce sync.Once
)

type testEnv struct {
	skip    string
	cfg     Config
	disk    string // erofs root disk with busybox
	tmp     string
	initErr error
}

func setup(t testing.TB) *testEnv {
	t.Helper()
	envOnce.Do(func() { env = newEnv() })
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.initErr != nil {
		t.Fatal(env.initErr)
	}
	return &env
}

func newEnv() testEnv {
	var e testEnv
	if _, err := vm.FindQEMU(); err != nil {
		return testEnv{skip: err.Error()}
	}
	root := os.Getenv("ARROW_ROOT")
	if root == "" {
		root = "/var/lib/arrow"
	}
	k, err := kernel.Find(root)
	if err != nil {
		return testEnv{skip: "no guest kernel: " + err.Error()}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return testEnv{skip: "no busybox"}
	}
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		return testEnv{skip: "no mkfs.erofs"}
	}
	tmp, err := os.MkdirTemp("", "arrow-template-test-")
	if err != nil {
		return testEnv{initErr: err}
	}
	e.tmp = tmp
	initBin := filepath.Join(tmp, "arrow-init")
	cmd := exec.Command("go", "build", "-o", initBin, "github.com/arrowsys/arrow/cmd/arrow-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return testEnv{initErr: fmt.Errorf("build arrow-init: %v\n%s", err, out)}
	}
	jailer := filepath.Join(tmp, "arrow-jailer")
	cmd = exec.Command("go", "build", "-o", jailer, "github.com/arrowsys/arrow/cmd/arrow-jailer")
	if out, err := cmd.CombinedOutput(); err != nil {
		return testEnv{initErr: fmt.Errorf("build arrow-jailer: %v\n%s", err, out)}
	}
	tree := filepath.Join(tmp, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		return testEnv{initErr: err}
	}
	if out, err := exec.Command("cp", bb, filepath.Join(tree, "bin", "busybox")).CombinedOutput(); err != nil {
		return testEnv{initErr: fmt.Errorf("cp busybox: %v %s", err, out)}
	}
	for _, n := range []string{"sh", "echo", "cat", "head", "od", "tr", "hostname"} {
		_ = os.Symlink("busybox", filepath.Join(tree, "bin", n))
	}
	_ = os.WriteFile(filepath.Join(tree, "marker"), []byte("from the clone's disk\n"), 0o644)
	if e.disk, err = rootfs.Build(context.Background(), tree, filepath.Join(tmp, "rootfs"), ""); err != nil {
		return testEnv{initErr: err}
	}
	host := vm.LocalHost()
	accel, err := vm.DetectAccel("auto", host)
	if err != nil {
		return testEnv{initErr: err}
	}
	e.cfg = Config{
		Root:      filepath.Join(tmp, "root"),
		MemDir:    filepath.Join("/dev/shm", "arrow-templates-test-"+filepath.Base(tmp)),
		Kernel:    k.Path,
		Init:      initBin,
		MemoryMiB: 256,
		CPUs:      1,
		Accel:     accel,
	}
	if os.Geteuid() == 0 {
		// As arrow run does: QEMU in its jail, which must still reach
		// the memory file.
		e.cfg.Jail = &vm.Jail{Helper: jailer, Dir: vm.DefaultJailDir, UIDs: jail.DefaultRange()}
	}
	return e
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env.tmp != "" {
		os.RemoveAll(env.tmp)
		os.RemoveAll(env.cfg.MemDir)
	}
	os.Exit(code)
}

// app is what one run through a VM printed and how it ended.
type app struct {
	stdout string
	status guest.ExitStatus
	first  time.Duration // from t0 to the first output frame
}

func spec(args ...string) *guest.Spec {
	seed := make([]byte, 64)
	_, _ = rand.Read(seed)
	return &guest.Spec{
		Version: guest.ProtocolVersion, Args: args, Env: []string{"PATH=/bin"}, Dir: "/",
		Hostname: "h" + randomSuffix(), TimeUnixNano: time.Now().UnixNano(), Seed: seed,
		Root: &guest.Root{Device: RootSerial, FSType: "erofs"},
	}
}

// runApp hands m the application, as run does, and relays it.
func runApp(t testing.TB, m *vm.Machine, s *guest.Spec, t0 time.Time) app {
	t.Helper()
	return relayApp(t, m, guest.NewClient(m.Control()), s, t0)
}

// relayApp runs s through c, m's guest client.
func relayApp(t testing.TB, m *vm.Machine, c *guest.Client, s *guest.Spec, t0 time.Time) app {
	t.Helper()
	if err := c.Start(s); err != nil {
		t.Fatal(err)
	}
	var a app
	done := make(chan error, 1)
	go func() {
		for ev := range c.Events() {
			switch ev.Kind {
			case guest.EventStdout, guest.EventStderr:
				if a.first == 0 {
					a.first = time.Since(t0)
				}
				if ev.Kind == guest.EventStdout {
					a.stdout += string(ev.Data)
				}
			case guest.EventExit:
				a.status = ev.Status
				done <- ev.Err
				return
			case guest.EventEnd:
				if ev.Err == nil {
					ev.Err = io.EOF
				}
				done <- ev.Err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("guest: %v\n%s", err, m.ConsoleTail())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("guest: no exit status\n%s", m.ConsoleTail())
	}
	return a
}

func ensure(t testing.TB, e *testEnv) *Template {
	t.Helper()
	tpl, err := Ensure(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func cloneRun(t testing.TB, e *testEnv, tpl *Template, s *guest.Spec) app {
	t.Helper()
	t0 := time.Now()
	cl, err := tpl.Clone(context.Background(), e.cfg, CloneOptions{RootDisk: e.disk})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cl.Machine.Kill()
		<-cl.Machine.Done()
	}()
	a := runApp(t, cl.Machine, s, t0)
	t.Logf("clone: qemu start %v, restore %v, resume %v, first output %v", cl.Start.Round(time.Millisecond), cl.Restore.Round(time.Millisecond), cl.Resume.Round(time.Millisecond), a.first.Round(time.Millisecond))
	return a
}

func TestCloneRunsHostProgram(t *testing.T) {
	e := setup(t)
	tpl := ensure(t, e)
	a := cloneRun(t, e, tpl, spec("/bin/busybox", "echo", "hi"))
	if a.stdout != "hi\n" || a.status.Reason != guest.Exited || a.status.Code != 0 {
		t.Errorf("echo hi: stdout %q, status %+v", a.stdout, a.status)
	}
	a = cloneRun(t, e, tpl, spec("/bin/sh", "-c", "cat /marker; exit 7"))
	if a.stdout != "from the clone's disk\n" || a.status.Code != 7 {
		t.Errorf("exit 7: stdout %q, status %+v", a.stdout, a.status)
	}
	a = cloneRun(t, e, tpl, spec("/bin/nonexistent"))
	if a.status.ExitCode() != 127 {
		t.Errorf("missing program: status %+v", a.status)
	}
}

func TestClonesAreUnique(t *testing.T) {
	e := setup(t)
	tpl := ensure(t, e)
	script := `head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo; cat /proc/sys/kernel/random/uuid; hostname`
	var outs [2][]string
	for i := range outs {
		a := cloneRun(t, e, tpl, spec("/bin/sh", "-c", script))
		outs[i] = strings.Split(strings.TrimSpace(a.stdout), "\n")
		if len(outs[i]) != 3 || len(outs[i][0]) != 64 {
			t.Fatalf("clone %d printed %q", i, a.stdout)
		}
	}
	for j, what := range []string{"random bytes", "UUID", "host name"} {
		if outs[0][j] == outs[1][j] {
			t.Errorf("two clones share their %s: %s", what, outs[0][j])
		}
	}
	t.Logf("clone 1: %q\nclone 2: %q", outs[0], outs[1])
}

func TestStaleKey(t *testing.T) {
	e := setup(t)
	tpl := ensure(t, e)
	c := e.cfg
	c.MemoryMiB = 128
	in, err := c.Inputs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in.Key() == tpl.Key {
		t.Fatal("a different memory size gives the same key")
	}
	if _, err := Lookup(c.Root, in.Key()); !errors.Is(err, ErrUnusable) {
		t.Errorf("lookup of the 128 MiB key: %v", err)
	}
	// Cloning the 256 MiB template for the 128 MiB machine is refused.
	if _, err := tpl.Clone(context.Background(), c, CloneOptions{}); !errors.Is(err, ErrUnusable) {
		t.Errorf("clone for another memory size: %v", err)
	}
}

// qemuChildren are the QEMU processes this test process started.
func qemuChildren() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && strings.Contains(s[:i], "qemu") {
			out = append(out, pid)
		}
	}
	return out
}

func TestDamagedTemplate(t *testing.T) {
	e := setup(t)
	c := e.cfg
	c.Root = filepath.Join(e.tmp, "damaged")
	tpl, err := Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(c.Root, tpl.Key); err != nil {
		t.Fatal(err)
	}
	// A truncated state: Lookup sees the hash mismatch, and QEMU itself
	// refuses it when asked anyway.
	fi, err := os.Stat(tpl.statePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tpl.statePath(), fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(c.Root, tpl.Key); !errors.Is(err, ErrUnusable) {
		t.Errorf("lookup of a truncated state: %v", err)
	}
	_, err = tpl.Clone(context.Background(), c, CloneOptions{RootDisk: e.disk})
	if !errors.Is(err, ErrUnusable) {
		t.Errorf("clone of a truncated state: %v", err)
	} else {
		t.Logf("clone of a truncated state: %v", err)
	}
	if left := qemuChildren(); len(left) > 0 {
		t.Errorf("QEMU left running: %v", left)
	}
	// A missing memory file.
	tpl, err = Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(tpl.MemFile)
	if _, err := Lookup(c.Root, tpl.Key); !errors.Is(err, ErrUnusable) {
		t.Errorf("lookup without memory file: %v", err)
	}
	// Ensure rebuilds it.
	if tpl, err = Ensure(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(c.Root, tpl.Key); err != nil {
		t.Errorf("after Ensure: %v", err)
	}
	list, err := List(c.Root)
	if err != nil || len(list) != 1 {
		t.Errorf("List: %v, %v", list, err)
	}
	if err := Remove(c.Root, tpl.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tpl.MemFile); !os.IsNotExist(err) {
		t.Errorf("memory file after Remove: %v", err)
	}
	if list, _ := List(c.Root); len(list) != 0 {
		t.Errorf("List after Remove: %v", list)
	}
}

// BenchmarkLatency compares the first-output latency of cold boots and
// clones with the same machine and the same root disk:
// go test -run XXX -bench Latency -benchtime 1x ./template/
func BenchmarkLatency(b *testing.B) {
	t := testing.TB(b)
	e := setup(t)
	tpl := ensure(t, e)
	const n = 5
	var cold, clone []time.Duration
	for i := 0; i < n; i++ {
		cfg := e.cfg.vmConfig(tpl.Inputs.Initrd, e.disk)
		cfg.Cmdline = ""
		cfg.QEMU = e.cfg.QEMU
		if cfg.QEMU == "" {
			cfg.QEMU, _ = vm.FindQEMU()
		}
		t0 := time.Now()
		m, err := vm.Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := runApp(t, m, spec("/bin/busybox", "echo", "hi"), t0)
		_ = m.Kill()
		<-m.Done()
		if a.stdout != "hi\n" {
			t.Fatalf("cold: %q", a.stdout)
		}
		cold = append(cold, a.first)

		a = cloneRun(t, e, tpl, spec("/bin/busybox", "echo", "hi"))
		if a.stdout != "hi\n" {
			t.Fatalf("clone: %q", a.stdout)
		}
		clone = append(clone, a.first)
	}
	mc, ml := median(cold), median(clone)
	t.Logf("first output, median of %d (accel %s): cold %v, clone %v (%.2fx); template boot %v\ncold  %v\nclone %v",
		n, e.cfg.Accel.Name, mc.Round(time.Millisecond), ml.Round(time.Millisecond), float64(ml)/float64(mc), tpl.BootTime.Round(time.Millisecond), cold, clone)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func TestPruneUnused(t *testing.T) {
	root := t.TempDir()
	for _, key := range []string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"} {
		dir := filepath.Join(Dir(root), key)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		mem := filepath.Join(root, key+".mem")
		if err := os.WriteFile(mem, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(Template{Key: key, MemFile: mem})
		if err := os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-8 * 24 * time.Hour)
	stale := filepath.Join(Dir(root), "0123456789abcdef0123456789abcdef")
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if n := PruneUnused(root, MaxUnused, time.Now()); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the unused template is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "0123456789abcdef0123456789abcdef.mem")); !os.IsNotExist(err) {
		t.Errorf("its memory file is still there: %v", err)
	}
	if list, _ := List(root); len(list) != 1 {
		t.Errorf("%d templates left, want 1", len(list))
	}
}

// spareRun runs s in a spare of tpl whose disk slot gets e.disk.
func spareRun(t testing.TB, e *testEnv, tpl *Template, s *guest.Spec) (app, *Spare) {
	t.Helper()
	sp, err := tpl.StartSpare(context.Background(), e.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sp.Machine.Kill()
		<-sp.Machine.Done()
	}()
	t0 := time.Now()
	if err := sp.Use(context.Background(), e.disk, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The run goes on with the client that warmed the spare.
	a := relayApp(t, sp.Machine, sp.Guest, s, t0)
	t.Logf("spare: warmed %v in %v (guest %v), first output %v after use", sp.Warmed.Steps, sp.Warm.Round(time.Millisecond),
		time.Duration(sp.Warmed.Nanos).Round(time.Millisecond), a.first.Round(time.Millisecond))
	return a, sp
}

// A spare warms up on the placeholder, then runs the application from the
// disk it is given when used, like any clone.
func TestSpareRunsHostProgram(t *testing.T) {
	e := setup(t)
	tpl := ensure(t, e)
	a, sp := spareRun(t, e, tpl, spec("/bin/sh", "-c", "cat /marker; ls /.arrow 2>&1; exit 7"))
	if want := []string{"decode", "disk", "root", "exec"}; strings.Join(sp.Warmed.Steps, " ") != strings.Join(want, " ") || sp.Warmed.Error != "" {
		t.Errorf("warm-up: steps %v, error %q; want %v", sp.Warmed.Steps, sp.Warmed.Error, want)
	}
	// The marker is on the run's disk, not the placeholder; nothing of
	// the warm-up's mounts is left in the new root.
	if !strings.HasPrefix(a.stdout, "from the clone's disk\n") || strings.Contains(a.stdout, "warm") || a.status.Code != 7 {
		t.Errorf("stdout %q, status %+v", a.stdout, a.status)
	}
	b, _ := spareRun(t, e, tpl, spec("/bin/busybox", "echo", "hi"))
	if b.stdout != "hi\n" || b.status.Code != 0 {
		t.Errorf("echo hi: stdout %q, status %+v", b.stdout, b.status)
	}
}
