package network

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// DNS limits: the responder forwards at most maxInflight queries at once
// (more are dropped, as a busy server does), serves at most maxTCPConns
// TCP clients, and closes an idle TCP connection after tcpIdle.
const (
	maxInflight = 128
	maxTCPConns = 32
	tcpIdle     = 10 * time.Second
	// recordTTL is the TTL of the A records of arrows: short, since
	// arrows come and go.
	recordTTL = 5
	// maxUpstreams is how many nameservers a query is tried on.
	maxUpstreams = 3
)

// responder is the DNS server of one network, on the gateway's port 53
// (UDP and TCP). It answers for the attached arrows' names and forwards
// the rest to the host's nameservers.
type responder struct {
	network string
	subnet  netip.Prefix
	// records maps lower-case fully qualified names to addresses: one
	// for an arrow's name, one or more for an alias that arrows share.
	records atomic.Pointer[map[string][]netip.Addr]
	// upstreams returns the nameservers to forward to.
	upstreams func() []netip.AddrPort
	timeout   time.Duration
	// idle is how long a TCP client may take to send a whole query
	// (and to read the answer): tcpIdle, shorter in tests.
	idle time.Duration
	logf func(format string, args ...any)

	udp      *net.UDPConn
	tcp      *net.TCPListener
	inflight chan struct{}
	tcpConns chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startDNS starts the DNS responder of n unless it runs.
func (m *Manager) startDNS(n *netRecord) error {
	if _, ok := m.dns[n.Name]; ok {
		return nil
	}
	r := newResponder(n.Name, n.Subnet, m.upstreams, m.opts.DNSTimeout, m.logf)
	r.setRecords(n)
	if err := r.listen(n.Gateway); err != nil {
		return err
	}
	m.dns[n.Name] = r
	return nil
}

// stopDNS stops the DNS responder of the network name, if it runs.
func (m *Manager) stopDNS(name string) {
	if r, ok := m.dns[name]; ok {
		r.close()
		delete(m.dns, name)
	}
}

// updateDNS gives the responder of n the names of n's endpoints.
func (m *Manager) updateDNS(n *netRecord) {
	if r, ok := m.dns[n.Name]; ok {
		r.setRecords(n)
	}
}

// upstreams returns the nameservers to forward queries to.
func (m *Manager) upstreams() []netip.AddrPort {
	if len(m.opts.Nameservers) > 0 {
		return m.opts.Nameservers
	}
	f, err := os.Open(m.opts.ResolvConf)
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseResolvConf(io.LimitReader(f, 64<<10))
}

// parseResolvConf returns the nameservers of a resolv.conf, port 53.
func parseResolvConf(r io.Reader) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out
}

// newResponder returns a responder that does not listen yet.
func newResponder(network string, subnet netip.Prefix, upstreams func() []netip.AddrPort, timeout time.Duration, logf func(string, ...any)) *responder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &responder{
		network:   strings.ToLower(network),
		subnet:    subnet,
		upstreams: upstreams,
		timeout:   timeout,
		idle:      tcpIdle,
		logf:      logf,
		inflight:  make(chan struct{}, maxInflight),
		tcpConns:  make(chan struct{}, maxTCPConns),
		ctx:       ctx,
		cancel:    cancel,
	}
	r.records.Store(&map[string][]netip.Addr{})
	return r
}

// setRecords replaces the names the responder answers for with those of
// n's endpoints, each name and alias twice: <name>. and <name>.<network>.
// A name that several endpoints share (the alias of a compose service
// with replicas) has all their addresses, in order, each once.
func (r *responder) setRecords(n *netRecord) {
	recs := map[string][]netip.Addr{}
	add := func(name string, a netip.Addr) {
		name = strings.ToLower(name)
		for _, fq := range []string{name + ".", name + "." + r.network + "."} {
			if !slices.Contains(recs[fq], a) {
				recs[fq] = append(recs[fq], a)
			}
		}
	}
	for _, ep := range n.Endpoints {
		if ep.Name != "" {
			add(ep.Name, ep.Address.Addr())
		}
		for _, alias := range ep.Aliases {
			add(alias, ep.Address.Addr())
		}
	}
	for _, addrs := range recs {
		slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	r.records.Store(&recs)
}

// listen starts serving on addr:53.
func (r *responder) listen(addr netip.Addr) error {
	ap := netip.AddrPortFrom(addr, 53)
	// SO_REUSEADDR lets the responder share port 53 with a host DNS
	// server that listens on the wildcard address and sets it too.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(r.ctx, "udp4", ap.String())
	if err != nil {
		return fmt.Errorf("listen on %s/udp: %w", ap, err)
	}
	l, err := lc.Listen(r.ctx, "tcp4", ap.String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("listen on %s/tcp: %w", ap, err)
	}
	r.udp, r.tcp = pc.(*net.UDPConn), l.(*net.TCPListener)
	r.wg.Add(2)
	go r.serveUDP()
	go r.serveTCP()
	return nil
}

// close stops the responder and waits for its goroutines.
func (r *responder) close() {
	r.cancel()
	if r.udp != nil {
		r.udp.Close()
	}
	if r.tcp != nil {
		r.tcp.Close()
	}
	r.wg.Wait()
}

// allowed reports whether a client may query: only the network's own.
func (r *responder) allowed(a netip.Addr) bool {
	return r.subnet.Contains(a.Unmap())
}

// serveUDP answers the queries that come over UDP.
func (r *responder) serveUDP() {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := r.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.logf("dns %s: read: %v", r.network, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !r.allowed(from.Addr()) {
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		resp, forward := r.answer(q)
		if resp != nil {
			_, _ = r.udp.WriteToUDPAddrPort(resp, from)
			continue
		}
		if !forward {
			continue
		}
		select {
		case r.inflight <- struct{}{}:
		default:
			continue // too busy: the client retries
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.inflight }()
			resp := r.forward(q, "udp")
			if resp != nil {
				_, _ = r.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

// serveTCP accepts the TCP clients.
func (r *responder) serveTCP() {
	defer r.wg.Done()
	for {
		c, err := r.tcp.AcceptTCP()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.logf("dns %s: accept: %v", r.network, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		from, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if !r.allowed(from.Addr()) {
			c.Close()
			continue
		}
		select {
		case r.tcpConns <- struct{}{}:
		default:
			c.Close()
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.tcpConns }()
			r.serveConn(c)
		}()
	}
}

// serveConn answers the length-prefixed queries of one TCP client, one at
// a time, until it goes idle or the responder stops. The client is
// untrusted: a query must arrive whole, and its answer be read, within
// r.idle, and a query is at most 64 KiB (its 2-byte length).
func (r *responder) serveConn(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(r.ctx, func() { c.Close() })
	defer stop()
	for {
		if err := c.SetDeadline(time.Now().Add(r.idle)); err != nil {
			return // without a deadline, a silent client would hold the connection for good
		}
		q, err := readTCPMsg(c)
		if err != nil {
			return
		}
		resp, forward := r.answer(q)
		if resp == nil && forward {
			resp = r.forward(q, "tcp")
		}
		if resp == nil {
			return
		}
		if err := writeTCPMsg(c, resp); err != nil {
			return
		}
	}
}

// readTCPMsg reads one DNS message with its 2-byte length prefix.
func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// writeTCPMsg writes one DNS message with its 2-byte length prefix.
func writeTCPMsg(w io.Writer, msg []byte) error {
	if len(msg) > 0xffff {
		return errors.New("dns message too long")
	}
	b := make([]byte, 2, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	_, err := w.Write(append(b, msg...))
	return err
}

// answer answers the query q from the records: it returns the response,
// or nil and whether q is to be forwarded to the upstream nameservers, or
// nil and false to drop it (not a query: too short, a response).
func (r *responder) answer(q []byte) (resp []byte, forward bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, false
	}
	if h.OpCode != 0 {
		return r.reply(h, nil, dnsmessage.RCodeNotImplemented, nil), false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return r.reply(h, nil, dnsmessage.RCodeFormatError, nil), false
	}
	question := qs[0]
	name := strings.ToLower(question.Name.String())
	if addrs, ok := (*r.records.Load())[name]; ok && question.Class == dnsmessage.ClassINET {
		if question.Type == dnsmessage.TypeA || question.Type == dnsmessage.TypeALL {
			return r.reply(h, &question, dnsmessage.RCodeSuccess, rotate(addrs, h.ID, len(name))), false
		}
		// The name exists but has no record of the type asked for.
		return r.reply(h, &question, dnsmessage.RCodeSuccess, nil), false
	}
	// Names under the network's name are the responder's own, and so are
	// single-label A and AAAA queries: nobody upstream knows them.
	single := strings.Count(name, ".") == 1 && name != "."
	if strings.HasSuffix(name, "."+r.network+".") ||
		single && (question.Type == dnsmessage.TypeA || question.Type == dnsmessage.TypeAAAA) {
		return r.reply(h, &question, dnsmessage.RCodeNameError, nil), false
	}
	return nil, true
}

// maxUDPAnswer is the size of a DNS message over UDP without EDNS0: the
// answers of a name many arrows share are cut to fit it.
const maxUDPAnswer = 512

// rotate returns the addresses of a name to answer with: all of them, or
// as many as fit in maxUDPAnswer beside a question of a name nameLen long,
// starting at an offset that the query's ID picks, so that the clients of
// a shared alias spread over its arrows (as round-robin DNS does).
func rotate(addrs []netip.Addr, id uint16, nameLen int) []netip.Addr {
	if len(addrs) == 0 {
		return nil
	}
	// Header 12 bytes; the question: the name on the wire (its text
	// length plus one) and type and class; each A record: a compression
	// pointer, type, class, TTL, length and 4 bytes of address.
	fit := max((maxUDPAnswer-12-(nameLen+1)-4)/16, 1)
	n := min(len(addrs), fit)
	out := make([]netip.Addr, 0, n)
	start := int(id) % len(addrs)
	for i := range n {
		out = append(out, addrs[(start+i)%len(addrs)])
	}
	return out
}

// reply builds a response to the query with header h: the question q
// (none when nil), the code rc and an A record for each of addrs.
func (r *responder) reply(h dnsmessage.Header, q *dnsmessage.Question, rc dnsmessage.RCode, addrs []netip.Addr) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		Authoritative:      q != nil && rc != dnsmessage.RCodeServerFailure,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
		RCode:              rc,
	})
	b.EnableCompression()
	if q == nil {
		msg, err := b.Finish()
		if err != nil {
			return nil
		}
		return msg
	}
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if err := b.Question(*q); err != nil {
		return nil
	}
	if len(addrs) > 0 {
		if err := b.StartAnswers(); err != nil {
			return nil
		}
		for _, addr := range addrs {
			if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: recordTTL},
				dnsmessage.AResource{A: addr.As4()}); err != nil {
				return nil
			}
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// forward sends the query q to the upstream nameservers in turn, over
// network ("udp" or "tcp"), and returns the first answer, or SERVFAIL when
// none answers in time.
func (r *responder) forward(q []byte, network string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	ups := r.upstreams()
	if len(ups) > maxUpstreams {
		ups = ups[:maxUpstreams]
	}
	for _, up := range ups {
		if r.ctx.Err() != nil {
			return nil
		}
		resp, err := r.exchange(q, network, up)
		if err != nil {
			r.logf("dns %s: forward to %s: %v", r.network, up, err)
			continue
		}
		var rp dnsmessage.Parser
		rh, err := rp.Start(resp)
		if err != nil || rh.ID != h.ID || !rh.Response {
			continue
		}
		return resp
	}
	var question *dnsmessage.Question
	if qs, err := p.AllQuestions(); err == nil && len(qs) == 1 {
		question = &qs[0]
	}
	return r.reply(h, question, dnsmessage.RCodeServerFailure, nil)
}

// exchange sends q to one nameserver and reads its answer.
func (r *responder) exchange(q []byte, network string, up netip.AddrPort) ([]byte, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if network == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			return nil, err
		}
		return readTCPMsg(c)
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Skip stray datagrams whose ID is not the query's.
		if n >= 2 && len(q) >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}
