package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	big := bytes.Repeat([]byte{'x'}, MaxPayload+10)
	sends := []Frame{
		{FrameStart, []byte(`{"args":["/bin/true"]}`)},
		{FrameStdin, nil},
		{FrameStdout, []byte("hello\n")},
		{FrameStderr, big},
		{FrameExit, []byte(`{"reason":"exited"}`)},
		{FrameExitAck, nil},
	}
	for _, f := range sends {
		if err := c.Send(f.Type, f.Payload); err != nil {
			t.Fatalf("Send(%s): %v", f.Type, err)
		}
	}
	want := []Frame{sends[0], sends[1], sends[2],
		{FrameStderr, big[:MaxPayload]}, {FrameStderr, big[MaxPayload:]}, sends[4], sends[5]}
	for i, w := range want {
		got, err := c.Recv()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.Type != w.Type || !bytes.Equal(got.Payload, w.Payload) {
			t.Fatalf("frame %d: got %s (%d bytes), want %s (%d bytes)", i, got.Type, len(got.Payload), w.Type, len(w.Payload))
		}
	}
	if _, err := c.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestRecvRejects(t *testing.T) {
	header := func(typ byte, n uint32) []byte {
		h := make([]byte, headerSize)
		h[0] = typ
		binary.BigEndian.PutUint32(h[4:], n)
		return h
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown type", header(200, 0), ErrUnknownFrame},
		{"zero type", header(0, 0), ErrUnknownFrame},
		{"too large", header(byte(FrameStdout), MaxPayload+1), ErrFrameTooLarge},
		{"truncated payload", append(header(byte(FrameStdout), 10), "abc"...), io.ErrUnexpectedEOF},
		{"truncated header", []byte{byte(FrameStdout), 0, 0}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConn(bytes.NewReader(tt.in), io.Discard)
			if _, err := c.Recv(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzRecv feeds arbitrary bytes, as a hostile guest could, to the host's
// frame reader and message decoders: they must fail cleanly, never panic
// or allocate beyond MaxPayload per frame.
func FuzzRecv(f *testing.F) {
	var seed bytes.Buffer
	c := NewConn(nil, &seed)
	_ = c.SendJSON(FrameReady, Hello{Version: ProtocolVersion, Kernel: "6.1"})
	_ = c.Send(FrameStdout, []byte("out"))
	_ = c.SendJSON(FrameExit, ExitStatus{Reason: Signaled, Signal: 9})
	_ = c.SendJSON(FrameWarmed, Warmed{Steps: []string{"decode", "disk"}, Error: "x", Nanos: 5})
	f.Add(seed.Bytes())
	f.Add([]byte{byte(FrameExit), 0, 0, 0, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{byte(FrameStart), 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewConn(bytes.NewReader(data), io.Discard)
		for {
			fr, err := c.Recv()
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload of %d bytes accepted", len(fr.Payload))
			}
			switch fr.Type {
			case FrameExit:
				var st ExitStatus
				if Decode(fr.Payload, &st) == nil {
					if code := st.ExitCode(); code < 0 || code > 255 {
						t.Fatalf("exit code %d out of range for %+v", code, st)
					}
				}
			case FrameStart:
				var s Spec
				if Decode(fr.Payload, &s) == nil {
					_ = s.Validate()
				}
			case FrameReady:
				var h Hello
				_ = Decode(fr.Payload, &h)
			case FrameWarmed:
				var w Warmed
				_ = Decode(fr.Payload, &w)
			}
		}
	})
}
