package daemon

import (
	"context"
	"net"
	"net/netip"
	"strconv"
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

// readyAddr is where the daemon connects to check a's ready port: the
// arrow's address on its bridge network, or the host side of the
// published port in user mode.
func readyAddr(a api.Arrow) (string, bool) {
	port := a.Config.ReadyPort
	if port == 0 {
		return "", false
	}
	if a.Endpoint != nil {
		if p, err := netip.ParsePrefix(a.Endpoint.Address); err == nil {
			return net.JoinHostPort(p.Addr().String(), strconv.Itoa(port)), true
		}
		return "", false
	}
	for _, p := range a.Config.Ports {
		if p.GuestPort == port && (p.Proto == "" || p.Proto == "tcp") {
			host := p.HostIP
			if host == "" || host == "0.0.0.0" {
				host = "127.0.0.1"
			}
			return net.JoinHostPort(host, strconv.Itoa(p.HostPort)), true
		}
	}
	return "", false
}

// probeReady connects to a's ready port until a connection succeeds, the
// run ends, or the timeout passes, and records the arrow's health.
func (d *Daemon) probeReady(a *arrow, rs *runState) {
	snap := d.snapshot(a)
	addr, ok := readyAddr(snap)
	if !ok {
		return
	}
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
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			setHealth(healthHealthy)
			return
		}
		if time.Now().After(deadline) {
			setHealth(healthUnhealthy)
			return
		}
		select {
		case <-rs.exited:
			return
		case <-d.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
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
