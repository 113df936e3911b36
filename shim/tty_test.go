package shim

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/guest"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want guest.WindowSize
		err  string
	}{
		{"h=24&w=80", guest.WindowSize{Rows: 24, Cols: 80}, ""},
		{"h=1&w=65535", guest.WindowSize{Rows: 1, Cols: 65535}, ""},
		{"", guest.WindowSize{}, `h=""`},
		{"h=24", guest.WindowSize{}, `w=""`},
		{"h=0&w=80", guest.WindowSize{}, "h=\"0\""},
		{"h=24&w=65536", guest.WindowSize{}, "w=\"65536\""},
		{"h=-1&w=80", guest.WindowSize{}, "h="},
		{"h=2x&w=80", guest.WindowSize{}, "h="},
	} {
		q, _ := url.ParseQuery(tc.q)
		got, err := ParseSize(q)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tc.q, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %v, %v; want an error with %q", tc.q, got, err, tc.err)
		}
	}
}

// The latest size asked for wins; none asked is the default.
func TestSizeLatestWins(t *testing.T) {
	s := &server{resize: make(chan guest.WindowSize, 1), launch: &Launch{}}
	if got := s.initialSize(); got != (guest.WindowSize{Rows: DefaultRows, Cols: DefaultCols}) {
		t.Errorf("initial size with none asked: %v", got)
	}
	for _, bad := range []guest.WindowSize{{}, {Rows: 5}, {Cols: 5}} {
		s.launch.Size = &bad
		if got := s.initialSize(); got != (guest.WindowSize{Rows: DefaultRows, Cols: DefaultCols}) {
			t.Errorf("initial size with launch size %v: %v", bad, got)
		}
	}
	s.launch.Size = &guest.WindowSize{Rows: 7, Cols: 9}
	if got := s.initialSize(); got != *s.launch.Size {
		t.Errorf("initial size from the launch: %v", got)
	}
	s.setSize(guest.WindowSize{Rows: 1, Cols: 2})
	s.setSize(guest.WindowSize{Rows: 3, Cols: 4})
	if got := s.initialSize(); got != (guest.WindowSize{Rows: 3, Cols: 4}) {
		t.Errorf("initial size after two: %v", got)
	}
	if got := s.initialSize(); got != *s.launch.Size {
		t.Errorf("a size taken twice: %v", got)
	}
}

// Between its "ok" and the daemon's "go" a shim answers: an attach is
// subscribed (and a resize taken) before the VM starts.
func TestShimServesBeforeGo(t *testing.T) {
	for _, tty := range []bool{false, true} {
		dir, l := writeTestLaunch(t)
		l.Config.TTY = tty
		if err := WriteLaunch(dir, l); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t.Setenv(envServe, dir)
		p, err := Start(ctx, os.Args[0], nil, dir)
		if err != nil {
			t.Fatal(err)
		}
		c := NewClient(l.Socket)
		conn, _, err := c.Attach(ctx, false)
		if err != nil {
			t.Fatalf("attach before go: %v", err)
		}
		once, _, err := c.Attach(ctx, true)
		if err != nil {
			t.Fatalf("attach with stdin_once before go: %v", err)
		}
		once.Close()
		err = c.Resize(ctx, 30, 100)
		var refused *StatusError
		switch {
		case tty && err != nil:
			t.Errorf("resize of a tty arrow before go: %v", err)
		case !tty && (!errors.As(err, &refused) || refused.Code != http.StatusConflict):
			t.Errorf("resize of an arrow without a terminal: %v, want 409", err)
		}
		if tty {
			if err := c.Resize(ctx, 0, 100); !errors.As(err, &refused) || refused.Code != http.StatusBadRequest {
				t.Errorf("resize to 0 rows: %v, want 400", err)
			}
		}
		p.Abandon()
		select {
		case <-p.Done:
		case <-time.After(10 * time.Second):
			t.Fatal("an abandoned shim still runs")
		}
		// Its attaches end with it.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("attach after the shim ended: %d, %v", n, err)
		}
		conn.Close()
	}
}
