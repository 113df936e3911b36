package daemon

import (
	"context"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerKey is the context key of the *Peer of a request's connection.
type peerKey struct{}

// connContext records who is at the other end of c in the context of the
// requests that come over it (http.Server.ConnContext). Credentials are
// read once per connection: SO_PEERCRED holds them as of the peer's
// connect, which is what a file descriptor passed on to another process
// keeps too.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, connPeer(c))
}

// connPeer identifies the peer of c: a Unix-socket peer by its
// credentials; anything else (a TLS client, a connection whose
// credentials cannot be read) as not Local, which the host-path policy
// holds to its allow list.
func connPeer(c net.Conn) *Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return &Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return &Peer{}
	}
	var p *Peer
	cerr := raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		p = &Peer{Local: true, UID: cred.Uid, GID: cred.Gid, Groups: peerGroups(int(fd))}
	})
	if cerr != nil || p == nil {
		return &Peer{}
	}
	return p
}

// maxPeerGroups bounds the supplementary groups read (NGROUPS_MAX).
const maxPeerGroups = 65536

// peerGroups reads the peer's supplementary groups (SO_PEERGROUPS, Linux
// 4.13). If they cannot be read the peer is taken to have none: the check
// then grants less, never more.
func peerGroups(fd int) []uint32 {
	n := 32
	for {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4]
		case errno == unix.ERANGE && int(size/4) > n && int(size/4) <= maxPeerGroups:
			n = int(size / 4)
		default:
			return nil
		}
	}
}

// peerOf returns the peer of the request whose context ctx is. A context
// that came over no connection the daemon served (a call in the same
// process) has an unidentified peer.
func peerOf(ctx context.Context) *Peer {
	if p, ok := ctx.Value(peerKey{}).(*Peer); ok && p != nil {
		return p
	}
	return &Peer{}
}
