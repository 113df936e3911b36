package podnet

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Port
		err      string
	}{
		{name: "empty", in: ""},
		{name: "blank", in: "  "},
		{name: "none", in: "[]"},
		{name: "kubelet's", in: `[{"name":"http","containerPort":80,"protocol":"TCP"},{"containerPort":53,"protocol":"UDP"}]`,
			want: []Port{{53, UDP}, {80, TCP}}},
		{name: "default protocol TCP", in: `[{"containerPort":8080}]`, want: []Port{{8080, TCP}}},
		{name: "lower case", in: `[{"containerPort":8080,"protocol":"udp"}]`, want: []Port{{8080, UDP}}},
		{name: "deduplicated", in: `[{"containerPort":80},{"containerPort":80,"protocol":"TCP"},{"containerPort":80,"protocol":"UDP"}]`,
			want: []Port{{80, TCP}, {80, UDP}}},
		{name: "SCTP left out", in: `[{"containerPort":9,"protocol":"SCTP"},{"containerPort":10}]`, want: []Port{{10, TCP}}},
		{name: "host port ignored", in: `[{"containerPort":80,"hostPort":8080,"hostIP":"1.2.3.4"}]`, want: []Port{{80, TCP}}},
		{name: "null", in: "null"},
		{name: "not JSON", in: "80/tcp", err: "invalid character"},
		{name: "an object", in: `{"containerPort":80}`, err: "cannot unmarshal"},
		{name: "no port", in: `[{"protocol":"TCP"}]`, err: "no containerPort"},
		{name: "zero", in: `[{"containerPort":0}]`, err: "want 1 to 65535"},
		{name: "too big", in: `[{"containerPort":65536}]`, err: "want 1 to 65535"},
		{name: "huge", in: `[{"containerPort":1e30}]`, err: "cannot unmarshal"},
		{name: "negative", in: `[{"containerPort":-80}]`, err: "want 1 to 65535"},
		{name: "fraction", in: `[{"containerPort":80.5}]`, err: "cannot unmarshal"},
		{name: "string port", in: `[{"containerPort":"80"}]`, err: "cannot unmarshal"},
		{name: "bad protocol", in: `[{"containerPort":80,"protocol":"ICMP"}]`, err: `protocol "ICMP"`},
		{name: "too many", in: "[" + strings.Repeat(`{"containerPort":1},`, 1024) + `{"containerPort":2}]`, err: "at most 1024"},
		{name: "too long", in: `[{"containerPort":1,"name":"` + strings.Repeat("x", 64<<10) + `"}]`, err: "at most 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePorts(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"", "[]", `[{"containerPort":80,"protocol":"TCP"}]`, `[{"containerPort":53,"protocol":"UDP"},{"containerPort":1}]`,
		`[{"containerPort":65535,"protocol":"SCTP"}]`, `[{"containerPort":0}]`, `{}`, `[null]`, `[{"containerPort":1e3}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if ports != nil {
				t.Fatalf("ports %v with error %v", ports, err)
			}
			return
		}
		if len(ports) > maxPorts {
			t.Fatalf("%d ports", len(ports))
		}
		for i, p := range ports {
			if p.Port == 0 || (p.Proto != TCP && p.Proto != UDP) {
				t.Fatalf("bad port %v", p)
			}
			if i > 0 && comparePorts(ports[i-1], p) >= 0 {
				t.Fatalf("not sorted and unique: %v", ports)
			}
		}
	})
}

func TestParseResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		dns, search []string
	}{
		{name: "CRI's", in: "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			dns: []string{"10.96.0.10"}, search: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
		{name: "loopback stub left out", in: "nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n",
			dns: []string{"192.0.2.1", "2001:db8::1"}},
		{name: "comments and junk", in: "# nameserver 1.1.1.1\n; x\nnameserver\nnameserver bogus\nnameserver 0.0.0.0\nnameserver fe80::1%eth0\ndomain a.example\nsearch b.example\n",
			search: []string{"b.example"}},
		{name: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns, search := parseResolvConf([]byte(tc.in))
			if !slices.Equal(dns, tc.dns) || !slices.Equal(search, tc.search) {
				t.Fatalf("got %q %q, want %q %q", dns, search, tc.dns, tc.search)
			}
		})
	}
}

func TestTapNameAndLinks(t *testing.T) {
	a, b := TapName("container-a"), TapName("container-b")
	if a == b || len(a) != 15 || !strings.HasPrefix(a, TapPrefix) || a != TapName("container-a") {
		t.Fatalf("tap names %q %q: want 15 bytes, stable, distinct", a, b)
	}
	seen := map[netip.Addr]bool{}
	for i := range maxContainers {
		gw, g := linkAddrs(i)
		p := netip.PrefixFrom(g, 30).Masked()
		if !linkNet.Contains(gw) || !linkNet.Contains(g) || !p.Contains(gw) || p.Addr() == gw || seen[gw] || seen[g] ||
			g == netip.MustParseAddr("169.254.169.254") {
			t.Fatalf("link %d: gateway %s, guest %s in %s", i, gw, g, p)
		}
		// Neither address is the /30's network or broadcast address.
		if b := g.Next(); !p.Contains(b) || p.Contains(b.Next()) {
			t.Fatalf("link %d: guest %s is the broadcast address of %s", i, g, p)
		}
		seen[gw], seen[g] = true, true
	}
}

func TestOptionsFor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		sandbox     bool
		ports       []Port
		err         bool
	}{
		{name: "sandbox", annotations: map[string]string{ContainerTypeAnnotation: "sandbox"}, sandbox: true},
		{name: "container", annotations: map[string]string{ContainerTypeAnnotation: "container",
			PortsAnnotation: `[{"containerPort":80,"protocol":"TCP"}]`}, ports: []Port{{80, TCP}}},
		{name: "no annotations"},
		{name: "bad ports", annotations: map[string]string{PortsAnnotation: `[{"containerPort":0}]`}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if IsSandbox(tc.annotations) != tc.sandbox {
				t.Errorf("IsSandbox: %v", !tc.sandbox)
			}
			o, err := OptionsFor(tc.annotations, "/run/resolv.conf", "/run/x")
			if (err != nil) != tc.err {
				t.Fatalf("error %v", err)
			}
			if err == nil && (!slices.Equal(o.Ports, tc.ports) || o.ResolvConf != "/run/resolv.conf" || o.RunDir != "/run/x") {
				t.Fatalf("options %+v", o)
			}
		})
	}
}
