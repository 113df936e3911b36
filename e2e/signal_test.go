package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// startArrow starts arrow run in the background and waits until the
// application printed its first line, so that signals sent afterwards
// reach a running application rather than a booting VM.
func startArrow(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(arrowBin, append([]string{"run"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l == "" {
			_ = cmd.Wait()
			t.Fatalf("application printed nothing; stderr: %s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("application did not start; stderr: %s", stderr.String())
	}
	return cmd, &stderr
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("arrow did not exit within %v", within)
		return -1
	}
}

// TestSignalForwarding: SIGTERM to arrow reaches the application, which
// dies of it; arrow exits 128+15 and the VM is gone.
func TestSignalForwarding(t *testing.T) {
	tests := []struct {
		name string
		sig  syscall.Signal
		args []string
		want int
	}{
		{"sleep killed by SIGTERM", syscall.SIGTERM, []string{"--include", "/bin/sleep", "/bin/sh", "-c", "echo ready; exec /bin/sleep 60"}, 143},
		{"handled SIGHUP", syscall.SIGHUP, []string{"--include", "/bin/sleep", "/bin/sh", "-c", "trap 'exit 42' HUP; echo ready; while :; do /bin/sleep 0.1; done"}, 42},
		{"SIGINT", syscall.SIGINT, []string{"--include", "/bin/sleep", "/bin/sh", "-c", "echo ready; exec /bin/sleep 60"}, 130},
	}
	for _, m := range runModes {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				before := qemuProcesses(t)
				cmd, stderr := startArrow(t, forMode(t, m.name, m.args, tt.args...)...)
				if err := cmd.Process.Signal(tt.sig); err != nil {
					t.Fatal(err)
				}
				if code := waitExit(t, cmd, time.Minute); code != tt.want {
					t.Fatalf("exit status %d, want %d; stderr: %s", code, tt.want, stderr)
				}
				assertNoNewQEMU(t, before)
			})
		}
	}
}

// TestStopTimeout: an application that ignores SIGTERM has its VM stopped
// after --stop-timeout, and arrow reports the signal.
func TestStopTimeout(t *testing.T) {
	for _, m := range runModes {
		t.Run(m.name, func(t *testing.T) { testStopTimeout(t, forMode(t, m.name, m.args)) })
	}
}

func testStopTimeout(t *testing.T, modeArgs []string) {
	before := qemuProcesses(t)
	cmd, stderr := startArrow(t, append(modeArgs, "--stop-timeout", "1", "--include", "/bin/sleep", "/bin/sh", "-c", "trap '' TERM; echo ready; while :; do /bin/sleep 1; done")...)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, time.Minute); code != 143 {
		t.Fatalf("exit status %d, want 143; stderr: %s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "did not exit within 1s") {
		t.Errorf("stderr does not say why the VM was stopped: %s", stderr)
	}
	assertNoNewQEMU(t, before)
}

// TestKilledArrowTakesVMAlong: SIGKILL to arrow itself must not leave an
// orphaned QEMU.
func TestKilledArrowTakesVMAlong(t *testing.T) {
	for _, m := range runModes {
		t.Run(m.name, func(t *testing.T) {
			before := qemuProcesses(t)
			cmd, _ := startArrow(t, forMode(t, m.name, m.args, "--include", "/bin/sleep", "/bin/sh", "-c", "echo ready; exec /bin/sleep 60")...)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			assertNoNewQEMU(t, before)
		})
	}
}

// TestTerminal runs an application on a terminal, as `arrow run -it` from
// a shell does: it sees a terminal of the host's size, and ^C typed on the
// host interrupts it in the guest (not arrow).
func TestTerminal(t *testing.T) {
	for _, m := range runModes {
		t.Run(m.name, func(t *testing.T) { testTerminal(t, forMode(t, m.name, m.args)) })
	}
}

func testTerminal(t *testing.T, modeArgs []string) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 41, Cols: 103}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, arrowBin, append(append([]string{"run"}, modeArgs...), "-it", python, "-c",
		// Short sleeps: CPython checks for signals between them, while a
		// SIGINT landing just before a long sleep starts would wait it out.
		"import os, sys, time\nprint('tty', os.isatty(0), os.get_terminal_size(), os.environ['TERM'], flush=True)\nfor _ in range(600): time.sleep(0.1)")...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	before := qemuProcesses(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "xterm") {
		n, err := ptmx.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading terminal: %v; saw %q", err, seen.String())
		}
	}
	want := "tty True os.terminal_size(columns=103, lines=41) xterm"
	if !strings.Contains(seen.String(), want) {
		t.Fatalf("terminal output %q, want it to contain %q", seen.String(), want)
	}
	if _, err := ptmx.Write([]byte{3}); err != nil { // ^C
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, ptmx) }()
	// Python dies of the SIGINT the guest's terminal raised: 128+2.
	if code := waitExit(t, cmd, time.Minute); code != 130 {
		t.Fatalf("exit status %d, want 130", code)
	}
	assertNoNewQEMU(t, before)
}
