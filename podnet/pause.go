package podnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/arrowsys/arrow/internal/netnsdo"
)

// StartPause starts cmd, the pod sandbox's placeholder process (the shim
// re-executing itself as `containerd-shim-arrow-v1 pause NSPATH`, whose
// main calls [Pause]), inside the pod network namespace at nsPath. The
// CRI plugin then names /proc/<its pid>/ns/net as the network namespace
// of the pod's containers, which [Attach] is given.
//
// The process is forked by a thread that entered the namespace, so it
// runs there from its first instruction, every thread of it: a Go
// program cannot move itself whole (setns moves one thread, and
// /proc/PID/ns/net shows the main thread's). Its standard streams are
// /dev/null unless cmd sets them; it gets a process group of its own, so
// that a terminal's signals to the shim do not reach it. The caller waits
// for it (cmd.Wait) and stops it with SIGTERM or SIGKILL.
func StartPause(nsPath string, cmd *exec.Cmd) (*os.Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	err := netnsdo.Do(nsPath, func() error { return cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("pod sandbox process in %s: %w", nsPath, err)
	}
	return cmd.Process, nil
}

// Pause is the entry point of the pod sandbox's placeholder process: it
// checks that it runs in the network namespace at nsPath (StartPause put
// it there) and then holds that namespace, doing nothing, until SIGTERM
// or SIGINT (SIGKILL ends it at once) or ctx is done. It returns nil on
// such a stop; an error when it is not in that namespace.
func Pause(ctx context.Context, nsPath string) error {
	same, err := netnsdo.Same("/proc/self/ns/net", nsPath)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	if !same {
		return fmt.Errorf("pause: not in the network namespace %s: start it with podnet.StartPause", nsPath)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return nil
}
