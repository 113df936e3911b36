package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/arrowsys/arrow/api"
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

// waitHealthy returns once a's run rs is no longer starting its health
// checks, or ctx ends.
func (d *Daemon) waitHealthy(ctx context.Context, a *arrow, rs *runState) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		d.mu.Lock()
		h, st, same := a.rec.Health, a.rec.State, a.run == rs
		d.mu.Unlock()
		if !same || st != api.Running || (h != "" && h != healthStarting) {
			return
		}
		select {
		case <-rs.exited:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
