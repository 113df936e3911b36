package guest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/guest"
	"github.com/arrowsys/arrow/guest/guesttest"
)

// TestFreezeThaw drives a freeze and a thaw through a client whose Events
// pump runs (the application's output flows before and after), and checks
// what each end saw and said.
func TestFreezeThaw(t *testing.T) {
	g, c := newPair(t)
	g.Stdout("before\n")
	evs := c.Events()
	if ev := <-evs; ev.Kind != guest.EventStdout || string(ev.Data) != "before\n" {
		t.Fatalf("first event %v %q", ev.Kind, ev.Data)
	}
	done := make(chan error, 1)
	go func() { done <- c.Freeze(testCtx(t)) }()
	if _, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return slices.Contains(r.Frames, guest.FrameFreeze) }); err != nil {
		t.Fatal(err)
	}
	g.SendJSON(guest.FrameFrozen, guest.Frozen{})
	if err := <-done; err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	thaw := &guest.Thaw{Clone: true, Hostname: "clone", MachineID: strings.Repeat("ab", 16), MAC: "02:00:00:00:00:07", Seed: []byte("0123456789"), Signal: 12}
	go func() { done <- c.Thaw(testCtx(t), thaw) }()
	r, err := g.Wait(testCtx(t), func(r guesttest.Received) bool { return len(r.Thaws) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Thaws[0]; got.Hostname != "clone" || got.MAC != thaw.MAC || got.Signal != 12 || string(got.Seed) != "0123456789" {
		t.Fatalf("the guest received %+v", got)
	}
	g.SendJSON(guest.FrameThawed, guest.Thawed{})
	if err := <-done; err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	g.Stdout("after\n")
	if ev := <-evs; ev.Kind != guest.EventStdout || string(ev.Data) != "after\n" {
		t.Fatalf("event after the thaw %v %q", ev.Kind, ev.Data)
	}
}

// TestFreezeAnswers covers the guest's other answers: a refusal, a failed
// thaw, and a guest that dies instead of answering.
func TestFreezeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		thaw  bool // the call is Thaw, not Freeze
		guest func(g *guesttest.Guest)
		want  string
	}{
		{"refused", false, func(g *guesttest.Guest) { g.SendJSON(guest.FrameFrozen, guest.Frozen{Error: "1 exec'd processes run"}) }, "the guest refused: 1 exec'd processes run"},
		{"thaw failed", true, func(g *guesttest.Guest) { g.SendJSON(guest.FrameThawed, guest.Thawed{Error: "set clock: EPERM"}) }, "thaw: set clock: EPERM"},
		{"long refusal bounded", false, func(g *guesttest.Guest) {
			g.SendJSON(guest.FrameFrozen, guest.Frozen{Error: strings.Repeat("x", 10000)})
		}, strings.Repeat("x", 256) + "..."},
		{"guest died", false, func(g *guesttest.Guest) { g.Die() }, "freeze:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, c := newPair(t)
			tc.guest(g)
			var err error
			if tc.thaw {
				err = c.Thaw(testCtx(t), &guest.Thaw{})
			} else {
				err = c.Freeze(testCtx(t))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), strings.Repeat("x", 257)) {
				t.Fatal("the guest's message was not bounded")
			}
		})
	}
}

func TestThawValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		thaw guest.Thaw
		ok   bool
	}{
		{"the arrow itself", guest.Thaw{}, true},
		{"a clone", guest.Thaw{Clone: true, Hostname: "web-1", MachineID: strings.Repeat("0f", 16), MAC: "02:a7:70:00:00:02", Seed: make([]byte, 64), Signal: 10}, true},
		{"identity without clone", guest.Thaw{Hostname: "x"}, false},
		{"seed too long", guest.Thaw{Clone: true, Seed: make([]byte, guest.MaxSeed+1)}, false},
		{"bad host name", guest.Thaw{Clone: true, Hostname: "a b"}, false},
		{"bad machine ID", guest.Thaw{Clone: true, MachineID: "XYZ"}, false},
		{"bad MAC", guest.Thaw{Clone: true, MAC: "02:a7"}, false},
		{"bad signal", guest.Thaw{Clone: true, Signal: 65}, false},
		{"negative signal", guest.Thaw{Clone: true, Signal: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.thaw.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
