package run

import (
	"context"
	"fmt"
)

// Pause stops the VM's virtual CPUs (QMP stop): the application and the
// guest's kernel stand still, their memory kept, until [Handle.Resume].
// QEMU itself runs on, so its monitor, its sockets and the host's end of
// its channels stay open; what reaches the guest waits in them.
func (h *Handle) Pause(ctx context.Context) error {
	if !h.running.Load() {
		return fmt.Errorf("pause: %w", ErrNotRunning)
	}
	if err := h.l.m.Pause(ctx); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	return nil
}

// Resume runs a paused VM's virtual CPUs again (QMP cont). Resuming a VM
// that runs does nothing.
func (h *Handle) Resume(ctx context.Context) error {
	if err := h.l.m.Resume(ctx); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}
