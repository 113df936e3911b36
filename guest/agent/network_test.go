//go:build linux

package agent

import (
	"testing"
	"unsafe"

	"github.com/arrowsys/arrow/guest"
)

func TestRtentryLayout(t *testing.T) {
	// struct rtentry on LP64 (linux/route.h): 120 bytes, rt_flags at 56,
	// rt_metric at 80, rt_dev at 88.
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("64-bit layout")
	}
	var rt rtentry
	if s, f, m, d := unsafe.Sizeof(rt), unsafe.Offsetof(rt.flags), unsafe.Offsetof(rt.metric), unsafe.Offsetof(rt.dev); s != 120 || f != 56 || m != 80 || d != 88 {
		t.Fatalf("rtentry: size %d, flags at %d, metric at %d, dev at %d", s, f, m, d)
	}
}

func TestNetworkFiles(t *testing.T) {
	n := &guest.Network{
		DNS:    []string{"10.0.2.3", "2001:db8::53"},
		Search: []string{"example.com", "corp"},
		Hosts:  []guest.HostEntry{{IP: "10.0.2.2", Names: []string{"host.arrow.internal", "gw"}}},
	}
	if got, want := resolvConf(n), "# written by arrow-init\nsearch example.com corp\nnameserver 10.0.2.3\nnameserver 2001:db8::53\n"; got != want {
		t.Errorf("resolv.conf %q, want %q", got, want)
	}
	if got := resolvConf(nil); got != "" {
		t.Errorf("resolv.conf without network %q", got)
	}
	if got := resolvConf(&guest.Network{}); got != "" {
		t.Errorf("resolv.conf without name servers %q", got)
	}
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb\n10.0.2.2\thost.arrow.internal gw\n"
	if got := hostsFile("web", n); got != want {
		t.Errorf("hosts %q, want %q", got, want)
	}
}
