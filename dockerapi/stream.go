package dockerapi

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Docker's multiplexed stream (attach, logs and exec without a TTY): each
// chunk of output is a frame of an 8-byte header, the stream in the first
// byte (0 stdin, 1 stdout, 2 stderr) and the payload's length big-endian in
// the last four, then the payload. With a TTY the output is one raw stream.
const (
	stdinStream  = 0
	stdoutStream = 1
	stderrStream = 2
)

// Content types of the two shapes of stream (API 1.42 and later name
// them; earlier clients ignore them).
const (
	rawStreamType = "application/vnd.docker.raw-stream"
	muxStreamType = "application/vnd.docker.multiplexed-stream"
)

// maxFramePayload bounds a frame: a larger write is split, so that a
// client's reader never sees a length it would refuse to allocate.
const maxFramePayload = 1 << 20

// streamWriter writes output to a client, framed (multiplexed) or raw,
// safe for concurrent use: attach and exec write stdout and stderr from
// one goroutine but errors from another.
type streamWriter struct {
	mu  sync.Mutex
	w   io.Writer
	raw bool
	// flush, if set, is called after each write: a streamed HTTP
	// response must reach the client as the output happens.
	flush func() error
}

// write sends p as output of stream (stdoutStream or stderrStream).
func (s *streamWriter) write(stream byte, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw {
		if _, err := s.w.Write(p); err != nil {
			return err
		}
	} else if err := writeMuxFrame(s.w, stream, p); err != nil {
		return err
	}
	if s.flush != nil {
		return s.flush()
	}
	return nil
}

// writeMuxFrame writes p as frames of stream, split at maxFramePayload.
func writeMuxFrame(w io.Writer, stream byte, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFramePayload)
		buf := make([]byte, 8+n)
		buf[0] = stream
		binary.BigEndian.PutUint32(buf[4:8], uint32(n))
		copy(buf[8:], p[:n])
		if _, err := w.Write(buf); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// readMuxFrame reads one frame of Docker's multiplexed stream, bounded as
// writeMuxFrame writes them. It returns io.EOF at a clean end between
// frames.
func readMuxFrame(r io.Reader) (stream byte, p []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0] > stderrStream || h[1] != 0 || h[2] != 0 || h[3] != 0 {
		return 0, nil, fmt.Errorf("multiplexed stream: bad header % x", h)
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n > maxFramePayload {
		return 0, nil, fmt.Errorf("multiplexed stream: frame of %d bytes exceeds %d", n, maxFramePayload)
	}
	p = make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, io.ErrUnexpectedEOF
	}
	return h[0], p, nil
}

// hijack takes over the client's connection for a bidirectional stream
// (attach, exec start), answering as dockerd does: 101 with Upgrade: tcp
// when the client asked to upgrade, else 200, then raw bytes both ways.
// The returned reader holds what the client sent after its request (its
// first input). The headers ServeHTTP set are sent too.
func hijack(w http.ResponseWriter, r *http.Request, contentType string) (net.Conn, *bufio.Reader, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	var b strings.Builder
	if strings.EqualFold(r.Header.Get("Upgrade"), "tcp") || headerHas(r.Header, "Connection", "upgrade") && r.Header.Get("Upgrade") != "" {
		b.WriteString("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n")
	} else {
		b.WriteString("HTTP/1.1 200 OK\r\n")
	}
	b.WriteString("Content-Type: " + contentType + "\r\n")
	for _, k := range []string{"Api-Version", "Docker-Experimental", "Ostype", "Server"} {
		if v := w.Header().Get(k); v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := brw.WriteString(b.String()); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	return conn, brw.Reader, nil
}

// headerHas reports whether the comma-separated header key lists token.
func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// closeWrite half-closes c when it can (its peer sees the end of input
// while output still flows back), else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// streamContentType is the content type of an output stream: raw with a
// TTY, else multiplexed, which API versions before 1.42 call raw too.
func streamContentType(r *http.Request, tty bool) string {
	if tty || !atLeast(r, "1.42") {
		return rawStreamType
	}
	return muxStreamType
}
