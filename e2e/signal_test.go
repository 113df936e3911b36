package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

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
	for _, rm := range runModes {
		t.Run(rm.name, func(t *testing.T) {
			m := enterMode(t, rm.name, rm.args)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					done := m.begin(t, tt.args)
					cmd, stderr := m.start(t, tt.args...)
					if err := cmd.Process.Signal(tt.sig); err != nil {
						t.Fatal(err)
					}
					if code := waitExit(t, cmd, time.Minute); code != tt.want {
						t.Fatalf("exit status %d, want %d; stderr: %s", code, tt.want, stderr)
					}
					done()
				})
			}
		})
	}
}

// TestStopTimeout: an application that ignores SIGTERM has its VM stopped
// after --stop-timeout, and arrow reports the signal.
func TestStopTimeout(t *testing.T) {
	for _, rm := range runModes {
		t.Run(rm.name, func(t *testing.T) { testStopTimeout(t, enterMode(t, rm.name, rm.args)) })
	}
}

func testStopTimeout(t *testing.T, m *mode) {
	args := []string{"--stop-timeout", "1", "--include", "/bin/sleep", "/bin/sh", "-c", "trap '' TERM; echo ready; while :; do /bin/sleep 1; done"}
	done := m.begin(t, args)
	cmd, stderr := m.start(t, args...)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, time.Minute); code != 143 {
		t.Fatalf("exit status %d, want 143; stderr: %s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "did not exit within 1s") {
		t.Errorf("stderr does not say why the VM was stopped: %s", stderr)
	}
	done()
}

// TestKilledArrowTakesVMAlong: SIGKILL to arrow itself must not leave an
// orphaned QEMU.
func TestKilledArrowTakesVMAlong(t *testing.T) {
	for _, rm := range runModes {
		t.Run(rm.name, func(t *testing.T) {
			m := enterMode(t, rm.name, rm.args)
			args := []string{"--include", "/bin/sleep", "/bin/sh", "-c", "echo ready; exec /bin/sleep 60"}
			done := m.begin(t, args)
			cmd, _ := m.start(t, args...)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// Through arrowd: its wait's lease ended with the client,
			// and arrowd stopped and removed the arrow.
			done()
		})
	}
}

// TestTerminal runs an application on a terminal, as `arrow run -it` from
// a shell does: it sees a terminal of the host's size, and ^C typed on the
// host interrupts it in the guest (not arrow).
func TestTerminal(t *testing.T) {
	for _, rm := range runModes {
		t.Run(rm.name, func(t *testing.T) { testTerminal(t, enterMode(t, rm.name, rm.args)) })
	}
}

func testTerminal(t *testing.T, m *mode) {
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
	args := []string{"-it", python, "-c",
		// Short sleeps: CPython checks for signals between them, while a
		// SIGINT landing just before a long sleep starts would wait it out.
		"import os, sys, time\nprint('tty', os.isatty(0), os.get_terminal_size(), os.environ['TERM'], os.ttyname(0).startswith('/dev/pts/'), flush=True)\nfor _ in range(600): time.sleep(0.1)"}
	cmd := exec.CommandContext(ctx, arrowBin, m.runArgs(args...)...)
	cmd.Env = append(os.Environ(), m.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	done := m.begin(t, args)
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
	want := "tty True os.terminal_size(columns=103, lines=41) xterm True"
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
	done()
}
