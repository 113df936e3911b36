package network

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// tcpStream frames msgs as DNS over TCP does: each after its 2-byte length.
func tcpStream(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// splitStream returns the whole length-prefixed messages at the start of
// stream, as the responder reads them.
func splitStream(stream []byte) [][]byte {
	var msgs [][]byte
	for len(stream) >= 2 {
		n := int(binary.BigEndian.Uint16(stream))
		if len(stream) < 2+n {
			break
		}
		msgs = append(msgs, stream[2:2+n])
		stream = stream[2+n:]
	}
	return msgs
}

// converse feeds stream to the responder's handling of one TCP client, as
// that client, and returns the answers it reads back. It fails the test
// when the handling outlives limit.
func converse(t *testing.T, r *responder, stream []byte, limit time.Duration) [][]byte {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serveConn(server)
	}()
	// The client writes and then stalls, as a slow or hostile one
	// would: the responder must let go of it by itself.
	go func() { _, _ = client.Write(stream) }()
	answers := make(chan [][]byte, 1)
	go func() {
		var got [][]byte
		for {
			m, err := readTCPMsg(client)
			if err != nil {
				answers <- got
				return
			}
			got = append(got, m)
		}
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("the responder still holds the connection after %s (stream %x)", limit, stream)
	}
	select {
	case got := <-answers:
		return got
	case <-time.After(limit):
		t.Fatal("the connection is not closed after the responder let go of it")
		return nil
	}
}

// checkAnswers checks the answers to the stream of queries: at most one
// per whole query, in order, each a response with the query's ID.
func checkAnswers(t *testing.T, stream []byte, answers [][]byte) {
	t.Helper()
	queries := splitStream(stream)
	if len(answers) > len(queries) {
		t.Fatalf("%d answers to %d queries", len(answers), len(queries))
	}
	for i, a := range answers {
		var p dnsmessage.Parser
		h, err := p.Start(a)
		if err != nil {
			t.Fatalf("answer %d %x: %v", i, a, err)
		}
		q := queries[i]
		if !h.Response || len(q) < 2 || h.ID != binary.BigEndian.Uint16(q) {
			t.Fatalf("answer %d %+v to query %x", i, h, q)
		}
	}
}

func TestServeConn(t *testing.T) {
	r := testResponder()
	r.idle = 100 * time.Millisecond
	defer r.close()
	web := query(t, 1, "web.", dnsmessage.TypeA)
	for _, tc := range []struct {
		name    string
		stream  []byte
		answers int
	}{
		{"two queries", tcpStream(web, query(t, 2, "example.com.", dnsmessage.TypeA)), 2},
		{"a query, then half of one", append(tcpStream(web), 0, 40, 1, 2, 3), 1},
		{"a length alone", []byte{0xff, 0xff}, 0},
		{"one byte", []byte{0}, 0},
		{"nothing", nil, 0},
		{"an empty message ends it", tcpStream(nil, web), 0},
		{"a response ends it", tcpStream([]byte{0, 7, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, web), 0},
		{"a bad question count is answered", tcpStream([]byte{0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0}, web), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got := converse(t, r, tc.stream, 2*time.Second)
			checkAnswers(t, tc.stream, got)
			if len(got) != tc.answers {
				t.Errorf("%d answers, want %d", len(got), tc.answers)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	// A client that trickles a query byte by byte, slower than the idle
	// time in all, is cut off.
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan struct{})
	go func() { defer close(done); r.serveConn(server) }()
	go func() {
		for _, b := range tcpStream(web) {
			if _, err := client.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("a trickling client holds the connection")
	}
}

func FuzzServeConn(f *testing.F) {
	web := query(f, 1, "web.", dnsmessage.TypeA)
	f.Add(tcpStream(web))
	f.Add(tcpStream(web, query(f, 2, "web.front.", dnsmessage.TypeAAAA), query(f, 3, "example.com.", dnsmessage.TypeMX)))
	f.Add(append(tcpStream(web), 0xff, 0xff, 0))
	f.Add(tcpStream([]byte{0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0}))
	f.Add(tcpStream(nil))
	f.Add([]byte{})
	r := testResponder()
	// Short, so that each input, which ends with a stalled client, is
	// done with quickly.
	r.idle = 5 * time.Millisecond
	f.Cleanup(r.close)
	f.Fuzz(func(t *testing.T, stream []byte) {
		checkAnswers(t, stream, converse(t, r, stream, 5*time.Second))
	})
}
