package containerdshim

import (
	"context"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/podnet"
	"github.com/arrowsys/arrow/run"
)

// podNetworkName is the api.Config Network of a task attached to a pod's
// network namespace through a tap (run requires a name other than user
// or none with a Tap).
const podNetworkName = "pod"

// podNetwork attaches container task c, whose spec names the network
// namespace nsPath (a CRI pod's: /proc/PID/ns/net of the sandbox's pause
// process), to that namespace with package podnet: o gets the tap its
// VM's QEMU is to use, and c what releases the attachment on delete.
//
// The shim holds the namespace open for as long as the task is
// attached and hands podnet the path of that descriptor, not nsPath:
// the CRI plugin may stop the sandbox before it deletes the pod's
// containers, and once the pause process is gone /proc/PID/ns/net
// names nothing, yet the tap and the pod's rules must still be taken
// out of that same namespace.
func (s *service) podNetwork(ctx context.Context, c *container, spec *specs.Spec, nsPath string, o *run.Options) error {
	po, err := podnet.OptionsFor(spec.Annotations, resolvConfSource(spec), "")
	if err != nil {
		return err
	}
	f, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	held := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
	tap, detach, err := podnet.Network(ctx, held, c.id, po, func(format string, a ...any) {
		fmt.Fprintf(s.log, "containerd-shim-arrow: %s: "+format+"\n", append([]any{c.id}, a...)...)
	})
	if err != nil {
		f.Close()
		return err
	}
	c.netns, c.netCleanup, o.Tap = f, detach, tap
	return nil
}

// resolvConfSource is the host file a spec mounts at /etc/resolv.conf
// (CRI writes the pod's there), or "".
func resolvConfSource(spec *specs.Spec) string {
	for _, m := range spec.Mounts {
		if m.Destination == podnet.ResolvConfPath {
			return m.Source
		}
	}
	return ""
}
