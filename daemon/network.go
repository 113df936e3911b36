package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/network"
	"github.com/arrowsys/arrow/run"
)

// Bridge networks: the daemon owns them through a network.Manager, and
// attaches an arrow to its network for the arrow's whole life (created to
// removed), so its address and tap stay the same across restarts.

// errNoBridges is the answer to network requests where they cannot work.
var errNoBridges = errors.New("bridge networks need arrowd to run as root, and only one arrowd on a host has them")

// networkLock is held by the daemon that manages the bridge networks of
// the host's initial network namespace.
const networkLock = "/run/arrow-networks.lock"

// networkLockPath is the lock of the bridge networks of the network
// namespace this daemon runs in. Links and nftables tables are the
// namespace's: one daemon per namespace manages them, so that a daemon in
// a namespace of its own (a test's, beside the host's arrowd) neither
// waits for the host's daemon nor touches its networks. The initial
// namespace keeps the name daemons have always used.
func networkLockPath() (string, error) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return "", fmt.Errorf("this network namespace: %w", err)
	}
	if self.Ino == initNetnsIno {
		return networkLock, nil
	}
	return fmt.Sprintf("/run/arrow-networks-netns-%d.lock", self.Ino), nil
}

// initNetnsIno is the inode number of the initial network namespace, fixed
// by the kernel (PROC_NET_INIT_INO): comparing with PID 1's namespace
// instead would need what a daemon in a container or sandbox may not read.
const initNetnsIno = 0xEFFFFFF9

// openNetworks opens the bridge-network state and brings the kernel back
// in line with it and with the arrows that still exist.
func (d *Daemon) openNetworks() {
	if !d.cfg.BridgeNetworks || os.Geteuid() != 0 {
		return
	}
	// The links and the nftables table are the host's: a second daemon
	// (another data root) reconciling them with its own state would tear
	// down the first one's networks.
	lockPath, err := networkLockPath()
	if err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: bridge networks unavailable: %v\n", err)
		return
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		fmt.Fprintf(d.cfg.Log, "arrowd: bridge networks unavailable: another arrowd in this network namespace manages them (%s: %v)\n", lockPath, err)
		return
	}
	d.netLock = lock
	m, err := network.Open(network.Options{
		StatePath: dataroot.Root(d.cfg.Root).Networks(),
		Logf:      func(f string, args ...any) { fmt.Fprintf(d.cfg.Log, "arrowd: network: "+f+"\n", args...) },
	})
	if err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: bridge networks unavailable: %v\n", err)
		return
	}
	live := make(map[string]bool)
	d.mu.Lock()
	for id := range d.arrows {
		live[id] = true
	}
	d.mu.Unlock()
	if err := m.Reconcile(d.ctx, live); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: reconcile networks: %v\n", err)
	}
	d.nets = m
}

// isBridge reports whether a config's network is a bridge network's name.
func isBridge(name string) bool {
	return name != "" && name != run.NetworkUser && name != run.NetworkNone
}

// attach puts a new arrow on its bridge network, publishing its ports,
// and returns its endpoint and how its runs join the network (nil, nil
// for an arrow without a bridge network).
func (d *Daemon) attach(ctx context.Context, r record) (*api.Endpoint, *run.TapAttachment, error) {
	if !isBridge(r.Config.Network) {
		return nil, nil, nil
	}
	if d.nets == nil {
		return nil, nil, fmt.Errorf("%w: --network %s: %w", ErrInvalid, r.Config.Network, errNoBridges)
	}
	// Its short ID is a name on the network too, as docker's containers'
	// are (compose checks that it is among a container's aliases).
	aliases := slices.Clone(r.Config.NetworkAliases)
	if short := r.ID[:min(12, len(r.ID))]; !slices.ContainsFunc(aliases, func(a string) bool { return strings.EqualFold(a, short) }) {
		aliases = append(aliases, short)
	}
	ep, err := d.nets.Attach(ctx, r.Config.Network, r.ID, r.Name, aliases, r.Config.Ports)
	if err != nil {
		return nil, nil, networkError(err)
	}
	return endpointOf(ep), tapOf(ep), nil
}

// detach takes a removed arrow off its network.
func (d *Daemon) detach(r record) {
	if d.nets == nil || !isBridge(r.Config.Network) {
		return
	}
	if err := d.nets.Detach(context.Background(), r.Config.Network, r.ID); err != nil {
		fmt.Fprintf(d.cfg.Log, "arrowd: detach %s from %s: %v\n", r.Name, r.Config.Network, err)
	}
}

// networkError maps the network package's errors to the API's.
func networkError(err error) error {
	switch {
	case errors.Is(err, network.ErrNotFound):
		return fmt.Errorf("%w: no such network: %w", ErrNotFound, err)
	case errors.Is(err, network.ErrExists), errors.Is(err, network.ErrInUse),
		errors.Is(err, network.ErrPortInUse), errors.Is(err, network.ErrOverlap), errors.Is(err, network.ErrExhausted):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

func endpointOf(ep network.Endpoint) *api.Endpoint {
	e := &api.Endpoint{ID: ep.ArrowID, Name: ep.Name, Aliases: slices.Clone(ep.Aliases), Address: ep.Address.String(), MAC: ep.MAC.String(), Tap: ep.Tap}
	for _, p := range ep.Ports {
		e.Ports = append(e.Ports, network.PortString(p))
	}
	return e
}

// tapOf is what a run needs to join the network through ep's tap.
func tapOf(ep network.Endpoint) *run.TapAttachment {
	t := &run.TapAttachment{
		Name: ep.Tap,
		Interface: guest.Interface{
			MAC: ep.MAC.String(), Address: ep.Address.String(), Gateway: ep.Gateway.String(), MTU: ep.MTU,
		},
	}
	for _, a := range ep.DNS {
		t.DNS = append(t.DNS, a.String())
	}
	return t
}

func networkOf(n network.Info) api.Network {
	out := api.Network{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(), MTU: n.MTU, Created: n.Created, Labels: n.Labels, Endpoints: []api.Endpoint{}}
	for _, ep := range n.Attached {
		out.Endpoints = append(out.Endpoints, *endpointOf(ep))
	}
	return out
}

func (d *Daemon) handleNetworkCreate(w http.ResponseWriter, r *http.Request) {
	var req api.NetworkCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	n, err := d.NetworkCreate(r.Context(), &req)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, n)
}

func (d *Daemon) handleNetworkList(w http.ResponseWriter, r *http.Request) {
	out, _ := d.NetworkList()
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleNetworkInspect(w http.ResponseWriter, r *http.Request) {
	n, err := d.NetworkGet(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

func (d *Daemon) handleNetworkRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.NetworkRemove(r.Context(), r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
