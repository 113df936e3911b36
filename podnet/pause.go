package podnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/arrowsys/arrow/internal/netnsdo"
)

// pauseReady is what the pause process writes once it holds the
// namespace and handles SIGTERM.
const pauseReady = "arrow-pause ready"

// pauseStartTimeout bounds the wait for the pause process to be ready.
const pauseStartTimeout = 30 * time.Second

// StartPause starts cmd, the pod sandbox's placeholder process (the shim
// re-executing itself as `containerd-shim-arrow-v1 pause NSPATH`, whose
// main calls [Pause] with its standard output), inside the pod network
// namespace at nsPath, and returns once it is ready: in the namespace,
// and ending with status 0 on SIGTERM. The CRI plugin then names
// /proc/<its pid>/ns/net as the network namespace of the pod's
// containers, which [Attach] is given.
//
// The process is forked by a thread that entered the namespace, so it
// runs there from its first instruction, every thread of it: a Go
// program cannot move itself whole (setns moves one thread, and
// /proc/PID/ns/net shows the main thread's). cmd.Stdout must be unset:
// it is the pipe the process tells it is ready on. Its standard input
// and error are /dev/null unless cmd sets them. It gets a process group
// of its own, so that a terminal's signals to the shim do not reach it.
// The caller waits for it (cmd.Wait) and stops it with SIGTERM or
// SIGKILL. If it is not ready in time (or ctx ends first), it is killed
// and reaped, and the error says why.
func StartPause(ctx context.Context, nsPath string, cmd *exec.Cmd) (*os.Process, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("pod sandbox process: cmd.Stdout is set: StartPause reads its readiness there")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pod sandbox process: %w", err)
	}
	defer r.Close()
	cmd.Stdout = w
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	err = netnsdo.Do(nsPath, func() error { return cmd.Start() })
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("pod sandbox process in %s: %w", nsPath, err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		switch {
		case strings.TrimSpace(line) == pauseReady:
			ready <- nil
		case err != nil:
			ready <- fmt.Errorf("it ended before it was ready (%w)", err)
		default:
			ready <- fmt.Errorf("it said %q, not that it was ready", line)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, pauseStartTimeout)
	defer cancel()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cmd.Process.Kill()
		werr := cmd.Wait()
		return nil, fmt.Errorf("pod sandbox process in %s: %w (%v)", nsPath, err, werr)
	}
	return cmd.Process, nil
}

// Pause is the entry point of the pod sandbox's placeholder process: it
// checks that it runs in the network namespace at nsPath (StartPause put
// it there), tells ready so (StartPause gives it a pipe as standard
// output, and closing ready, when it is a Closer, lets go of it), and
// then holds that namespace, doing nothing, until SIGTERM or SIGINT
// (SIGKILL ends it at once) or ctx is done. It returns nil on such a
// stop; an error when it is not in that namespace.
func Pause(ctx context.Context, nsPath string, ready io.Writer) error {
	same, err := netnsdo.Same("/proc/self/ns/net", nsPath)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	if !same {
		return fmt.Errorf("pause: not in the network namespace %s: start it with podnet.StartPause", nsPath)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if _, err := io.WriteString(ready, pauseReady+"\n"); err != nil {
		return fmt.Errorf("pause: tell ready: %w", err)
	}
	if c, ok := ready.(io.Closer); ok {
		c.Close()
	}
	<-ctx.Done()
	return nil
}

// PauseArg is the first argument of the pause process's command line:
// a binary that is its own pause process (the shim) checks for it first
// thing in main, and calls [PauseMain] with the arguments after it.
const PauseArg = "pause"

// PauseCommand is the command of a pod sandbox's pause process for the
// namespace at nsPath: exe (the shim's own executable, os.Executable())
// re-executed with PauseArg, for [StartPause].
func PauseCommand(exe, nsPath string) *exec.Cmd {
	return exec.Command(exe, PauseArg, nsPath)
}

// PauseMain runs [Pause] for the arguments after PauseArg (the
// namespace's path) and returns the process's exit status: 0 once
// stopped, 2 for bad arguments, 1 (with the error on standard error)
// when it is not in that namespace.
func PauseMain(args []string) int {
	if len(args) != 1 || args[0] == "" {
		fmt.Fprintf(os.Stderr, "usage: %s %s NETNS-PATH\n", os.Args[0], PauseArg)
		return 2
	}
	if err := Pause(context.Background(), args[0], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
