package daemon

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

// An arrow created with AutoRemove (a foreground arrow run through
// arrowd) is removed once its run ends, or once its start failed; the
// attach and the wait made before its start have its whole output and its
// status all the same.
func TestAutoRemove(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fakeShim bool // else the start fails: no shim binary
		exit     int
	}{
		{"run ends", true, fakeExit},
		{"start fails", false, 125},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d *Daemon
			if tc.fakeShim {
				d = newFakeShimDaemon(t)
			} else {
				d = newTestDaemon(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a, err := d.Create(ctx, &api.CreateRequest{Config: api.Config{Program: "/bin/true"}, NoStart: true, AutoRemove: true})
			if err != nil {
				t.Fatal(err)
			}
			events := d.events.subscribe()
			defer d.events.unsubscribe(events)
			at, err := d.OpenAttach(ctx, a.ID, AttachOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wait, err := d.OpenWaitNext(a.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.StartExisting(ctx, a.ID)
			if tc.fakeShim != (err == nil) {
				t.Fatalf("start: %v", err)
			}
			if tc.fakeShim {
				conn, br, err := at.Wait(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, conn, br); got != wantLines() {
					t.Fatalf("attached: %d bytes, want %d", len(got), len(wantLines()))
				}
			} else if _, _, err := at.Wait(ctx); err == nil {
				t.Fatal("an attach to a start that failed got a stream")
			}
			w, err := wait(ctx)
			if err != nil || w.ExitCode != tc.exit {
				t.Fatalf("wait: %+v, %v; want exit %d", w, err, tc.exit)
			}
			for e := range events {
				if e.ID == a.ID && e.Type == "destroy" {
					break
				}
			}
			if _, err := d.Get(a.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after its run: %v", err)
			}
			if _, err := os.Stat(a.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("its directory: %v", err)
			}
		})
	}
}

// A daemon that starts finds the arrows an earlier one left with
// AutoRemove (whose clients went with it) and removes them; others stay.
func TestRecoverAutoRemove(t *testing.T) {
	cfg := testConfig(t)
	recs := []struct {
		rec  *record
		kept bool
	}{
		{&record{Arrow: api.Arrow{ID: testID('a'), Name: "exited", State: api.Exited, AutoRemove: true, Config: api.Config{Program: "/bin/true"}}}, false},
		{&record{Arrow: api.Arrow{ID: testID('b'), Name: "created", State: api.Created, AutoRemove: true, Config: api.Config{Program: "/bin/true"}}}, false},
		{&record{Arrow: api.Arrow{ID: testID('c'), Name: "launching", State: api.Starting, AutoRemove: true, Config: api.Config{Program: "/bin/true"}}, Launching: true}, false},
		{&record{Arrow: api.Arrow{ID: testID('d'), Name: "kept", State: api.Exited, Config: api.Config{Program: "/bin/true"}}}, true},
	}
	for _, r := range recs {
		putRecord(t, cfg, r.rec)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Close waits for the daemon's work, the removals among it.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(cfg.Root + "/arrowd.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	left, _ := st.all()
	names := map[string]bool{}
	for _, r := range left {
		names[r.Name] = true
	}
	for _, r := range recs {
		if names[r.rec.Name] != r.kept {
			t.Errorf("%s: kept %v, want %v", r.rec.Name, names[r.rec.Name], r.kept)
		}
		if _, err := os.Stat(r.rec.Dir); r.kept == errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: directory: %v", r.rec.Name, err)
		}
	}
}
