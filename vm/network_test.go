package vm

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
)

func TestNICArgs(t *testing.T) {
	user := NIC{MAC: "02:00:0a:00:02:0f", User: &UserNet{Forwards: []api.Port{
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080, GuestPort: 80},
		{Proto: "udp", HostPort: 5353, GuestPort: 53},
	}}}
	tap := NIC{MAC: "02:00:00:00:00:02", Tap: os.Stdin}
	tests := []struct {
		name   string
		mutate func(*Config)
		flag   string
		want   []string
	}{
		{"no NIC", nil, "-netdev", nil},
		{"user mode", func(c *Config) { c.NICs = []NIC{user} }, "-netdev", []string{
			"user,id=net0,net=10.0.2.0/24,ipv6=off,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-:53",
		}},
		{"user mode, other network", func(c *Config) {
			c.NICs = []NIC{{MAC: "02:00:00:00:00:01", User: &UserNet{Net: netip.MustParsePrefix("192.168.76.9/24")}}}
		}, "-netdev", []string{"user,id=net0,net=192.168.76.0/24,ipv6=off"}},
		{"user mode device", func(c *Config) { c.NICs = []NIC{user} }, "-device", []string{
			"virtio-serial-device,max_ports=2", "virtserialport,chardev=control,name=arrow.0", "virtio-rng-device",
			"virtio-net-device,netdev=net0,mac=02:00:0a:00:02:0f",
		}},
		{"tap by fd", func(c *Config) { c.NICs = []NIC{tap} }, "-netdev", []string{"tap,id=net0,fd=8"}},
		{"taps after drives and virtiofs sockets", func(c *Config) {
			withDevices(c)
			c.NICs = []NIC{tap, user, {MAC: "02:00:00:00:00:03", Tap: os.Stdin}}
		}, "-netdev", []string{
			"tap,id=net0,fd=12",
			"user,id=net1,net=10.0.2.0/24,ipv6=off,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-:53",
			"tap,id=net2,fd=13",
		}},
		{"placeholders take a descriptor as taps do", func(c *Config) {
			c.NICs = []NIC{{MAC: "02:00:00:00:00:04", Placeholder: true}, tap}
		}, "-netdev", []string{"socket,id=net0,fd=8", "tap,id=net1,fd=9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			got := argValues(c.Args(), tt.flag)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("%s: got %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
}

func TestNICValidate(t *testing.T) {
	ok := func() NIC {
		return NIC{MAC: "02:00:00:00:00:01", User: &UserNet{Forwards: []api.Port{{Proto: "tcp", HostPort: 8080, GuestPort: 80}}}}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"user", func(c *Config) { c.NICs = []NIC{ok()} }, ""},
		{"tap", func(c *Config) { c.NICs = []NIC{{MAC: "02:00:00:00:00:01", Tap: os.Stdin}} }, ""},
		{"neither", func(c *Config) { c.NICs = []NIC{{MAC: "02:00:00:00:00:01"}} }, "exactly one"},
		{"both", func(c *Config) { n := ok(); n.Tap = os.Stdin; c.NICs = []NIC{n} }, "exactly one"},
		{"placeholder", func(c *Config) { c.NICs = []NIC{{MAC: "02:00:00:00:00:01", Placeholder: true}} }, ""},
		{"placeholder and tap", func(c *Config) {
			c.NICs = []NIC{{MAC: "02:00:00:00:00:01", Placeholder: true, Tap: os.Stdin}}
		}, "exactly one"},
		{"bad MAC", func(c *Config) { n := ok(); n.MAC = "02:00:00:00:00"; c.NICs = []NIC{n} }, "MAC"},
		{"multicast MAC", func(c *Config) { n := ok(); n.MAC = "03:00:00:00:00:01"; c.NICs = []NIC{n} }, "multicast"},
		{"MAC twice", func(c *Config) { c.NICs = []NIC{ok(), ok()} }, "used twice"},
		{"IPv6 network", func(c *Config) {
			n := ok()
			n.User.Net = netip.MustParsePrefix("fd00::/64")
			c.NICs = []NIC{n}
		}, "IPv4 prefix"},
		{"guest port 0", func(c *Config) { n := ok(); n.User.Forwards[0].GuestPort = 0; c.NICs = []NIC{n} }, "1 to 65535"},
		{"host port too big", func(c *Config) { n := ok(); n.User.Forwards[0].HostPort = 65536; c.NICs = []NIC{n} }, "1 to 65535"},
		{"protocol", func(c *Config) { n := ok(); n.User.Forwards[0].Proto = "sctp"; c.NICs = []NIC{n} }, "protocol"},
		{"IPv6 host IP", func(c *Config) { n := ok(); n.User.Forwards[0].HostIP = "::1"; c.NICs = []NIC{n} }, "IPv4"},
		{"slots", func(c *Config) {
			withDevices(c)
			c.Drives = append(c.Drives, Drive{Path: "/a"})
			c.NICs = []NIC{ok()}
		}, "room for 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestUserNetHosts(t *testing.T) {
	gw, dns, g := UserNetHosts(netip.Prefix{})
	if gw.String() != "10.0.2.2" || dns.String() != "10.0.2.3" || g.String() != "10.0.2.15" {
		t.Fatalf("UserNetHosts = %s %s %s", gw, dns, g)
	}
	gw, _, g = UserNetHosts(netip.MustParsePrefix("192.168.7.77/24"))
	if gw.String() != "192.168.7.2" || g.String() != "192.168.7.15" {
		t.Fatalf("UserNetHosts(192.168.7.0/24) = %s, %s", gw, g)
	}
}
