package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cancel  bool
		want    string
		wantErr error
	}{
		{"live context reads all", false, "hello", nil},
		{"done context reads nothing", true, "", context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			b, err := io.ReadAll(NewReader(ctx, strings.NewReader("hello")))
			if string(b) != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadAll = %q, %v; want %q, %v", b, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestReaderStopsMidway: a copy already under way stops at the next read
// once the context ends.
func TestReaderStopsMidway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewReader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 2)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %d, %v; want 0, context.Canceled", n, err)
	}
}
