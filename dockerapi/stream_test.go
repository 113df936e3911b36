package dockerapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStreamWriter(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxFramePayload+10)
	for _, tc := range []struct {
		name   string
		raw    bool
		writes []struct {
			stream byte
			p      []byte
		}
		// frames are the (stream, length) of the frames expected, or for
		// raw the bytes.
		frames [][2]int
		rawOut string
	}{
		{
			name: "stdout and stderr stay apart",
			writes: []struct {
				stream byte
				p      []byte
			}{{stdoutStream, []byte("out\n")}, {stderrStream, []byte("err\n")}, {stdoutStream, []byte("more")}},
			frames: [][2]int{{1, 4}, {2, 4}, {1, 4}},
		},
		{
			name: "a write larger than a frame is split",
			writes: []struct {
				stream byte
				p      []byte
			}{{stdoutStream, big}},
			frames: [][2]int{{1, maxFramePayload}, {1, 10}},
		},
		{
			name: "an empty write sends nothing",
			writes: []struct {
				stream byte
				p      []byte
			}{{stdoutStream, nil}},
		},
		{
			name: "a TTY's output is raw",
			raw:  true,
			writes: []struct {
				stream byte
				p      []byte
			}{{stdoutStream, []byte("a")}, {stderrStream, []byte("b")}},
			rawOut: "ab",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			flushes := 0
			sw := &streamWriter{w: &buf, raw: tc.raw, flush: func() error { flushes++; return nil }}
			for _, w := range tc.writes {
				if err := sw.write(w.stream, w.p); err != nil {
					t.Fatal(err)
				}
			}
			if flushes != len(tc.writes) {
				t.Errorf("%d flushes for %d writes", flushes, len(tc.writes))
			}
			if tc.raw {
				if buf.String() != tc.rawOut {
					t.Errorf("raw output %q, want %q", buf.String(), tc.rawOut)
				}
				return
			}
			// Read back by hand, not with readMuxFrame alone: the header's
			// layout is the wire format clients parse.
			data := buf.Bytes()
			var got [][2]int
			var payload []byte
			for len(data) > 0 {
				if len(data) < 8 || data[1] != 0 || data[2] != 0 || data[3] != 0 {
					t.Fatalf("bad header % x", data[:min(8, len(data))])
				}
				n := int(binary.BigEndian.Uint32(data[4:8]))
				got = append(got, [2]int{int(data[0]), n})
				payload = append(payload, data[8:8+n]...)
				data = data[8+n:]
			}
			if len(got) != len(tc.frames) {
				t.Fatalf("frames %v, want %v", got, tc.frames)
			}
			for i := range got {
				if got[i] != tc.frames[i] {
					t.Errorf("frame %d: %v, want %v", i, got[i], tc.frames[i])
				}
			}
			var want []byte
			for _, w := range tc.writes {
				want = append(want, w.p...)
			}
			if !bytes.Equal(payload, want) {
				t.Error("payloads differ from what was written")
			}
		})
	}
}

func TestReadMuxFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := writeMuxFrame(&buf, stderrStream, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	st, p, err := readMuxFrame(&buf)
	if err != nil || st != stderrStream || string(p) != "hello" {
		t.Fatalf("read %d %q %v", st, p, err)
	}
	if _, _, err := readMuxFrame(&buf); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: %v, want EOF", err)
	}
	for _, bad := range []string{
		"\x01\x00\x00",                       // a short header
		"\x05\x00\x00\x00\x00\x00\x00\x01x",  // an unknown stream
		"\x01\x00\x00\x00\x7f\xff\xff\xff",   // too large
		"\x01\x00\x00\x00\x00\x00\x00\x05ab", // short payload
	} {
		if _, _, err := readMuxFrame(strings.NewReader(bad)); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("read % x: %v, want an error", bad, err)
		}
	}
}
