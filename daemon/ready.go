package daemon

import (
	"context"
	"errors"
	"time"
)

// Health states of an arrow with a ready port.
const (
	healthStarting  = "starting"
	healthHealthy   = "healthy"
	healthUnhealthy = "unhealthy"
)

// defaultReadyTimeout bounds the wait for a ready port when the arrow's
// boot timeout does not say.
const defaultReadyTimeout = time.Minute

// probeReady waits for arrow-init to report that the application accepts
// connections on its ready port (only the guest can tell: through QEMU's
// user-mode network the host's connections are accepted either way), and
// records the arrow's health: healthy, or unhealthy after the boot
// timeout.
func (d *Daemon) probeReady(a *arrow, rs *runState) {
	snap := d.snapshot(a)
	timeout := defaultReadyTimeout
	if bt := snap.Config.BootTimeout; bt > 0 {
		timeout = time.Duration(bt * float64(time.Second))
	}
	setHealth := func(h string) {
		_ = d.update(a, func(r *record) {
			if a.run == rs {
				r.Health = h
				if h != healthStarting {
					closeOnce(rs.settled)
				}
			}
		})
	}
	setHealth(healthStarting)
	ctx, cancel := context.WithTimeout(d.ctx, timeout)
	defer cancel()
	st, err := rs.client.WaitHealthy(ctx)
	switch {
	case err == nil && st.Healthy:
		setHealth(healthHealthy)
	case errors.Is(err, context.DeadlineExceeded):
		setHealth(healthUnhealthy)
	}
}

// waitHealthy returns once the run rs, which left starting, is no longer
// starting its health checks (they settled, or the run ended), or ctx
// ends.
func (d *Daemon) waitHealthy(ctx context.Context, rs *runState) {
	select {
	case <-rs.settled:
	case <-rs.ended:
	case <-rs.exited:
	case <-ctx.Done():
	}
}
