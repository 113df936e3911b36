package network

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"golang.org/x/net/dns/dnsmessage"
)

func TestNames(t *testing.T) {
	for _, name := range []string{"a", "default", strings.Repeat("x", 64)} {
		br := bridgeName(name)
		if len(br) > 15 || !strings.HasPrefix(br, bridgePrefix) {
			t.Errorf("bridgeName(%q) = %q", name, br)
		}
		tap := tapName(name, strings.Repeat("f", 64))
		if len(tap) > 15 || !strings.HasPrefix(tap, tapPrefix) {
			t.Errorf("tapName(%q) = %q", name, tap)
		}
		mac := macAddr(name, "id")
		if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 || len(mac) != 6 {
			t.Errorf("macAddr(%q) = %s: not a locally administered unicast address", name, mac)
		}
	}
	if tapName("a", "1") == tapName("b", "1") || macAddr("a", "1").String() == macAddr("a", "2").String() {
		t.Error("taps or MACs of different endpoints collide")
	}
}

func TestSubnets(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		prefix netip.Prefix
		last   string
	}{
		{p("10.89.0.0/24"), "10.89.0.255"},
		{p("10.89.0.0/16"), "10.89.255.255"},
		{p("192.168.1.128/25"), "192.168.1.255"},
		{p("10.0.0.0/30"), "10.0.0.3"},
		{p("0.0.0.0/0"), "255.255.255.255"},
	} {
		if got := lastAddr(tc.prefix).String(); got != tc.last {
			t.Errorf("lastAddr(%s) = %s, want %s", tc.prefix, got, tc.last)
		}
	}
	for _, tc := range []struct {
		used []netip.Prefix
		want string // "" for ErrOverlap
	}{
		{nil, "10.89.0.0/24"},
		{[]netip.Prefix{p("10.89.0.0/24")}, "10.89.1.0/24"},
		{[]netip.Prefix{p("10.89.0.0/23"), p("10.89.2.7/32")}, "10.89.3.0/24"},
		{[]netip.Prefix{p("10.0.0.0/8")}, ""},
	} {
		got, err := pickSubnet(p("10.89.0.0/16"), tc.used)
		if tc.want == "" {
			if !errors.Is(err, ErrOverlap) {
				t.Errorf("pickSubnet(%v) = %v, %v; want ErrOverlap", tc.used, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("pickSubnet(%v) = %v, %v; want %s", tc.used, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		subnet  string
		overlap bool
		bad     bool
	}{
		{"10.90.0.0/24", false, false},
		{"10.89.0.128/25", true, false},
		{"10.0.0.0/8", true, false},
		{"10.90.0.0/31", false, true},
		{"fd00::/64", false, true},
	} {
		err := checkSubnet(p(tc.subnet), []netip.Prefix{p("10.89.0.0/24")})
		switch {
		case tc.overlap && !errors.Is(err, ErrOverlap), tc.bad && err == nil, !tc.overlap && !tc.bad && err != nil:
			t.Errorf("checkSubnet(%s) = %v", tc.subnet, err)
		}
	}
}

func TestAllocate(t *testing.T) {
	n := &netRecord{
		Subnet:    netip.MustParsePrefix("10.1.0.0/29"), // .1 gateway, .2-.6 hosts, .7 broadcast
		Gateway:   netip.MustParseAddr("10.1.0.1"),
		Endpoints: map[string]*Endpoint{},
	}
	take := func(id string) string {
		a, err := n.allocate()
		if err != nil {
			return err.Error()
		}
		n.Next = a
		n.Endpoints[id] = &Endpoint{ArrowID: id, Address: netip.PrefixFrom(a, 29)}
		return a.String()
	}
	for i, want := range []string{"10.1.0.2", "10.1.0.3", "10.1.0.4"} {
		if got := take(string(rune('a' + i))); got != want {
			t.Fatalf("allocation %d = %s, want %s", i, got, want)
		}
	}
	delete(n.Endpoints, "b") // releases .3: handed out again only last
	for _, want := range []string{"10.1.0.5", "10.1.0.6", "10.1.0.3"} {
		if got := take(want); got != want {
			t.Fatalf("allocation = %s, want %s", got, want)
		}
	}
	if _, err := n.allocate(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocate on a full subnet: %v, want ErrExhausted", err)
	}
}

func TestNormalizePorts(t *testing.T) {
	lo := "127.0.0.1"
	for _, tc := range []struct {
		name    string
		in      []api.Port
		want    []api.Port
		errIs   error
		wantErr bool
	}{
		{name: "none"},
		{name: "defaults", in: []api.Port{{Proto: "TCP", HostPort: 80}}, want: []api.Port{{Proto: "tcp", HostPort: 80, GuestPort: 80}}},
		{name: "mapped", in: []api.Port{{Proto: "udp", HostIP: "::ffff:127.0.0.1", HostPort: 53, GuestPort: 5353}},
			want: []api.Port{{Proto: "udp", HostIP: lo, HostPort: 53, GuestPort: 5353}}},
		{name: "unspecified", in: []api.Port{{Proto: "tcp", HostIP: "0.0.0.0", HostPort: 1}}, want: []api.Port{{Proto: "tcp", HostPort: 1, GuestPort: 1}}},
		{name: "unspecified IPv6", in: []api.Port{{Proto: "tcp", HostIP: "::", HostPort: 1}}, want: []api.Port{{Proto: "tcp", HostPort: 1, GuestPort: 1}}},
		{name: "tcp and udp", in: []api.Port{{Proto: "tcp", HostPort: 1}, {Proto: "udp", HostPort: 1}},
			want: []api.Port{{Proto: "tcp", HostPort: 1, GuestPort: 1}, {Proto: "udp", HostPort: 1, GuestPort: 1}}},
		{name: "twice", in: []api.Port{{Proto: "tcp", HostPort: 1}, {Proto: "tcp", HostIP: lo, HostPort: 1}}, errIs: ErrPortInUse},
		{name: "sctp", in: []api.Port{{Proto: "sctp", HostPort: 1}}, wantErr: true},
		{name: "no host port", in: []api.Port{{Proto: "tcp", GuestPort: 1}}, wantErr: true},
		{name: "ipv6", in: []api.Port{{Proto: "tcp", HostIP: "::1", HostPort: 1}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := normalizePorts(tc.in)
			if tc.errIs != nil || tc.wantErr {
				if err == nil || (tc.errIs != nil && !errors.Is(err, tc.errIs)) {
					t.Fatalf("normalizePorts = %v, %v", got, err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("normalizePorts = %v, %v; want %v", got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("port %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	got := parseResolvConf(strings.NewReader("# c\nsearch x\nnameserver 10.0.0.1\nnameserver  ::1 \nnameserver bogus\noptions ndots:2\nnameserver\n"))
	want := []string{"10.0.0.1:53", "[::1]:53"}
	if len(got) != len(want) {
		t.Fatalf("parseResolvConf = %v, want %v", got, want)
	}
	for i := range got {
		if got[i].String() != want[i] {
			t.Errorf("nameserver %d = %s, want %s", i, got[i], want[i])
		}
	}
}

// testResponder returns a responder of network "front" (10.89.0.0/24) with
// web at 10.89.0.2 and no upstream nameserver; web and web2 (10.89.0.4)
// share the alias app, as two replicas of a compose service do.
func testResponder() *responder {
	r := newResponder("Front", netip.MustParsePrefix("10.89.0.0/24"), func() []netip.AddrPort { return nil }, time.Second, func(string, ...any) {})
	r.setRecords(&netRecord{Endpoints: map[string]*Endpoint{
		"1": {Name: "Web", Aliases: []string{"app"}, Address: netip.MustParsePrefix("10.89.0.2/24")},
		"2": {Address: netip.MustParsePrefix("10.89.0.3/24")},
		"3": {Name: "web2", Aliases: []string{"APP", "cache.internal"}, Address: netip.MustParsePrefix("10.89.0.4/24")},
	}})
	return r
}

// query builds a query for name and type.
func query(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestAnswer(t *testing.T) {
	r := testResponder()
	for _, tc := range []struct {
		name    string
		typ     dnsmessage.Type
		forward bool
		rcode   dnsmessage.RCode
		addr    string // the A records, in order, comma-separated
	}{
		{name: "web.", typ: dnsmessage.TypeA, addr: "10.89.0.2"},
		{name: "app.", typ: dnsmessage.TypeA, addr: "10.89.0.2,10.89.0.4"},
		{name: "App.Front.", typ: dnsmessage.TypeA, addr: "10.89.0.2,10.89.0.4"},
		{name: "cache.internal.", typ: dnsmessage.TypeA, addr: "10.89.0.4"},
		{name: "cache.internal.front.", typ: dnsmessage.TypeA, addr: "10.89.0.4"},
		{name: "app.", typ: dnsmessage.TypeAAAA},
		{name: "WEB.front.", typ: dnsmessage.TypeA, addr: "10.89.0.2"},
		{name: "web.front.", typ: dnsmessage.TypeAAAA},
		{name: "nope.", typ: dnsmessage.TypeA, rcode: dnsmessage.RCodeNameError},
		{name: "nope.front.", typ: dnsmessage.TypeA, rcode: dnsmessage.RCodeNameError},
		{name: "example.com.", typ: dnsmessage.TypeA, forward: true},
		{name: "web.other.", typ: dnsmessage.TypeA, forward: true},
		{name: "com.", typ: dnsmessage.TypeNS, forward: true},
	} {
		t.Run(tc.name+tc.typ.String(), func(t *testing.T) {
			// An even ID: the rotation of a two-address answer starts
			// at the first (see TestRotate).
			resp, fwd := r.answer(query(t, 78, tc.name, tc.typ))
			if tc.forward {
				if resp != nil || !fwd {
					t.Fatalf("answer = %x, %v; want forwarded", resp, fwd)
				}
				return
			}
			var m dnsmessage.Message
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("answer: %v", err)
			}
			if m.ID != 78 || !m.Response || m.RCode != tc.rcode || len(m.Questions) != 1 {
				t.Fatalf("answer header = %+v", m.Header)
			}
			var addrs []string
			for _, a := range m.Answers {
				if ar, ok := a.Body.(*dnsmessage.AResource); ok {
					addrs = append(addrs, netip.AddrFrom4(ar.A).String())
				}
			}
			got := strings.Join(addrs, ",")
			if got != tc.addr {
				t.Errorf("answer A = %q, want %q", got, tc.addr)
			}
		})
	}
	// Malformed input: dropped or FORMERR, never a panic.
	if resp, fwd := r.answer([]byte{1, 2, 3}); resp != nil || fwd {
		t.Errorf("short message: %x, %v", resp, fwd)
	}
	resp, _ := r.answer([]byte{0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil || m.RCode != dnsmessage.RCodeFormatError || m.ID != 9 {
		t.Errorf("two announced questions, none there: %+v, %v", m.Header, err)
	}
}

func FuzzAnswer(f *testing.F) {
	f.Add(query(f, 1, "web.", dnsmessage.TypeA))
	f.Add(query(f, 2, "web.front.", dnsmessage.TypeAAAA))
	f.Add(query(f, 3, "example.com.", dnsmessage.TypeMX))
	f.Add([]byte{0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	r := testResponder()
	f.Fuzz(func(t *testing.T, q []byte) {
		resp, fwd := r.answer(q)
		if resp == nil {
			return
		}
		if fwd {
			t.Fatal("both an answer and a forward")
		}
		var p dnsmessage.Parser
		h, err := p.Start(resp)
		if err != nil {
			t.Fatalf("unparsable answer %x: %v", resp, err)
		}
		if !h.Response || h.ID != uint16(q[0])<<8|uint16(q[1]) {
			t.Fatalf("answer header %+v to query %x", h, q)
		}
		if len(resp) > 512 {
			t.Fatalf("answer of %d bytes", len(resp))
		}
	})
}

// TestUpgradePorts reads a network recorded by an Arrow before api.Port:
// its endpoints' published ports survive the upgrade.
func TestUpgradePorts(t *testing.T) {
	old := []byte(`{"name":"front","bridge":"arw-front","subnet":"10.50.0.0/24","gateway":"10.50.0.1","mtu":1500,"created":"2026-01-02T03:04:05Z",` +
		`"endpoints":{"aaaa":{"arrowID":"aaaa","ports":[{"proto":"tcp","hostIP":"127.0.0.1","hostPort":8080,"guestPort":80},{"proto":"udp","hostPort":5353,"guestPort":53}]}}}`)
	var n netRecord
	if err := json.Unmarshal(old, &n); err != nil {
		t.Fatal(err)
	}
	if err := upgradePorts(old, &n); err != nil {
		t.Fatal(err)
	}
	want := []api.Port{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80}, {Proto: "udp", HostPort: 5353, GuestPort: 53}}
	if got := n.Endpoints["aaaa"].Ports; !slices.Equal(got, want) {
		t.Errorf("ports %+v, want %+v", got, want)
	}
	// A record in the new shape is left as it is.
	cur, _ := json.Marshal(n)
	var again netRecord
	if err := json.Unmarshal(cur, &again); err != nil {
		t.Fatal(err)
	}
	if err := upgradePorts(cur, &again); err != nil {
		t.Fatal(err)
	}
	if got := again.Endpoints["aaaa"].Ports; !slices.Equal(got, want) {
		t.Errorf("new shape: ports %+v, want %+v", got, want)
	}
}

// TestRotate: the addresses of a shared name start where the query's ID
// says, and are cut to what a UDP answer holds.
func TestRotate(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}
	for _, tc := range []struct {
		id   uint16
		want string
	}{
		{0, "10.0.0.1 10.0.0.2 10.0.0.3"},
		{1, "10.0.0.2 10.0.0.3 10.0.0.1"},
		{5, "10.0.0.3 10.0.0.1 10.0.0.2"},
	} {
		got := rotate(addrs, tc.id, 5)
		if s := strings.Join(addrStrings(got), " "); s != tc.want {
			t.Errorf("rotate(id %d) = %s, want %s", tc.id, s, tc.want)
		}
	}
	if got := rotate(nil, 3, 5); got != nil {
		t.Errorf("rotate(nil) = %v", got)
	}
}

func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// TestAnswerManyShareAnAlias: the 253 arrows of a /24 all with one alias,
// asked for under the longest name the alias may have: the answer fits in
// a UDP message without EDNS0, and holds as many as fit.
func TestAnswerManyShareAnAlias(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 60)
	if err := api.ValidateNetworkAlias(long); err != nil {
		t.Fatal(err)
	}
	eps := map[string]*Endpoint{}
	for i := 2; i < 255; i++ {
		eps[strconv.Itoa(i)] = &Endpoint{Aliases: []string{"svc", long}, Address: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 89, 0, byte(i)}), 24)}
	}
	r := newResponder("front", netip.MustParsePrefix("10.89.0.0/24"), func() []netip.AddrPort { return nil }, time.Second, func(string, ...any) {})
	r.setRecords(&netRecord{Endpoints: eps})
	for _, name := range []string{"svc.", long + ".", long + ".front."} {
		resp, _ := r.answer(query(t, 9, name, dnsmessage.TypeA))
		if len(resp) == 0 || len(resp) > maxUDPAnswer {
			t.Fatalf("%.20s...: answer of %d bytes", name, len(resp))
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatal(err)
		}
		seen := map[netip.Addr]bool{}
		for _, a := range m.Answers {
			ar, ok := a.Body.(*dnsmessage.AResource)
			if !ok || seen[netip.AddrFrom4(ar.A)] {
				t.Fatalf("%.20s...: answer %v", name, a)
			}
			seen[netip.AddrFrom4(ar.A)] = true
		}
		// Another record would not have fit.
		if len(resp)+16 <= maxUDPAnswer {
			t.Errorf("%.20s...: %d records in %d bytes: room for more", name, len(m.Answers), len(resp))
		}
	}
}
