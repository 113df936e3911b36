package containerdshim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/podnet"
)

// A CRI pod's sandbox task boots no VM. Its one job, for the CRI plugin,
// is a process whose /proc/PID/ns/net is the pod's network namespace: the
// plugin names that path in every container of the pod, and the
// containers' VMs get their taps there (podnet.go). So the shim starts a
// pause process of its own (itself re-executed with podnet.PauseArg)
// inside the namespace CNI set up, at Create, since the plugin reads the
// sandbox's pid from Create's answer.

// isSandbox says whether a task is a CRI pod's sandbox (its "pause"
// container) rather than one of the pod's application containers.
func isSandbox(spec *specs.Spec) bool {
	return spec != nil && podnet.IsSandbox(spec.Annotations)
}

// createSandbox starts the pause process of sandbox task c in the pod's
// network namespace. A pod without one (hostNetwork) is refused: a VM
// cannot be put on the host's own network stack, and a pod whose
// containers quietly got another network than asked would be worse.
func (s *service) createSandbox(ctx context.Context, c *container, spec *specs.Spec) error {
	ns := NetNSPath(spec)
	if ns == "" {
		return errors.New("pod sandbox without a network namespace (hostNetwork): the arrow runtime runs a pod's containers in VMs, which cannot share the host's network")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("pod sandbox: %w", err)
	}
	cmd := podnet.PauseCommand(exe, ns)
	if _, err := podnet.StartPause(ctx, ns, cmd); err != nil {
		return err
	}
	c.sandbox, c.pid = cmd, cmd.Process.Pid
	c.sandboxDone = make(chan struct{})
	go func() {
		// Reap it as soon as it ends, whether the task started or not.
		err := cmd.Wait()
		c.sandboxExit = exitStatus(cmd.ProcessState, err)
		close(c.sandboxDone)
	}()
	return nil
}

// exitStatus is a host process's status as a shell reports it.
func exitStatus(ps *os.ProcessState, err error) uint32 {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + uint32(ws.Signal())
	}
	return uint32(ps.ExitCode())
}

// waitSandbox records the end of a sandbox's pause process.
func (s *service) waitSandbox(c *container, p *process) {
	<-c.sandboxDone
	s.exited(c, p, c.sandboxExit)
}

// signalSandbox sends sig to a sandbox's pause process (SIGTERM ends it
// with status 0, as a pause container's does).
func (c *container) signalSandbox(sig syscall.Signal) error {
	select {
	case <-c.sandboxDone:
		return errors.New("the pod sandbox's process has ended")
	default:
	}
	return c.sandbox.Process.Signal(sig)
}

// stopSandbox kills the pause process and waits for it to be reaped.
func (c *container) stopSandbox() {
	if c.sandbox == nil || c.sandbox.Process == nil {
		return
	}
	_ = c.sandbox.Process.Kill()
	<-c.sandboxDone
}

// isSandboxTask says whether c is a pod sandbox (no VM, a pause process).
func (c *container) isSandboxTask() bool { return c.sandbox != nil }
