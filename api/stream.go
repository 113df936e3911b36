package api

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Attach streams (`GET /v1/arrows/{id}/attach`, after the connection is
// upgraded) carry the application's output from the server as frames: an
// 8-byte header, the stream (1 stdout, 2 stderr) in the first byte and the
// payload's length big-endian in the last four, then the payload. It is the
// framing docker's attach uses, so tools that know one know the other. The
// client sends raw bytes: the application's standard input.
const (
	StreamStdout = 1
	StreamStderr = 2
)

// maxFrame bounds a frame's payload; a reader refuses larger ones rather
// than allocating what a broken peer claims.
const maxFrame = 1 << 20

// WriteFrame writes p as one frame of stream.
func WriteFrame(w io.Writer, stream byte, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		var h [8]byte
		h[0] = stream
		binary.BigEndian.PutUint32(h[4:], uint32(n))
		if _, err := w.Write(append(h[:], p[:n]...)); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// ReadFrame reads one frame. It returns io.EOF at a clean end between
// frames.
func ReadFrame(r io.Reader) (stream byte, p []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[4:])
	if h[0] != StreamStdout && h[0] != StreamStderr {
		return 0, nil, fmt.Errorf("attach stream: unknown stream %d", h[0])
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach stream: frame of %d bytes exceeds %d", n, maxFrame)
	}
	p = make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("attach stream: %w", io.ErrUnexpectedEOF)
	}
	return h[0], p, nil
}
