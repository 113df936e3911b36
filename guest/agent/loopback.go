//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// listening says how a port is listened on in the guest, from the
// kernel's /proc/net/tcp and tcp6 tables.
type listening int

const (
	notListening listening = iota
	loopbackOnly           // on 127.0.0.1 or ::1 only
	reachable              // on a wildcard or an interface's address
)

// listenState reads the kernel's TCP tables (their content, tcp and tcp6)
// for listeners on port.
func listenState(port int, tables ...[]byte) listening {
	state := notListening
	for _, t := range tables {
		sc := bufio.NewScanner(bytes.NewReader(t))
		sc.Buffer(make([]byte, 4096), 4096)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// sl local_address rem_address st ...
			if len(f) < 4 || f[3] != "0A" {
				continue
			}
			addr, p, ok := parseProcAddr(f[1])
			if !ok || p != port {
				continue
			}
			if !addr.IsLoopback() {
				return reachable
			}
			state = loopbackOnly
		}
	}
	return state
}

// parseProcAddr reads "0100007F:18EB" (IPv4) or its 32-digit IPv6 form:
// the address in 32-bit words of host byte order (little-endian here), the
// port in big-endian hex.
func parseProcAddr(s string) (netip.Addr, int, bool) {
	h, ps, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(ps, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 4 && len(b) != 16 {
		return netip.Addr{}, 0, false
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap(), int(port), true
}

// relayLoopback makes a published port reachable when the service listens
// on the guest's loopback only, as Debian configures redis and memcached
// (bind 127.0.0.1): once it listens, arrow-init listens on the interfaces'
// addresses and relays each connection to the loopback. A service that
// listens on a wildcard or an interface address needs nothing. settled
// closes once it knows which (or gives up, when done closes), so that the
// service is reported ready only when its published port answers.
func (a *agent) relayLoopback(port int, addrs []netip.Addr, done <-chan struct{}, settled chan<- struct{}) {
	defer close(settled)
	for {
		t4, _ := os.ReadFile("/proc/net/tcp")
		t6, _ := os.ReadFile("/proc/net/tcp6")
		switch listenState(port, t4, t6) {
		case reachable:
			return
		case loopbackOnly:
			for _, ad := range addrs {
				l, err := net.Listen("tcp", netip.AddrPortFrom(ad, uint16(port)).String())
				if err != nil {
					a.log.Printf("relay of port %d: %v", port, err)
					continue
				}
				a.debugf("relaying %s to the loopback", l.Addr())
				go func() {
					<-done
					l.Close()
				}()
				go a.serveRelay(l, port)
			}
			return
		}
		select {
		case <-done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *agent) serveRelay(l net.Listener, port int) {
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// ECONNABORTED, EMFILE: the listener stays; stopping here
			// would leave its backlog to fill.
			a.debugf("relay of port %d: %v", port, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer u.Close()
			go func() {
				_, _ = io.Copy(u, c)
				if tc, ok := u.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}()
			_, _ = io.Copy(c, u)
		}()
	}
}
