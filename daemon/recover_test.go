package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
	"github.com/arrowsys/arrow/shim"
)

// The test binary doubles as a stand-in shim: started with envHold set to
// a directory, it holds that directory's shim lock as a shim does and
// sleeps; with envStubborn set too, it ignores SIGTERM.
const (
	envHold     = "ARROWD_TEST_HOLD"
	envStubborn = "ARROWD_TEST_STUBBORN"
)

func TestMain(m *testing.M) {
	if os.Getenv(envFakeShim) != "" && len(os.Args) == 3 && os.Args[1] == "shim" {
		os.Exit(standInShim(os.Args[2]))
	}
	if dir := os.Getenv(envHold); dir != "" {
		if os.Getenv(envStubborn) != "" {
			signal.Ignore(syscall.SIGTERM)
		}
		f, err := os.OpenFile(filepath.Join(dir, shim.LockFile), os.O_RDWR|os.O_CREATE, 0o600)
		if err == nil {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		}
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(2 * time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder is a stand-in shim holding a directory's lock.
type holder struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startHolder(t *testing.T, dir string, stubborn bool) *holder {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envHold+"="+dir)
	if stubborn {
		cmd.Env = append(cmd.Env, envStubborn+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-h.done })
	b := make([]byte, 7)
	if _, err := out.Read(b); err != nil || string(b) != "locked\n" {
		t.Fatalf("stand-in shim: %q, %v", b, err)
	}
	if pid, _ := shim.Holder(dir); pid != cmd.Process.Pid {
		t.Fatalf("stand-in shim does not hold %s: holder %d", dir, pid)
	}
	return h
}

func (h *holder) alive() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

func testConfig(t *testing.T) Config {
	t.Helper()
	run, err := os.MkdirTemp("", "arrowd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	return Config{Root: t.TempDir(), RunDir: run, Exe: "/nonexistent", Version: "test"}
}

// putRecord stores r as a previous daemon would have left it.
func putRecord(t *testing.T, cfg Config, r *record) {
	t.Helper()
	st, err := openStore(filepath.Join(cfg.Root, "arrowd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if r.Dir == "" {
		r.Dir = filepath.Join(cfg.Root, "arrows", r.ID)
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := st.put(r); err != nil {
		t.Fatal(err)
	}
}

func testID(c byte) string { return strings.Repeat(string(c), 64) }

// A daemon killed after it committed an arrow's launching state finds,
// when it starts again, either no shim (killed before it started one) or
// an unconfirmed shim (killed after): it ends the shim and records the
// run as exited, saying why.
func TestRecoverLaunching(t *testing.T) {
	for _, tc := range []struct {
		name      string
		shim      bool // the shim was started
		stubborn  bool // and ignores SIGTERM
		wantState api.State
	}{
		{"no shim started", false, false, api.Exited},
		{"shim started", true, false, api.Exited},
		{"shim started, ignores SIGTERM", true, true, api.Exited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			id := testID('a')
			putRecord(t, cfg, &record{Arrow: api.Arrow{ID: id, Name: "web", State: api.Starting,
				Config: api.Config{Program: "/bin/true", Restart: api.RestartPolicy{Name: api.RestartNo}}}, Launching: true,
				Socket: filepath.Join(cfg.RunDir, id+".sock")})
			var h *holder
			if tc.shim {
				h = startHolder(t, filepath.Join(cfg.Root, "arrows", id), tc.stubborn)
			}
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			a, err := d.Get("web")
			if err != nil {
				t.Fatal(err)
			}
			if a.State != tc.wantState || a.ExitCode != run.ExitArrowFailed || !strings.Contains(a.Error, "arrowd ended while starting this run") {
				t.Errorf("recovered arrow: %s, exit %d, %q", a.State, a.ExitCode, a.Error)
			}
			if h != nil && h.alive() {
				t.Error("the unconfirmed shim still runs")
			}
			if pid, _ := shim.Holder(filepath.Join(cfg.Root, "arrows", id)); pid != 0 {
				t.Errorf("shim lock still held by %d", pid)
			}
			recs, _ := d.st.all()
			if len(recs) != 1 || recs[0].Launching || recs[0].State != api.Exited {
				t.Errorf("stored after recovery: %+v", recs)
			}
		})
	}
}

// Shims no record names are ended at start: one of an arrow that is not
// running, one whose directory has no record (whose directory goes too).
// The shim a record names is adopted, not ended.
func TestRecoverEndsOrphans(t *testing.T) {
	cfg := testConfig(t)
	exited, ghost, running := testID('b'), testID('c'), testID('d')
	putRecord(t, cfg, &record{Arrow: api.Arrow{ID: exited, Name: "exited", State: api.Exited, Config: api.Config{Program: "/bin/true"}}})
	hExited := startHolder(t, filepath.Join(cfg.Root, "arrows", exited), false)
	hGhost := startHolder(t, filepath.Join(cfg.Root, "arrows", ghost), false)
	hRunning := startHolder(t, filepath.Join(cfg.Root, "arrows", running), false)
	pid := hRunning.cmd.Process.Pid
	putRecord(t, cfg, &record{Arrow: api.Arrow{ID: running, Name: "running", State: api.Running, ShimPid: pid,
		Config: api.Config{Program: "/bin/true"}}, ShimStart: processStart(pid), Socket: filepath.Join(cfg.RunDir, "none.sock")})

	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if hExited.alive() || hGhost.alive() {
		t.Errorf("orphan shims left running: of an exited arrow %v, of no arrow %v", hExited.alive(), hGhost.alive())
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "arrows", ghost)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of no arrow: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "arrows", exited)); err != nil {
		t.Errorf("the exited arrow's directory: %v", err)
	}
	if !hRunning.alive() {
		t.Error("the running arrow's own shim was ended")
	}
	if a, _ := d.Get("running"); a.State != api.Running || a.ShimPid != pid {
		t.Errorf("the running arrow: %s shim %d", a.State, a.ShimPid)
	}
}

// No second shim starts over a live one, whatever the record says; and
// the arrow is not marked as failed for it.
func TestStartRefusesOverLiveShim(t *testing.T) {
	cfg := testConfig(t)
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := testID('e')
	a := &arrow{rec: &record{Arrow: api.Arrow{ID: id, Name: "web", State: api.Exited, ExitCode: 3, Config: api.Config{Program: "/bin/true"}}}}
	d.mu.Lock()
	d.arrows[id] = a
	d.mu.Unlock()
	h := startHolder(t, d.arrowDir(id), false)
	_, err = d.StartExisting(context.Background(), "web")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), strconv.Itoa(h.cmd.Process.Pid)) {
		t.Fatalf("start over a live shim: %v", err)
	}
	if got, _ := d.Get("web"); got.State != api.Exited || got.ExitCode != 3 {
		t.Errorf("after the refused start: %s %d", got.State, got.ExitCode)
	}
	if !h.alive() {
		t.Error("the live shim was ended")
	}
}

// A start that fails after the launching state was committed leaves the
// arrow exited with the reason, not launching.
func TestStartFailureClearsLaunching(t *testing.T) {
	d := newTestDaemon(t)
	_, err := d.Create(context.Background(), &api.CreateRequest{Name: "web", Config: api.Config{Program: "/bin/true"}})
	if err == nil {
		t.Fatal("a shim of /nonexistent started")
	}
	recs, _ := d.st.all()
	if len(recs) != 1 || recs[0].Launching || recs[0].State != api.Exited || recs[0].ExitCode != run.ExitArrowFailed {
		t.Fatalf("stored: %+v", recs)
	}
}

// The next daemon ends the spare shims an earlier one left, before it
// removes their directories; one that ignores SIGTERM gets SIGKILL.
func TestNewDaemonEndsLeftoverSpares(t *testing.T) {
	cfg := testConfig(t)
	spares := filepath.Join(cfg.Root, "spares")
	polite := startHolder(t, filepath.Join(spares, "s1"), false)
	stubborn := startHolder(t, filepath.Join(spares, "s2"), true)
	if err := os.MkdirAll(filepath.Join(spares, "s3"), 0o700); err != nil { // its shim is gone
		t.Fatal(err)
	}
	staleSock := filepath.Join(cfg.RunDir, "spare-s2.sock")
	if err := os.WriteFile(staleSock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if polite.alive() || stubborn.alive() {
		t.Fatalf("spare shims left running: %v %v", polite.alive(), stubborn.alive())
	}
	if ents, err := os.ReadDir(spares); err != nil || len(ents) != 0 {
		t.Fatalf("spare directories left: %d, %v", len(ents), err)
	}
	if _, err := os.Stat(staleSock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead spare's socket: %v", err)
	}
}

func TestCheckRuntimeDir(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode, uid int) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
		return p
	}
	me := os.Geteuid()
	other := 65534
	if me == other {
		other = 65533
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(mk("target", 0o700, me), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"own, private", mk("own", 0o700, me), ""},
		{"own, readable", mk("own-r", 0o755, me), ""},
		{"root's", mk("roots", 0o755, 0), ""},
		// /tmp/arrow-UID made by someone else first.
		{"another user's", mk("others", 0o700, other), "owned by uid"},
		{"writable by all", mk("world", 0o777, me), "writable by others"},
		{"sticky, writable by all", mk("sticky", 0o777|os.ModeSticky, me), "writable by others"},
		{"writable by the group", mk("group", 0o770, me), "writable by others"},
		{"a symbolic link", link, "not a directory"},
		{"absent", filepath.Join(base, "absent"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRuntimeDir(tc.dir)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckRuntimeDir = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckRuntimeDir = %v, want an error with %q", err, tc.want)
			}
		})
	}
	// The daemon refuses to start with such a directory.
	cfg := testConfig(t)
	cfg.RunDir = mk("daemon-run", 0o777, me)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("New with a world-writable socket directory: %v", err)
	}
}

// Absurd timeouts are refused with 400 and a clear message.
func TestHTTPCreateTimeoutBounds(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	for _, body := range []string{
		`{"config":{"program":"/bin/true","boot_timeout":1e10}}`,
		`{"config":{"program":"/bin/true","stop_timeout":1e10}}`,
		`{"config":{"program":"/bin/true","stop_timeout":86401}}`,
	} {
		wantError(t, serveReq(t, h, "POST", "/v1/arrows", "application/json", strings.NewReader(body)), 400, "want at most 86400 s")
	}
}

// An exit record the host cannot read is reported as such.
func TestExitOfUnreadable(t *testing.T) {
	d := newTestDaemon(t)
	id := testID('f')
	dir := d.arrowDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if e := d.exitOf(id); e.ExitCode != 255 || !strings.Contains(e.Error, "without recording an exit status") {
		t.Errorf("no record: %+v", e)
	}
	if err := os.WriteFile(filepath.Join(dir, shim.ExitFile), []byte(`{"exit_code": 1, "error": "`+strings.Repeat("x", 6<<20)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if e := d.exitOf(id); e.ExitCode != 255 || !strings.Contains(e.Error, "unreadable") || len(e.Error) > 1024 {
		t.Errorf("an oversized record: %d %.200q", e.ExitCode, e.Error)
	}
}
