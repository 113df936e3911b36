package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/logs"
	"github.com/arrowsys/arrow/shim"
	"github.com/arrowsys/arrow/volume"
)

// The daemon's operations as methods, for the front ends beside its own
// HTTP API (the Docker Engine API of package dockerapi): each handler of
// http.go, network.go and volumes.go is a thin layer over one of them.

// Info describes the daemon.
func (d *Daemon) Info() api.Info {
	all := d.List(true)
	running := 0
	for _, a := range all {
		if a.State == api.Running || a.State == api.Starting {
			running++
		}
	}
	info := api.Info{Version: d.cfg.Version, Root: d.cfg.Root, Accel: d.accel.Name, AccelReason: d.accel.Reason, Arrows: len(all), Running: running}
	if d.cg != nil {
		info.Cgroups = fmt.Sprintf("v%d", d.cg.Version())
	}
	return info
}

// Start starts an arrow that is not running (StartExisting): one created
// with NoStart, or one that ended. Attaches waiting for it are joined
// before its application starts (see attach.go).
func (d *Daemon) Start(ctx context.Context, ref string) (api.Arrow, error) {
	return d.StartExisting(ctx, ref)
}

// Logs passes the arrow's log entries to f as logs.Read does; with
// opts.Follow until the arrow ends (and is not restarting) or ctx ends. An
// arrow that never ran has an empty log.
func (d *Daemon) Logs(ctx context.Context, ref string, opts logs.ReadOptions, f func(logs.Entry) error) error {
	a, err := d.resolve(ref)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Follow {
		go d.cancelWhenDone(ctx, a, cancel)
	}
	err = logs.Read(ctx, d.snapshot(a).LogPath, opts, f)
	if errors.Is(err, fs.ErrNotExist) || ctx.Err() != nil {
		return nil
	}
	return err
}

// Exec starts a process in the running arrow and returns the shim's
// stream for it (see POST /v1/arrows/{ref}/exec).
func (d *Daemon) Exec(ctx context.Context, ref string, cfg *api.ExecConfig) (net.Conn, *bufio.Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	a, err := d.resolve(ref)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	rs := a.run
	d.mu.Unlock()
	name := d.snapshot(a).Name
	// Not running here, or no longer by the time the shim is asked: one
	// answer either way.
	notRunning := fmt.Errorf("%w: %s is not running: exec runs a process next to a running application", ErrConflict, name)
	if rs == nil {
		return nil, nil, notRunning
	}
	paused := fmt.Errorf("%w: %s is paused: unpause it first", ErrConflict, name)
	if d.snapshot(a).Paused {
		return nil, nil, paused
	}
	sconn, sbr, err := rs.client.Exec(ctx, cfg)
	var refused *shim.StatusError
	switch {
	case errors.As(err, &refused) && refused.Code == http.StatusConflict && d.snapshot(a).Paused:
		return nil, nil, paused
	case errors.As(err, &refused) && refused.Code == http.StatusConflict:
		return nil, nil, notRunning
	case errors.As(err, &refused) && refused.Code == http.StatusBadRequest:
		return nil, nil, fmt.Errorf("%w: %s", ErrInvalid, refused.Message)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrConflict, name, err)
	}
	return sconn, sbr, nil
}

// AttachNext is the Docker API's attach (dockerapi.Backend): registered
// when it returns (see OpenAttach), so that the client can be answered
// and start the arrow without missing output; its stream from wait.
func (d *Daemon) AttachNext(ctx context.Context, ref string, stdinOnce bool) (wait func(context.Context) (net.Conn, *bufio.Reader, error), cancel func(), err error) {
	at, err := d.OpenAttach(ctx, ref, AttachOptions{StdinOnce: stdinOnce})
	if err != nil {
		return nil, nil, err
	}
	return at.Wait, at.Cancel, nil
}

// Events delivers the daemon's events until ctx ends or the subscriber
// falls behind; the channel is closed then.
func (d *Daemon) Events(ctx context.Context) <-chan api.Event {
	in := d.events.subscribe()
	out := make(chan api.Event)
	go func() {
		defer close(out)
		defer d.events.unsubscribe(in)
		for {
			select {
			case e, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// NetworkCreate creates a bridge network.
func (d *Daemon) NetworkCreate(ctx context.Context, req *api.NetworkCreateRequest) (api.Network, error) {
	if d.nets == nil {
		return api.Network{}, fmt.Errorf("%w: %w", ErrInvalid, errNoBridges)
	}
	if err := req.Validate(); err != nil {
		return api.Network{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var subnet netip.Prefix
	if req.Subnet != "" {
		var err error
		if subnet, err = netip.ParsePrefix(req.Subnet); err != nil || !subnet.Addr().Is4() {
			return api.Network{}, fmt.Errorf("%w: subnet %q: want an IPv4 prefix such as 10.89.1.0/24", ErrInvalid, req.Subnet)
		}
	}
	n, err := d.nets.Create(ctx, req.Name, subnet, req.Labels)
	if err != nil {
		return api.Network{}, networkError(err)
	}
	return networkOf(n), nil
}

// NetworkList lists the bridge networks.
func (d *Daemon) NetworkList() ([]api.Network, error) {
	out := []api.Network{}
	if d.nets != nil {
		for _, n := range d.nets.List() {
			out = append(out, networkOf(n))
		}
	}
	return out, nil
}

// NetworkGet describes one bridge network.
func (d *Daemon) NetworkGet(name string) (api.Network, error) {
	if d.nets == nil {
		return api.Network{}, fmt.Errorf("%w: no such network: %s", ErrNotFound, name)
	}
	n, err := d.nets.Get(name)
	if err != nil {
		return api.Network{}, networkError(err)
	}
	return networkOf(n), nil
}

// NetworkRemove removes a bridge network no arrow is attached to.
func (d *Daemon) NetworkRemove(ctx context.Context, name string) error {
	if d.nets == nil {
		return fmt.Errorf("%w: no such network: %s", ErrNotFound, name)
	}
	return networkError(d.nets.Remove(ctx, name))
}

// VolumeCreate creates a named volume; created is false when it existed.
func (d *Daemon) VolumeCreate(ctx context.Context, req *api.VolumeCreateRequest) (v api.VolumeInfo, created bool, err error) {
	vs, err := d.volumes()
	if err != nil {
		return v, false, err
	}
	if err := req.Validate(); err != nil {
		return v, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	v, created, err = vs.Create(ctx, req.Name, req.Labels)
	return v, created, volumeError(err)
}

// VolumeList lists the named volumes.
func (d *Daemon) VolumeList(ctx context.Context) ([]api.VolumeInfo, error) {
	vs, err := d.volumes()
	if err != nil {
		return nil, err
	}
	out, err := vs.List(ctx)
	if out == nil {
		out = []volume.Volume{}
	}
	return out, err
}

// VolumeGet describes one named volume.
func (d *Daemon) VolumeGet(ctx context.Context, name string) (api.VolumeInfo, error) {
	vs, err := d.volumes()
	if err != nil {
		return api.VolumeInfo{}, err
	}
	v, err := vs.Get(ctx, name)
	return v, volumeError(err)
}

// VolumeRemove removes a named volume no arrow names (force does not
// change that: a volume an arrow names goes after the arrow).
func (d *Daemon) VolumeRemove(ctx context.Context, name string) error {
	vs, err := d.volumes()
	if err != nil {
		return err
	}
	return volumeError(vs.Remove(ctx, name, false))
}

// VolumePrune removes the volumes no arrow names.
func (d *Daemon) VolumePrune(ctx context.Context) (api.VolumePruneResponse, error) {
	vs, err := d.volumes()
	if err != nil {
		return api.VolumePruneResponse{}, err
	}
	st, err := vs.Prune(ctx)
	if st.Removed == nil {
		st.Removed = []string{}
	}
	return st, err
}

// Pause stops the arrow's VM (QMP stop) until Unpause.
func (d *Daemon) Pause(ctx context.Context, ref string) error {
	return d.pause(ctx, ref)
}

// Unpause continues a paused arrow's VM.
func (d *Daemon) Unpause(ctx context.Context, ref string) error {
	return d.unpause(ctx, ref)
}

// Rename gives the arrow a new name (see pause.go).
func (d *Daemon) Rename(ctx context.Context, ref, name string) error {
	return d.rename(ctx, ref, name)
}

// MayChangeImages answers ErrForbidden unless the client (ctx's peer) is
// root or the daemon's own user. Arrow's own API changes no image: the
// CLI writes the store with its user's rights, which for root's store
// means root. The Docker API's load, pull, tag, rmi and prune write it
// for the daemon, so they are held to the same rule: another client could
// otherwise take a name root runs (docker tag evil alpine) or remove
// images others use.
func (d *Daemon) MayChangeImages(ctx context.Context) error {
	who := peerOf(ctx)
	if who.unrestricted(os.Geteuid()) {
		return nil
	}
	return fmt.Errorf("%w: %s may not change arrowd's image store: only root and arrowd's own user load, pull, tag and remove images", ErrForbidden, who)
}
