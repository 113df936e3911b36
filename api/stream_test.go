package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	type frame struct {
		stream byte
		data   []byte
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (2*maxFrame+100)/16)
	for _, tc := range []struct {
		name string
		in   []frame
		want []frame // nil: the same as in
	}{
		{"one", []frame{{StreamStdout, []byte("hello\n")}}, nil},
		{"both streams", []frame{{StreamStdout, []byte("out")}, {StreamStderr, []byte("err")}, {StreamStdout, []byte{0, 1, 2, 255}}}, nil},
		{"empty writes nothing", []frame{{StreamStdout, nil}, {StreamStderr, []byte("x")}}, []frame{{StreamStderr, []byte("x")}}},
		{"exactly max", []frame{{StreamStdout, big[:maxFrame]}}, nil},
		{"split", []frame{{StreamStderr, big}}, []frame{
			{StreamStderr, big[:maxFrame]},
			{StreamStderr, big[maxFrame : 2*maxFrame]},
			{StreamStderr, big[2*maxFrame:]},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			for _, f := range tc.in {
				if err := WriteFrame(&buf, f.stream, f.data); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.want
			if want == nil {
				want = tc.in
			}
			for i, w := range want {
				s, p, err := ReadFrame(&buf)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if s != w.stream || !bytes.Equal(p, w.data) {
					t.Fatalf("frame %d: stream %d, %d bytes; want %d, %d bytes", i, s, len(p), w.stream, len(w.data))
				}
			}
			if _, _, err := ReadFrame(&buf); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, StreamStderr, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	want := []byte{2, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame % x, want % x (docker's framing)", buf.Bytes(), want)
	}
}

func header(stream byte, n uint32) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], n)
	return h
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		err  string // a substring; "EOF" and "unexpected EOF" are checked by errors.Is
	}{
		{"empty", nil, "EOF"},
		{"short header", []byte{1, 0, 0}, "unexpected EOF"},
		{"stdin stream", append(header(0, 1), 'x'), "unknown stream 0"},
		{"stream 3", append(header(3, 1), 'x'), "unknown stream 3"},
		{"stream 255", header(255, 0), "unknown stream 255"},
		{"oversize", header(StreamStdout, maxFrame+1), "exceeds"},
		{"huge", header(StreamStdout, 0xffffffff), "exceeds"},
		{"truncated payload", append(header(StreamStdout, 10), "abc"...), "unexpected EOF"},
		{"no payload", header(StreamStderr, 1), "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p, err := ReadFrame(bytes.NewReader(tc.in))
			if err == nil {
				t.Fatalf("ReadFrame = %d, %q; want an error", s, p)
			}
			switch tc.err {
			case "EOF":
				if err != io.EOF {
					t.Fatalf("err %v, want io.EOF", err)
				}
			case "unexpected EOF":
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
				}
			default:
				if !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
			}
		})
	}
	// An empty frame is a frame.
	s, p, err := ReadFrame(bytes.NewReader(header(StreamStdout, 0)))
	if err != nil || s != StreamStdout || len(p) != 0 {
		t.Fatalf("empty frame: %d, %q, %v", s, p, err)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("broken")
	}
	w.n--
	return len(p), nil
}

func TestWriteFrameError(t *testing.T) {
	big := make([]byte, 3*maxFrame)
	if err := WriteFrame(&failWriter{n: 1}, StreamStdout, big); err == nil || err.Error() != "broken" {
		t.Fatalf("WriteFrame = %v, want the writer's error", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(append(header(StreamStdout, 3), "abc"...))
	f.Add(append(append(header(StreamStderr, 1), 'x'), header(StreamStdout, 0)...))
	f.Add(header(StreamStdout, maxFrame+1))
	f.Add(header(7, 2))
	f.Add(append(header(StreamStdout, 5), "ab"...))
	f.Add([]byte("\x02000\x00\x00\x00\x00")) // bytes 1-3 are ignored, as in docker
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		off := 0
		for {
			s, p, err := ReadFrame(r)
			if err != nil {
				if err != io.EOF && r.Len() > 0 && !strings.Contains(err.Error(), "stream") {
					t.Fatalf("error %v with %d bytes unread", err, r.Len())
				}
				break
			}
			if s != StreamStdout && s != StreamStderr {
				t.Fatalf("stream %d accepted", s)
			}
			if len(p) > maxFrame {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
			// The frame is what the input says, and writes back as it
			// (but for bytes 1-3, which are ignored; and an empty frame,
			// which WriteFrame does not write).
			var out bytes.Buffer
			if err := WriteFrame(&out, s, p); err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(b[off : off+8+len(p)])
			want[1], want[2], want[3] = 0, 0, 0
			if len(p) > 0 && !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("frame at %d re-encodes differently", off)
			}
			off += 8 + len(p)
			if off != len(b)-r.Len() {
				t.Fatalf("read %d bytes, frames account for %d", len(b)-r.Len(), off)
			}
		}
	})
}
