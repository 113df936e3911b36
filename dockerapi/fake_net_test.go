package dockerapi

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// netFake is an in-memory Backend for the network, volume and image
// handlers: networks, volumes and arrows in maps, with the daemon's
// sentinel errors. The embedded Backend is nil: a handler that calls a
// method this fake does not have panics, which fails its test.
type netFake struct {
	Backend
	mu      sync.Mutex
	nets    map[string]api.Network
	vols    map[string]api.VolumeInfo
	arrows  []api.Arrow
	nextNet int
	// denyImages makes MayChangeImages refuse, as for a client that is
	// neither root nor the daemon's user.
	denyImages bool
}

func newNetFake() *netFake {
	return &netFake{nets: map[string]api.Network{}, vols: map[string]api.VolumeInfo{}}
}

func (f *netFake) Info() api.Info { return api.Info{Version: "test"} }

func (f *netFake) List(all bool) []api.Arrow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Arrow
	for _, a := range f.arrows {
		if all || a.State == api.Running {
			out = append(out, a)
		}
	}
	return out
}

func (f *netFake) Get(ref string) (api.Arrow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.arrows {
		if a.ID == ref || a.Name == ref {
			return a, nil
		}
	}
	return api.Arrow{}, fmt.Errorf("%w: no such arrow: %s", daemon.ErrNotFound, ref)
}

// addArrow records an arrow on network net (and its endpoint, on a bridge
// network), using volumes vols.
func (f *netFake) addArrow(id, name, net string, state api.State, image string, vols ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := api.Arrow{ID: id, Name: name, State: state}
	a.Config.Network = net
	a.Config.Image = image
	f.arrows = append(f.arrows, a)
	if n, ok := f.nets[net]; ok {
		p := netip.MustParsePrefix(n.Subnet)
		addr := p.Addr().Next().Next()
		for range n.Endpoints {
			addr = addr.Next()
		}
		n.Endpoints = append(n.Endpoints, api.Endpoint{ID: id, Name: name, Address: addr.String(), MAC: "52:54:00:12:34:56"})
		f.nets[net] = n
	}
	for _, v := range vols {
		vi := f.vols[v]
		vi.Arrows = append(vi.Arrows, id)
		vi.InUse = true
		f.vols[v] = vi
	}
}

func (f *netFake) NetworkCreate(ctx context.Context, req *api.NetworkCreateRequest) (api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !api.ValidNetworkName(req.Name) {
		return api.Network{}, fmt.Errorf("%w: network name %q", daemon.ErrInvalid, req.Name)
	}
	if _, ok := f.nets[req.Name]; ok {
		return api.Network{}, fmt.Errorf("%w: network %s exists", daemon.ErrConflict, req.Name)
	}
	subnet := req.Subnet
	if subnet == "" {
		f.nextNet++
		subnet = fmt.Sprintf("10.89.%d.0/24", f.nextNet)
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return api.Network{}, fmt.Errorf("%w: subnet %q", daemon.ErrInvalid, subnet)
	}
	n := api.Network{Name: req.Name, Bridge: "arw-" + req.Name, Subnet: p.String(), Gateway: p.Addr().Next().String(),
		MTU: 1500, Created: time.Unix(1700000000, 0).UTC(), Labels: req.Labels, Endpoints: []api.Endpoint{}}
	f.nets[req.Name] = n
	return n, nil
}

func (f *netFake) NetworkList() ([]api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.Network{}
	for _, n := range f.nets {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *netFake) NetworkGet(name string) (api.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nets[name]
	if !ok {
		return api.Network{}, fmt.Errorf("%w: no such network: %s", daemon.ErrNotFound, name)
	}
	return n, nil
}

func (f *netFake) NetworkRemove(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nets[name]
	switch {
	case !ok:
		return fmt.Errorf("%w: no such network: %s", daemon.ErrNotFound, name)
	case len(n.Endpoints) > 0:
		return fmt.Errorf("%w: network %s: %d arrows attached", daemon.ErrConflict, name, len(n.Endpoints))
	}
	delete(f.nets, name)
	return nil
}

func (f *netFake) VolumeCreate(ctx context.Context, req *api.VolumeCreateRequest) (api.VolumeInfo, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := api.ValidateVolumeName(req.Name); err != nil {
		return api.VolumeInfo{}, false, fmt.Errorf("%w: %w", daemon.ErrInvalid, err)
	}
	if v, ok := f.vols[req.Name]; ok {
		return v, false, nil
	}
	v := api.VolumeInfo{Name: req.Name, Created: time.Unix(1700000000, 0).UTC(), Labels: req.Labels, Mountpoint: "/data/volumes/" + req.Name + "/_data"}
	f.vols[req.Name] = v
	return v, true, nil
}

func (f *netFake) VolumeList(ctx context.Context) ([]api.VolumeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.VolumeInfo{}
	for _, v := range f.vols {
		out = append(out, v)
	}
	return out, nil
}

func (f *netFake) VolumeGet(ctx context.Context, name string) (api.VolumeInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[name]
	if !ok {
		return api.VolumeInfo{}, fmt.Errorf("%w: volume %s", daemon.ErrNotFound, name)
	}
	return v, nil
}

func (f *netFake) VolumeRemove(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[name]
	switch {
	case !ok:
		return fmt.Errorf("%w: volume %s", daemon.ErrNotFound, name)
	case v.InUse:
		return fmt.Errorf("%w: volume %s is in use by %v", daemon.ErrConflict, name, v.Arrows)
	}
	delete(f.vols, name)
	return nil
}

// MayChangeImages refuses when denyImages is set: the daemon's rule is
// tested in package daemon, its use by every image write here.
func (f *netFake) MayChangeImages(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.denyImages {
		return fmt.Errorf("%w: uid 4242 may not change arrowd's image store", daemon.ErrForbidden)
	}
	return nil
}
