package dockerapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/daemon"
)

// Networks. Docker's three predefined networks are Arrow's own:
//
//	bridge  Arrow's default network, QEMU's user-mode network (Config.Network
//	        "" or "user"): every VM is 10.0.2.15 behind its own NAT, so its
//	        arrows do not reach one another, and it has no bridge on the host.
//	none    loopback only (Config.Network "none").
//	host    listed because docker lists it; Arrow has no host networking (a VM
//	        has its own kernel), which the container endpoints say.
//
// Every other network is one of Arrow's bridge networks (package network).
// Docker's network IDs are 64 hex digits: Arrow's are the SHA-256 of the
// network's name, stable across restarts, and [netID] gives them to the
// container endpoints too. Names, IDs and unique ID prefixes all find a
// network.

// The user-mode network as its guests see it (vm.DefaultUserNet, QEMU's
// default): every VM has the same address.
var (
	userSubnet  = netip.MustParsePrefix("10.0.2.0/24")
	userGateway = netip.MustParseAddr("10.0.2.2")
	userGuest   = netip.MustParsePrefix("10.0.2.15/24")
)

// netID is the Docker ID of the network named name.
func netID(name string) string {
	sum := sha256.Sum256([]byte("arrow network\x00" + name))
	return hex.EncodeToString(sum[:])
}

// netEndpointID is the Docker endpoint ID of arrow id on network name.
func netEndpointID(name, id string) string {
	sum := sha256.Sum256([]byte("arrow endpoint\x00" + name + "\x00" + id))
	return hex.EncodeToString(sum[:])
}

// netPredefined are Docker's predefined networks, in docker's order.
var netPredefined = []string{network.NetworkBridge, network.NetworkHost, network.NetworkNone}

// netArrowNetwork is the Config.Network of arrows on the predefined
// network name; ok false for host, which Arrow lacks.
func netArrowNetwork(name string) (arrowNet []string, ok bool) {
	switch name {
	case network.NetworkBridge:
		return []string{"", "user"}, true
	case network.NetworkNone:
		return []string{"none"}, true
	}
	return nil, false
}

func (s *Server) networkRoutes() []route {
	return []route{
		{"GET /networks", s.networkList},
		{"GET /networks/{id}", s.networkInspect},
		{"POST /networks/create", s.networkCreate},
		{"DELETE /networks/{id}", s.networkDelete},
		{"POST /networks/{id}/connect", s.networkConnect},
		{"POST /networks/{id}/disconnect", s.networkDisconnect},
		{"POST /networks/prune", s.networkPrune},
	}
}

// netAll is every network in Docker's shape: the predefined ones, then
// Arrow's bridge networks by name. An Arrow network named like a
// predefined one (`arrow network create host`) is hidden by it.
func (s *Server) netAll() ([]network.Inspect, error) {
	nets, err := s.b.NetworkList()
	if err != nil {
		return nil, err
	}
	arrows := s.b.List(true)
	out := make([]network.Inspect, 0, len(nets)+3)
	for _, name := range netPredefined {
		out = append(out, netPredefinedInspect(name, arrows))
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
	for _, n := range nets {
		if slices.Contains(netPredefined, n.Name) {
			continue
		}
		out = append(out, netInspect(n))
	}
	return out, nil
}

// netPredefinedInspect describes a predefined network and the arrows on
// it that run (docker lists a container on a network while it runs).
func netPredefinedInspect(name string, arrows []api.Arrow) network.Inspect {
	n := network.Inspect{
		Network: network.Network{
			Name: name, ID: netID(name), Scope: "local", Driver: name,
			EnableIPv4: name == network.NetworkBridge,
			IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			Options:    map[string]string{}, Labels: map[string]string{},
		},
		Containers: map[string]network.EndpointResource{},
	}
	if name == network.NetworkHost || name == network.NetworkNone {
		n.Driver = map[string]string{network.NetworkHost: "host", network.NetworkNone: "null"}[name]
	}
	if name == network.NetworkBridge {
		n.IPAM.Config = []network.IPAMConfig{{Subnet: userSubnet, Gateway: userGateway}}
	}
	modes, _ := netArrowNetwork(name)
	for _, a := range arrows {
		if !slices.Contains(modes, a.Config.Network) || a.State != api.Running && a.State != api.Starting {
			continue
		}
		ep := network.EndpointResource{Name: a.Name, EndpointID: netEndpointID(name, a.ID)}
		if name == network.NetworkBridge {
			ep.IPv4Address = userGuest
		}
		n.Containers[a.ID] = ep
	}
	return n
}

// netInspect translates one of Arrow's bridge networks.
func netInspect(n api.Network) network.Inspect {
	out := network.Inspect{
		Network: network.Network{
			Name: n.Name, ID: netID(n.Name), Created: n.Created, Scope: "local", Driver: "bridge",
			EnableIPv4: true,
			IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			// No options: dockerd reports none for a network created
			// without, and compose compares them with its file's.
			Options: map[string]string{},
			Labels:  n.Labels,
		},
		Containers: map[string]network.EndpointResource{},
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	subnet, err := netip.ParsePrefix(n.Subnet)
	if err == nil {
		c := network.IPAMConfig{Subnet: subnet}
		if gw, err := netip.ParseAddr(n.Gateway); err == nil {
			c.Gateway = gw
		}
		out.IPAM.Config = append(out.IPAM.Config, c)
	}
	for _, ep := range n.Endpoints {
		r := network.EndpointResource{Name: ep.Name, EndpointID: netEndpointID(n.Name, ep.ID)}
		// The daemon gives the address with its prefix length
		// ("10.89.0.2/24"); a bare address takes the subnet's.
		if p, err := netip.ParsePrefix(ep.Address); err == nil {
			r.IPv4Address = p
		} else if a, err := netip.ParseAddr(ep.Address); err == nil && subnet.IsValid() {
			r.IPv4Address = netip.PrefixFrom(a, subnet.Bits())
		}
		if mac, err := net.ParseMAC(ep.MAC); err == nil {
			r.MacAddress = network.HardwareAddr(mac)
		}
		out.Containers[ep.ID] = r
	}
	return out
}

// netFind finds ref among nets: a whole ID, a name, then a unique ID
// prefix, as dockerd looks networks up.
func netFind(nets []network.Inspect, ref string) (network.Inspect, error) {
	if ref == "" {
		return network.Inspect{}, fmt.Errorf("%w: network name or ID is empty", daemon.ErrInvalid)
	}
	for _, n := range nets {
		if n.ID == ref {
			return n, nil
		}
	}
	for _, n := range nets {
		if n.Name == ref {
			return n, nil
		}
	}
	var found []network.Inspect
	for _, n := range nets {
		if strings.HasPrefix(n.ID, ref) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return network.Inspect{}, fmt.Errorf("%w: network %s not found", daemon.ErrNotFound, ref)
	}
	return network.Inspect{}, fmt.Errorf("%w: network %s is ambiguous (%d matches found on name)", daemon.ErrInvalid, ref, len(found))
}

// netFilter compiles the list and prune filters.
func netFilter(f resFilters, now time.Time) (func(network.Inspect) bool, error) {
	dangling, hasDangling, err := f.boolValue("dangling")
	if err != nil {
		return nil, err
	}
	for _, t := range f.values("type") {
		if t != "custom" && t != "builtin" {
			return nil, fmt.Errorf("%w: type: invalid value %q, want custom or builtin", errInvalidFilter, t)
		}
	}
	var until time.Time
	for _, v := range f.values("until") {
		if until, err = parseUntil(v, now); err != nil {
			return nil, err
		}
	}
	return func(n network.Inspect) bool {
		builtin := slices.Contains(netPredefined, n.Name)
		switch {
		case !matchAny(f["name"], func(v string) bool { return strings.Contains(n.Name, v) }),
			!matchAny(f["id"], func(v string) bool { return strings.HasPrefix(n.ID, v) }),
			!matchAny(f["driver"], func(v string) bool { return v == n.Driver }),
			!matchAny(f["scope"], func(v string) bool { return v == n.Scope }),
			!matchAny(f["type"], func(v string) bool { return (v == "builtin") == builtin }),
			!matchLabelFilter(f["label"], n.Labels, false),
			!matchLabelFilter(f["label!"], n.Labels, true),
			hasDangling && dangling != (len(n.Containers) == 0 && !builtin),
			!until.IsZero() && !builtin && !n.Created.Before(until):
			return false
		}
		return true
	}, nil
}

// networkList answers GET /networks.
func (s *Server) networkList(w http.ResponseWriter, r *http.Request) {
	f, err := parseResFilters(r, "name", "id", "label", "driver", "type", "scope", "dangling")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	keep, err := netFilter(f, time.Now())
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return
	}
	out := []network.Summary{}
	for _, n := range all {
		if keep(n) {
			out = append(out, network.Summary{Network: n.Network})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// networkInspect answers GET /networks/{id}.
func (s *Server) networkInspect(w http.ResponseWriter, r *http.Request) {
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return
	}
	n, err := netFind(all, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// netCreateLacks says what of req Arrow's bridge networks cannot do, ""
// when nothing.
func netCreateLacks(req *network.CreateRequest) string {
	switch {
	case req.Driver != "" && req.Driver != "bridge":
		return fmt.Sprintf("the network driver %q: Arrow's networks are bridges (driver bridge)", req.Driver)
	case req.Scope != "" && req.Scope != "local":
		return fmt.Sprintf("the network scope %q: Arrow's networks are local", req.Scope)
	case req.Internal:
		return "internal networks: Arrow's bridge networks always masquerade traffic out"
	case req.EnableIPv6 != nil && *req.EnableIPv6:
		return "IPv6 on networks: Arrow's bridge networks are IPv4 only"
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return "networks without IPv4: Arrow's bridge networks are IPv4"
	case req.Ingress:
		return "ingress networks: Arrow has no swarm mode"
	case req.ConfigOnly || req.ConfigFrom != nil && req.ConfigFrom.Network != "":
		return "config-only networks: Arrow has no swarm mode"
	case len(req.Options) > 0:
		keys := make([]string, 0, len(req.Options))
		for k := range req.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Sprintf("network driver options (%s): Arrow's bridge networks take none", strings.Join(keys, ", "))
	}
	if req.IPAM == nil {
		return ""
	}
	switch {
	case req.IPAM.Driver != "" && req.IPAM.Driver != "default":
		return fmt.Sprintf("the IPAM driver %q: Arrow assigns addresses itself", req.IPAM.Driver)
	case len(req.IPAM.Options) > 0:
		return "IPAM options: Arrow assigns addresses itself"
	case len(req.IPAM.Config) > 1:
		return "several subnets on one network: an Arrow network has one IPv4 subnet"
	}
	for _, c := range req.IPAM.Config {
		switch {
		case c.Subnet.IsValid() && !c.Subnet.Addr().Is4():
			return "IPv6 subnets: Arrow's bridge networks are IPv4 only"
		case c.IPRange.IsValid():
			return "an IP range within the subnet: Arrow hands out addresses from the whole subnet"
		case len(c.AuxAddress) > 0:
			return "auxiliary addresses: Arrow reserves none"
		case c.Gateway.IsValid() && (!c.Subnet.IsValid() || c.Gateway != c.Subnet.Masked().Addr().Next()):
			return fmt.Sprintf("the gateway %s: an Arrow network's gateway is the first address of its subnet", c.Gateway)
		}
	}
	return ""
}

// networkCreate answers POST /networks/create. Duplicate names are always
// refused (CheckDuplicate, which old clients send, is the only behaviour
// since API 1.44); Attachable means nothing on a local network.
func (s *Server) networkCreate(w http.ResponseWriter, r *http.Request) {
	var req network.CreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name == "" {
		writeError(w, http.StatusBadRequest, "network name is empty")
		return
	}
	if slices.Contains(netPredefined, req.Name) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s is a pre-defined network and cannot be created", req.Name))
		return
	}
	if what := netCreateLacks(&req); what != "" {
		lacks(w, what)
		return
	}
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return
	}
	if slices.ContainsFunc(all, func(n network.Inspect) bool { return n.Name == req.Name }) {
		writeError(w, http.StatusConflict, fmt.Sprintf("network with name %s already exists", req.Name))
		return
	}
	areq := api.NetworkCreateRequest{Name: req.Name, Labels: req.Labels}
	if req.IPAM != nil && len(req.IPAM.Config) == 1 && req.IPAM.Config[0].Subnet.IsValid() {
		areq.Subnet = req.IPAM.Config[0].Subnet.String()
	}
	n, err := s.b.NetworkCreate(r.Context(), &areq)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: netID(n.Name)})
}

// networkDelete answers DELETE /networks/{id}.
func (s *Server) networkDelete(w http.ResponseWriter, r *http.Request) {
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return
	}
	n, err := netFind(all, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if slices.Contains(netPredefined, n.Name) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s is a pre-defined network and cannot be removed", n.Name))
		return
	}
	if users := s.netConfiguredUsers(n.Name); len(users) > 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("error while removing network: network %s id %s has active endpoints (arrows %s)", n.Name, n.ID, strings.Join(users, ", ")))
		return
	}
	if err := s.b.NetworkRemove(r.Context(), n.Name); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// netConfiguredUsers names the arrows whose config names the network,
// running or not: a network they would not find at their next start must
// not go, whether or not the daemon holds an endpoint for them now.
func (s *Server) netConfiguredUsers(name string) []string {
	var out []string
	for _, a := range s.b.List(true) {
		if a.Config.Network == name {
			out = append(out, a.Name)
		}
	}
	sort.Strings(out)
	return out
}

// networkConnect answers POST /networks/{id}/connect. An arrow's VM has
// its network card from its start, so Arrow cannot connect a running
// arrow, and arrowd cannot yet move a created one to another network:
// both are 501, saying so. Connecting an arrow to the network it is on
// already, with no alias beyond those it has, is what it is: done.
func (s *Server) networkConnect(w http.ResponseWriter, r *http.Request) {
	var req network.ConnectRequest
	if !decodeBody(w, r, &req) {
		return
	}
	n, a, ok := s.netAndArrow(w, r, req.Container)
	if !ok {
		return
	}
	if netOfArrow(a) == n.Name {
		var want []string
		if req.EndpointConfig != nil {
			want = req.EndpointConfig.Aliases
		}
		extra := slices.DeleteFunc(slices.Clone(want), func(al string) bool {
			// Its name, its ID or short ID (docker's own aliases), and
			// the aliases it was created with.
			return al == a.Name || al == a.ID || len(al) >= 12 && strings.HasPrefix(a.ID, al) || slices.Contains(a.Config.NetworkAliases, al)
		})
		ec := req.EndpointConfig
		if len(extra) == 0 && (ec == nil || ec.IPAMConfig == nil && len(ec.Links) == 0) {
			w.WriteHeader(http.StatusOK)
			return
		}
		var what string
		switch {
		case len(extra) > 0:
			what = "aliases " + strings.Join(extra, ", ")
		case len(ec.Links) > 0:
			what = "links " + strings.Join(ec.Links, ", ")
		default:
			what = "a fixed address"
		}
		lacks(w, fmt.Sprintf("changing the endpoint of %s on %s (%s): arrowd sets an arrow's aliases and address when it is created; give them at docker create (--network-alias)", a.Name, n.Name, what))
		return
	}
	if a.State == api.Running || a.State == api.Starting || a.State == api.Restarting {
		lacks(w, fmt.Sprintf("connecting the running %s to network %s: a microVM has its network card from its start; create the container on that network (docker run --network %s)", a.Name, n.Name, n.Name))
		return
	}
	lacks(w, fmt.Sprintf("connecting %s, which is not running, to network %s: arrowd cannot yet change a created arrow's network, and an arrow has one network; create the container on that network (docker create --network %s)", a.Name, n.Name, n.Name))
}

// networkDisconnect answers POST /networks/{id}/disconnect: 501 for the
// same reasons as connect; an arrow that is not on the network is 404
// as in docker... unless force, which docker answers with success.
func (s *Server) networkDisconnect(w http.ResponseWriter, r *http.Request) {
	var req network.DisconnectRequest
	if !decodeBody(w, r, &req) {
		return
	}
	n, a, ok := s.netAndArrow(w, r, req.Container)
	if !ok {
		return
	}
	if netOfArrow(a) != n.Name {
		writeError(w, http.StatusForbidden, fmt.Sprintf("container %s is not connected to network %s", a.Name, n.Name))
		return
	}
	lacks(w, fmt.Sprintf("disconnecting %s from network %s: a microVM keeps its network card for its life, and an arrow is on exactly one network; remove the container instead", a.Name, n.Name))
}

// netOfArrow is the Docker network name of the arrow's network.
func netOfArrow(a api.Arrow) string {
	switch a.Config.Network {
	case "", "user":
		return network.NetworkBridge
	}
	return a.Config.Network
}

// netAndArrow finds the network of the path and the arrow ref names.
func (s *Server) netAndArrow(w http.ResponseWriter, r *http.Request, ref string) (network.Inspect, api.Arrow, bool) {
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return network.Inspect{}, api.Arrow{}, false
	}
	n, err := netFind(all, r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return network.Inspect{}, api.Arrow{}, false
	}
	if ref == "" {
		writeError(w, http.StatusBadRequest, "Container is empty: name the container to connect or disconnect")
		return network.Inspect{}, api.Arrow{}, false
	}
	a, err := s.b.Get(ref)
	if err != nil {
		if errors.Is(err, daemon.ErrNotFound) {
			writeError(w, http.StatusNotFound, "No such container: "+ref)
		} else {
			writeErr(w, err)
		}
		return network.Inspect{}, api.Arrow{}, false
	}
	return n, a, true
}

// networkPrune answers POST /networks/prune: Arrow's bridge networks that
// no arrow is attached to or names in its config.
func (s *Server) networkPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseResFilters(r, "label", "label!", "until")
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	keep, err := netFilter(f, time.Now())
	if err != nil {
		imgWriteErr(w, err)
		return
	}
	all, err := s.netAll()
	if err != nil {
		writeErr(w, err)
		return
	}
	rep := network.PruneReport{NetworksDeleted: []string{}}
	for _, n := range all {
		if slices.Contains(netPredefined, n.Name) || len(n.Containers) > 0 || !keep(n) || len(s.netConfiguredUsers(n.Name)) > 0 {
			continue
		}
		if err := s.b.NetworkRemove(r.Context(), n.Name); err != nil {
			// In use by now, or gone: not pruned, not an error.
			fmt.Fprintf(s.opts.Log, "dockerapi: network prune %s: %v\n", n.Name, err)
			continue
		}
		rep.NetworksDeleted = append(rep.NetworksDeleted, n.Name)
	}
	writeJSON(w, http.StatusOK, rep)
}
