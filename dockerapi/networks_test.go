package dockerapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/arrowsys/arrow/api"
)

// netServer is a Server over the fake backend, without an image store.
func netServer(t *testing.T, f *netFake) *Server {
	t.Helper()
	return New(Options{Backend: f, Version: "test", Root: t.TempDir()})
}

// netDo sends a request to s and returns the status and body.
func netDo(t *testing.T, s *Server, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// netDecode decodes body into v, failing the test on error.
func netDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

func netFilters(f map[string][]string) string {
	b, _ := json.Marshal(f)
	return url.QueryEscape(string(b))
}

func TestNetID(t *testing.T) {
	a, b := netID("web"), netID("web")
	if a != b || len(a) != 64 || !isHexID(a) {
		t.Fatalf("netID(web) = %q, %q: want one stable 64-hex ID", a, b)
	}
	if netID("db") == a {
		t.Fatal("two names, one ID")
	}
}

func TestNetFind(t *testing.T) {
	nets := []network.Inspect{
		{Network: network.Network{Name: "web", ID: netID("web")}},
		{Network: network.Network{Name: "db", ID: netID("db")}},
		// A network whose name is another's ID prefix: the name wins.
		{Network: network.Network{Name: netID("db")[:6], ID: netID("x")}},
	}
	for _, tc := range []struct {
		ref, want string
		code      int
	}{
		{"web", "web", 0},
		{netID("web"), "web", 0},
		{netID("web")[:10], "web", 0},
		{netID("db")[:6], netID("db")[:6], 0},
		{"nope", "", http.StatusNotFound},
		{"", "", http.StatusBadRequest},
	} {
		n, err := netFind(nets, tc.ref)
		if tc.code != 0 {
			rec := httptest.NewRecorder()
			writeErr(rec, err)
			if err == nil || rec.Code != tc.code {
				t.Errorf("netFind(%q): %v (%d), want status %d", tc.ref, err, rec.Code, tc.code)
			}
			continue
		}
		if err != nil || n.Name != tc.want {
			t.Errorf("netFind(%q) = %q, %v; want %q", tc.ref, n.Name, err, tc.want)
		}
	}
}

func TestNetworkCreateInspectList(t *testing.T) {
	f := newNetFake()
	s := netServer(t, f)
	code, body := netDo(t, s, "POST", "/v1.41/networks/create", map[string]any{
		"Name": "proj_default", "Driver": "bridge", "CheckDuplicate": true,
		"Labels": map[string]string{"com.docker.compose.project": "proj"},
		"IPAM":   map[string]any{"Driver": "default", "Config": []map[string]string{{"Subnet": "10.99.0.0/24"}}},
	})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var cr network.CreateResponse
	netDecode(t, body, &cr)
	if cr.ID != netID("proj_default") {
		t.Errorf("create ID %q, want %q", cr.ID, netID("proj_default"))
	}
	f.addArrow("a1b2c3d4e5f6a1b2c3d4e5f6", "web", "proj_default", api.Running, "")
	f.addArrow("ffff", "other", "", api.Running, "")

	for _, ref := range []string{"proj_default", cr.ID, cr.ID[:12]} {
		code, body = netDo(t, s, "GET", "/networks/"+ref, nil)
		if code != http.StatusOK {
			t.Fatalf("inspect %s: %d %s", ref, code, body)
		}
		var n network.Inspect
		netDecode(t, body, &n)
		// Options stay empty: compose 1.29 compares them with its file's.
		if n.Name != "proj_default" || n.Driver != "bridge" || n.Scope != "local" || n.Labels["com.docker.compose.project"] != "proj" || n.Options == nil || len(n.Options) != 0 {
			t.Errorf("inspect %s: %+v", ref, n.Network)
		}
		if len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet.String() != "10.99.0.0/24" || n.IPAM.Config[0].Gateway.String() != "10.99.0.1" {
			t.Errorf("inspect %s: IPAM %+v", ref, n.IPAM)
		}
		ep, ok := n.Containers["a1b2c3d4e5f6a1b2c3d4e5f6"]
		if !ok || ep.Name != "web" || ep.IPv4Address.String() != "10.99.0.2/24" || len(ep.EndpointID) != 64 {
			t.Errorf("inspect %s: containers %+v", ref, n.Containers)
		}
	}
	// The predefined bridge lists the running arrow of the user network.
	code, body = netDo(t, s, "GET", "/networks/bridge", nil)
	var br network.Inspect
	netDecode(t, body, &br)
	if code != http.StatusOK || br.Driver != "bridge" || br.Containers["ffff"].IPv4Address.String() != "10.0.2.15/24" {
		t.Errorf("bridge: %d %+v", code, br)
	}

	for _, tc := range []struct {
		filters map[string][]string
		want    []string
	}{
		{nil, []string{"bridge", "host", "none", "proj_default"}},
		{map[string][]string{"name": {"proj"}}, []string{"proj_default"}},
		{map[string][]string{"label": {"com.docker.compose.project=proj"}}, []string{"proj_default"}},
		{map[string][]string{"label": {"com.docker.compose.project=other"}}, nil},
		{map[string][]string{"type": {"builtin"}}, []string{"bridge", "host", "none"}},
		{map[string][]string{"type": {"custom"}}, []string{"proj_default"}},
		{map[string][]string{"driver": {"bridge"}}, []string{"bridge", "proj_default"}},
		{map[string][]string{"id": {netID("none")[:8]}}, []string{"none"}},
	} {
		q := ""
		if tc.filters != nil {
			q = "?filters=" + netFilters(tc.filters)
		}
		code, body := netDo(t, s, "GET", "/networks"+q, nil)
		var list []network.Summary
		netDecode(t, body, &list)
		var got []string
		for _, n := range list {
			got = append(got, n.Name)
		}
		if code != http.StatusOK || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("list %v: %d %v, want %v", tc.filters, code, got, tc.want)
		}
	}
	if code, body := netDo(t, s, "GET", "/networks?filters="+netFilters(map[string][]string{"color": {"red"}}), nil); code != http.StatusBadRequest || !strings.Contains(string(body), "color") {
		t.Errorf("unknown filter: %d %s", code, body)
	}
}

func TestNetworkCreateRefusals(t *testing.T) {
	f := newNetFake()
	s := netServer(t, f)
	if code, body := netDo(t, s, "POST", "/networks/create", map[string]any{"Name": "dup"}); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tc := range []struct {
		name string
		req  map[string]any
		code int
		says string
	}{
		{"duplicate", map[string]any{"Name": "dup"}, http.StatusConflict, "already exists"},
		{"predefined", map[string]any{"Name": "host"}, http.StatusForbidden, "pre-defined"},
		{"no name", map[string]any{"Driver": "bridge"}, http.StatusBadRequest, "name"},
		{"overlay", map[string]any{"Name": "o", "Driver": "overlay"}, http.StatusNotImplemented, "overlay"},
		{"internal", map[string]any{"Name": "i", "Internal": true}, http.StatusNotImplemented, "internal"},
		{"ipv6", map[string]any{"Name": "i6", "EnableIPv6": true}, http.StatusNotImplemented, "IPv6"},
		{"options", map[string]any{"Name": "op", "Options": map[string]string{"com.docker.network.bridge.name": "br9"}}, http.StatusNotImplemented, "com.docker.network.bridge.name"},
		{"gateway", map[string]any{"Name": "gw", "IPAM": map[string]any{"Config": []map[string]string{{"Subnet": "10.98.0.0/24", "Gateway": "10.98.0.254"}}}}, http.StatusNotImplemented, "gateway"},
		{"ip range", map[string]any{"Name": "ipr", "IPAM": map[string]any{"Config": []map[string]string{{"Subnet": "10.98.0.0/16", "IPRange": "10.98.1.0/24"}}}}, http.StatusNotImplemented, "range"},
		{"ipam driver", map[string]any{"Name": "ipd", "IPAM": map[string]any{"Driver": "dhcp"}}, http.StatusNotImplemented, "dhcp"},
		{"bad name", map[string]any{"Name": "-bad"}, http.StatusBadRequest, "name"},
		{"malformed", nil, http.StatusBadRequest, "JSON"},
	} {
		var body any = tc.req
		if tc.req == nil {
			body = "{not json"
		}
		code, out := netDo(t, s, "POST", "/networks/create", body)
		if code != tc.code || !strings.Contains(string(out), tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, code, out, tc.code, tc.says)
		}
	}
	// The matching gateway is the one Arrow would pick: accepted.
	if code, body := netDo(t, s, "POST", "/networks/create", map[string]any{"Name": "gwok", "IPAM": map[string]any{"Config": []map[string]string{{"Subnet": "10.97.0.0/24", "Gateway": "10.97.0.1"}}}}); code != http.StatusCreated {
		t.Errorf("gateway .1: %d %s", code, body)
	}
}

func TestNetworkDeletePruneConnect(t *testing.T) {
	f := newNetFake()
	s := netServer(t, f)
	for _, n := range []string{"used", "stopped", "free", "labelled"} {
		req := map[string]any{"Name": n}
		if n == "labelled" {
			req["Labels"] = map[string]string{"keep": "yes"}
		}
		if code, body := netDo(t, s, "POST", "/networks/create", req); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", n, code, body)
		}
	}
	f.addArrow("id-run", "runner", "used", api.Running, "")
	// An arrow that names a network without an endpoint now: still a user.
	f.arrows = append(f.arrows, api.Arrow{ID: "id-stop", Name: "stopper", State: api.Exited, Config: api.Config{Network: "stopped"}})
	f.arrows = append(f.arrows, api.Arrow{ID: "id-created", Name: "fresh", State: api.Created, Config: api.Config{Network: "free"}})

	for _, tc := range []struct {
		ref  string
		code int
	}{
		{"bridge", http.StatusForbidden},
		{"used", http.StatusConflict},
		{"stopped", http.StatusConflict},
		{"nope", http.StatusNotFound},
	} {
		if code, body := netDo(t, s, "DELETE", "/networks/"+tc.ref, nil); code != tc.code {
			t.Errorf("delete %s: %d %s, want %d", tc.ref, code, body, tc.code)
		}
	}

	// connect: a running arrow and a created one: 501 saying why; one
	// already on the network with its own aliases: done.
	for _, tc := range []struct {
		net, container string
		aliases        []string
		code           int
		says           string
	}{
		{"stopped", "runner", nil, http.StatusNotImplemented, "running"},
		{"used", "fresh", nil, http.StatusNotImplemented, "created arrow"},
		{"used", "runner", []string{"runner", "id-run"}, http.StatusOK, ""},
		{"used", "runner", []string{"db"}, http.StatusNotImplemented, "aliases db"},
		{"used", "runner", []string{}, http.StatusNotImplemented, "links other:db"},
		{"used", "ghost", nil, http.StatusNotFound, "No such container"},
	} {
		req := map[string]any{"Container": tc.container}
		if tc.aliases != nil {
			ec := map[string]any{"Aliases": tc.aliases}
			if len(tc.aliases) == 0 {
				ec["Links"] = []string{"other:db"}
			}
			req["EndpointConfig"] = ec
		}
		code, body := netDo(t, s, "POST", "/networks/"+tc.net+"/connect", req)
		if code != tc.code || !strings.Contains(string(body), tc.says) {
			t.Errorf("connect %s to %s: %d %s, want %d saying %q", tc.container, tc.net, code, body, tc.code, tc.says)
		}
	}
	if code, body := netDo(t, s, "POST", "/networks/used/disconnect", map[string]any{"Container": "runner"}); code != http.StatusNotImplemented {
		t.Errorf("disconnect: %d %s", code, body)
	}
	if code, body := netDo(t, s, "POST", "/networks/free/disconnect", map[string]any{"Container": "runner"}); code != http.StatusForbidden {
		t.Errorf("disconnect from a network it is not on: %d %s", code, body)
	}

	// prune: neither the used, the stopped arrow's nor the created
	// arrow's; the label filter keeps the labelled one too.
	code, body := netDo(t, s, "POST", "/networks/prune?filters="+netFilters(map[string][]string{"label!": {"keep"}}), nil)
	var rep network.PruneReport
	netDecode(t, body, &rep)
	if code != http.StatusOK || len(rep.NetworksDeleted) != 0 {
		t.Errorf("prune with label!: %d %+v, want none", code, rep)
	}
	code, body = netDo(t, s, "POST", "/networks/prune", nil)
	netDecode(t, body, &rep)
	if code != http.StatusOK || strings.Join(rep.NetworksDeleted, ",") != "labelled" {
		t.Errorf("prune: %d %+v, want labelled", code, rep)
	}
	if _, ok := f.nets["labelled"]; ok {
		t.Error("prune left labelled")
	}
}

func TestNetFilterUntil(t *testing.T) {
	now := time.Unix(1800000000, 0)
	keep, err := netFilter(resFilters{"until": {"1700000001": true}}, now)
	if err != nil {
		t.Fatal(err)
	}
	old := network.Inspect{Network: network.Network{Name: "old", Created: time.Unix(1700000000, 0)}}
	recent := network.Inspect{Network: network.Network{Name: "new", Created: time.Unix(1700000002, 0)}}
	if !keep(old) || keep(recent) {
		t.Errorf("until: old %v new %v", keep(old), keep(recent))
	}
	if _, err := netFilter(resFilters{"type": {"weird": true}}, now); err == nil {
		t.Error("type=weird accepted")
	}
}
