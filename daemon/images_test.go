package daemon

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestMayChangeImages: only root and the daemon's own user write the
// image store through the Docker API; a group member or a TLS client
// cannot take a name root runs.
func TestMayChangeImages(t *testing.T) {
	d := &Daemon{}
	for _, tc := range []struct {
		name string
		peer *Peer
		ok   bool
	}{
		{"root on the socket", &Peer{UID: 0, Local: true}, true},
		{"the daemon's user", &Peer{UID: uint32(os.Geteuid()), Local: true}, true},
		{"another user on the socket", &Peer{UID: 4242, Local: true}, false},
		{"a TLS client", &Peer{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.WithValue(context.Background(), peerKey{}, tc.peer)
			err := d.MayChangeImages(ctx)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrForbidden) {
				t.Errorf("MayChangeImages: %v", err)
			}
		})
	}
}
