package run

import (
	"errors"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/internal/netnsdo"
	"github.com/arrowsys/arrow/internal/netnstest"
)

// TestOpenTapInNetNS opens a persistent tap that lives in another network
// namespace: the descriptor is bound to that tap (its carrier comes up),
// and the host's namespace gets no link of that name.
func TestOpenTapInNetNS(t *testing.T) {
	name, path := netnstest.New(t)
	const tap = "arwtnstest0"
	netnstest.Run(t, "ip", "-n", name, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr")
	netnstest.Run(t, "ip", "-n", name, "link", "set", tap, "up")

	carrier := func() bool {
		var up bool
		if err := netnsdo.Do(path, func() error {
			l, err := netlink.LinkByName(tap)
			if err != nil {
				return err
			}
			up = l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return up
	}
	if carrier() {
		t.Fatal("the tap has a carrier before anything opened it")
	}

	f, err := openTap(tap, path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !carrier() {
		if time.Now().After(deadline) {
			t.Fatal("the tap in the namespace has no carrier once opened: the descriptor is another device's")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := netlink.LinkByName(tap); err == nil {
		t.Fatalf("a link %s appeared in the test's own namespace", tap)
	}
	f.Close()

	// Bad paths fail with the path in the message.
	for _, bad := range []string{"/nonexistent/netns", "/proc/self/status"} {
		if _, err := openTap(tap, bad); err == nil {
			t.Errorf("openTap in %s: want an error", bad)
		}
	}
	var nf netlink.LinkNotFoundError
	if err := netnsdo.Do(path, func() error { _, err := netlink.LinkByName("nosuchlink"); return err }); !errors.As(err, &nf) {
		t.Errorf("link lookup in the namespace: got %v, want not found", err)
	}
}
