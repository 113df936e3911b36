package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

// arrowIn runs the CLI against this daemon with stdin.
func (d *testDaemon) arrowIn(stdin string, args ...string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	_ = cmd.Run()
	if ctx.Err() != nil {
		d.t.Fatalf("arrow %q did not finish\nstderr: %s", args, errb.String())
	}
	return result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// sleeper is an application that waits to be exec'd into.
var sleeper = []string{"/bin/busybox", "sleep", "600"}

// checkExec runs `arrow exec` with args and checks its stdout, stderr
// (when want.stderr is not "-") and exit status.
func (d *testDaemon) checkExec(stdin string, want result, args ...string) {
	d.t.Helper()
	t0 := time.Now()
	r := d.arrowIn(stdin, append([]string{"exec"}, args...)...)
	if r.stdout != want.stdout || (want.stderr != "-" && r.stderr != want.stderr) || r.code != want.code {
		d.t.Errorf("exec %q: stdout %q stderr %q exit %d; want %q %q %d", args, r.stdout, r.stderr, r.code, want.stdout, want.stderr, want.code)
	}
	d.t.Logf("exec %q: %v", args, time.Since(t0).Round(time.Millisecond))
}

// execBasics checks what exec does in the running arrow ref: output apart,
// exit statuses, stdin, a terminal, env, user and working directory.
func execBasics(t *testing.T, d *testDaemon, ref string) {
	t.Helper()
	bb := "/bin/busybox"
	d.checkExec("", result{stdout: "out\n", stderr: "err\n", code: 3}, ref, bb, "sh", "-c", "echo out; echo err >&2; exit 3")
	d.checkExec("", result{stderr: "-", code: 127}, ref, "/no/such/program")
	d.checkExec("", result{stderr: "-", code: 126}, ref, "/etc/hostname")
	d.checkExec("", result{code: 137}, ref, bb, "sh", "-c", "kill -9 $$")
	d.checkExec("hello\nworld\n", result{stdout: "hello\nworld\n", code: 0}, "-i", ref, bb, "cat")
	// Without -i the process reads /dev/null.
	d.checkExec("ignored\n", result{code: 0}, ref, bb, "cat")
	d.checkExec("", result{stdout: "bar baz\n", code: 0}, "-e", "FOO=bar baz", ref, bb, "sh", "-c", "echo $FOO")
	d.checkExec("", result{stdout: "1234 5678 /\n", code: 0}, "-u", "1234:5678", ref, bb, "sh", "-c", `echo $(id -u) $(id -g) $HOME`)
	d.checkExec("", result{stdout: "/dev\n", code: 0}, "-w", "/dev", ref, bb, "pwd")
	d.checkExec("", result{stderr: "-", code: 125}, "-w", "/no/such/dir", ref, bb, "pwd")
	// A terminal: one stream, \r\n line ends, a pty device.
	r := d.arrowIn("", "exec", "-t", ref, bb, "sh", "-c", "test -t 0 && test -t 1 && tty; echo $TERM >&2")
	if r.code != 0 || !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "xterm\r\n") || r.stderr != "" {
		t.Errorf("exec -t: stdout %q stderr %q exit %d", r.stdout, r.stderr, r.code)
	}
	if r := d.arrowIn("", "exec", ref, bb, "sh", "-c", "test -t 0"); r.code != 1 {
		t.Errorf("exec without -t: a terminal on stdin (exit %d)", r.code)
	}
	// Several at once, next to the application.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.checkExec("", result{stdout: "done\n", code: i}, ref, bb, "sh", "-c", "sleep 1; echo done; exit "+string(rune('0'+i)))
		}()
	}
	wg.Wait()
	if a := d.inspect(ref); a.State != api.Running {
		t.Errorf("after the execs: %s is %s", ref, a.State)
	}
}

// TestExecCold: exec in a cold-booted arrow, and into one that stopped.
func TestExecCold(t *testing.T) {
	d := startDaemon(t)
	d.must(append([]string{"run", "-d", "--cold", "--name", "cold"}, sleeper...)...)
	a := d.waitFor("cold", time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	if a.Template != "" || a.Spare {
		t.Fatalf("not a cold boot: template %q spare %v", a.Template, a.Spare)
	}
	execBasics(t, d, "cold")

	d.must("stop", "-t", "0", "cold")
	r := d.arrow("exec", "cold", "/bin/busybox", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "cold is not running") {
		t.Errorf("exec into a stopped arrow: exit %d, stderr %q", r.code, r.stderr)
	}
	_, _, err := d.client().Exec(context.Background(), "cold", &api.ExecConfig{Cmd: []string{"/bin/busybox", "true"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 409 {
		t.Errorf("API exec into a stopped arrow: %v, want 409", err)
	}
	// Bad requests are refused before anything runs.
	for _, cfg := range []api.ExecConfig{{}, {Cmd: []string{"x"}, WorkingDir: "rel"}, {Cmd: []string{"x"}, Env: []string{"NOEQUALS"}}} {
		_, _, err := d.client().Exec(context.Background(), "cold", &cfg)
		if !errors.As(err, &ce) || ce.Status != 400 {
			t.Errorf("API exec %+v: %v, want 400", cfg, err)
		}
	}
}

// TestExecClone: exec in an arrow cloned from a template.
func TestExecClone(t *testing.T) {
	d := startDaemon(t)
	d.must("template", "warm")
	d.must(append([]string{"run", "-d", "--name", "cl"}, sleeper...)...)
	a := d.waitFor("cl", time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	if a.Template == "" || a.Spare {
		t.Fatalf("not a clone: template %q spare %v", a.Template, a.Spare)
	}
	execBasics(t, d, "cl")
}

// TestExecSpare: exec in an arrow that started in a spare from the pool.
func TestExecSpare(t *testing.T) {
	d := startDaemon(t)
	d.must("template", "warm", "--count", "1")
	a := d.runSpare(sleeper...)
	d.waitFor(a.ID, time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	execBasics(t, d, a.ID)
}

// TestExecUserName: -u NAME resolves in the guest root's /etc/passwd, as
// --user does, and exec runs in that root.
func TestExecUserName(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "home/alice"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1002::/home/alice:/bin/sh\n",
		"etc/group":   "root:x:0:\nstaff:x:1002:\nwheel:x:1003:alice\n",
		"etc/marker":  "in the root disk\n",
		"bin/busybox": string(bb),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, applet := range []string{"sh", "sleep", "id", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t)
	d.must("run", "-d", "--name", "rf", "--rootfs", dir, "/bin/sleep", "600")
	d.waitFor("rf", time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	d.checkExec("", result{stdout: "1001 1002 1002 1003 /home/alice\n", code: 0}, "-u", "alice", "rf", "sh", "-c", `echo $(id -u) $(id -g) $(id -G) $HOME`)
	d.checkExec("", result{stdout: "in the root disk\n", code: 0}, "rf", "cat", "/etc/marker")
	r := d.arrow("exec", "-u", "bob", "rf", "id")
	if r.code != 125 || !strings.Contains(r.stderr, `"bob"`) {
		t.Errorf("exec -u bob: exit %d, stderr %q", r.code, r.stderr)
	}
}

// execStream reads an exec stream's frames until its exit frame, calling
// each with the output so far; it returns the output and the exit.
func execStream(t *testing.T, br io.Reader, each func(out string)) (string, api.ExecExit) {
	t.Helper()
	var out strings.Builder
	for {
		st, p, err := api.ReadExecFrame(br, api.StreamStdout, api.StreamStderr, api.StreamExit)
		if err != nil {
			t.Fatalf("exec stream after %q: %v", out.String(), err)
		}
		if st == api.StreamExit {
			var x api.ExecExit
			if err := api.DecodeExecControl(p, &x); err != nil {
				t.Fatal(err)
			}
			return out.String(), x
		}
		out.Write(p)
		if each != nil {
			each(out.String())
		}
	}
}

// TestExecAPI drives exec streams through the API: a terminal resized and
// a signal delivered, a client that goes has its process killed, and an
// exec running when the application ends ends with it (137).
func TestExecAPI(t *testing.T) {
	d := startDaemon(t)
	d.must(append([]string{"run", "-d", "--cold", "--name", "api"}, sleeper...)...)
	d.waitFor("api", time.Minute, "running", func(a api.Arrow) bool { return a.State == api.Running })
	ctx := context.Background()
	c := d.client()

	conn, br, err := c.Exec(ctx, "api", &api.ExecConfig{
		Cmd: []string{"/bin/busybox", "sh", "-c", `trap 'stty size; exit 5' USR1; stty size; echo ready; while :; do sleep 0.1; done`},
		TTY: true, Rows: 10, Cols: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := false
	out, x := execStream(t, br, func(out string) {
		if !sent && strings.Contains(out, "ready") {
			sent = true
			_ = api.WriteExecControl(conn, api.ExecResize, api.ExecSize{Rows: 30, Cols: 100})
			_ = api.WriteExecControl(conn, api.ExecSignal, api.ExecSignalRequest{Signal: 10})
		}
	})
	conn.Close()
	if !strings.HasPrefix(out, "10 20\r\n") || !strings.HasSuffix(out, "30 100\r\n") || x.ExitCode != 5 {
		t.Errorf("resize and signal: output %q, exit %+v", out, x)
	}

	// A client that goes: its process is killed.
	conn, _, err = c.Exec(ctx, "api", &api.ExecConfig{Cmd: []string{"/bin/busybox", "sleep", "599"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := d.arrow("exec", "api", "/bin/busybox", "sh", "-c", "ps | grep -c '[s]leep 599'")
		if strings.TrimSpace(r.stdout) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec of a client that went still runs: %q", r.stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The application ends: so does the exec, with the VM.
	conn, br, err = c.Exec(ctx, "api", &api.ExecConfig{Cmd: []string{"/bin/busybox", "sh", "-c", "echo started; sleep 600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	killed := false
	_, x = execStream(t, br, func(out string) {
		if !killed && strings.Contains(out, "started") {
			killed = true
			d.must("kill", "api")
		}
	})
	if x.ExitCode != 137 || !strings.Contains(x.Error, "application exited") {
		t.Errorf("exec when the application ended: %+v", x)
	}
}
