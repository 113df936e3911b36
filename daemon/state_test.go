package daemon

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/internal/syncbuf"
)

var allStates = []api.State{api.Created, api.Starting, api.Running, api.Restarting, api.Exited}

// Every pair of states: exactly the moves the daemon makes are legal.
func TestLegalMove(t *testing.T) {
	legal := map[[2]api.State]bool{
		{api.Created, api.Starting}:    true, // create
		{api.Exited, api.Starting}:     true, // arrow start, arrow restart
		{api.Restarting, api.Starting}: true, // restart by policy, or arrow start meanwhile
		{api.Created, api.Exited}:      true, // start failed before its shim
		{api.Exited, api.Exited}:       true, // start failed before its shim
		{api.Restarting, api.Exited}:   true, // restart failed before its shim, or cancelled
		{api.Starting, api.Exited}:     true, // start failed, or the run ended before it ran
		{api.Starting, api.Running}:    true,
		{api.Starting, api.Restarting}: true, // ended before it ran, restarted by policy
		{api.Running, api.Exited}:      true,
		{api.Running, api.Restarting}:  true,
	}
	for _, from := range append(allStates, "bogus") {
		for _, to := range append(allStates, "bogus") {
			if got, want := legalMove(from, to), legal[[2]api.State{from, to}]; got != want {
				t.Errorf("legalMove(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
}

// fullRecord is a record in state with every per-run field set, as the
// end of a run that started from a spare leaves it.
func fullRecord(state api.State) *record {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &record{
		Arrow: api.Arrow{
			ID: "0123456789abcdef", Name: "web", State: state,
			StartedAt: t0, FinishedAt: t0.Add(time.Minute),
			ExitCode: 3, Error: "boom", OOMKilled: true, Restarts: 2,
			Health: healthHealthy, StoppedByUser: true,
			Pid: 10, ShimPid: 11, Accel: "tcg", BootSeconds: 0.5,
			Template: "tmpl", Spare: true, StartPhases: []api.Phase{{Name: "spare", Seconds: 0.1}},
			Cgroup: "/sys/fs/cgroup/arrow/x",
		},
		ShimStart: 12, Socket: "/run/x.sock", Failures: 1, Launching: true,
	}
}

func TestTransition(t *testing.T) {
	// What a move to starting resets: everything of the last run.
	newRun := func(r *record) {
		r.Launching = true
		r.Pid, r.ShimPid, r.ShimStart = 0, 0, 0
		r.ExitCode, r.Error, r.OOMKilled, r.Health = 0, "", false, ""
		r.Template, r.Spare, r.StartPhases = "", false, nil
		r.StoppedByUser = false
		r.StartedAt, r.FinishedAt = time.Time{}, time.Time{}
	}
	// What a move to exited or restarting resets: the run's processes.
	runEnded := func(r *record) {
		r.Launching, r.Pid, r.ShimPid, r.ShimStart, r.Health = false, 0, 0, 0, ""
	}
	tests := []struct {
		from, to api.State
		want     func(r *record) // from fullRecord(from), what the move changes
	}{
		{api.Created, api.Starting, newRun},
		{api.Created, api.Exited, runEnded},
		{api.Starting, api.Restarting, runEnded},
		{api.Exited, api.Starting, newRun},
		{api.Restarting, api.Starting, newRun},
		// The shim's report is the caller's to record.
		{api.Starting, api.Running, func(r *record) {}},
		{api.Running, api.Exited, runEnded},
		{api.Running, api.Restarting, runEnded},
		{api.Starting, api.Exited, runEnded},
		{api.Restarting, api.Exited, runEnded},
		{api.Exited, api.Exited, runEnded},
	}
	covered := make(map[[2]api.State]bool)
	for _, tt := range tests {
		covered[[2]api.State{tt.from, tt.to}] = true
	}
	for _, from := range allStates {
		for _, to := range allStates {
			if legalMove(from, to) && !covered[[2]api.State{from, to}] {
				t.Errorf("the legal move %s → %s is not tested here", from, to)
			}
		}
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"-"+string(tt.to), func(t *testing.T) {
			r := fullRecord(tt.from)
			if err := r.transition(tt.to); err != nil {
				t.Fatal(err)
			}
			want := fullRecord(tt.from)
			tt.want(want)
			want.State = tt.to
			if !reflect.DeepEqual(r, want) {
				t.Errorf("after %s → %s:\n got %+v\nwant %+v", tt.from, tt.to, r, want)
			}
		})
	}
}

// An illegal move is an error naming it, and leaves the record as it was.
func TestTransitionIllegal(t *testing.T) {
	for _, m := range [][2]api.State{
		{api.Running, api.Starting},   // a second start over a run
		{api.Running, api.Running},    // reported twice
		{api.Exited, api.Running},     // a report of a run that ended
		{api.Exited, api.Restarting},  // restarted after it was recorded ended
		{api.Created, api.Running},    // ran without starting
		{api.Restarting, api.Created}, // nothing goes back to created
		{api.Starting, "paused"},      // no such state
	} {
		r := fullRecord(m[0])
		err := r.transition(m[1])
		if err == nil || !strings.Contains(err.Error(), string(m[0])+" → "+string(m[1])) {
			t.Errorf("%s → %s: %v", m[0], m[1], err)
		}
		if !reflect.DeepEqual(r, fullRecord(m[0])) {
			t.Errorf("%s → %s changed the record: %+v", m[0], m[1], r)
		}
	}
}

// closed reports whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// moveLocked commits the move, and wakes the run's waiters and the
// arrow's as the run leaves starting and ends; a refused move is logged
// and changes nothing, neither in memory nor in the store.
func TestMoveLocked(t *testing.T) {
	var log syncbuf.Buffer
	cfg := testConfig(t)
	cfg.Log = &log
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := &arrow{rec: &record{Arrow: api.Arrow{ID: testID('m'), Name: "web", State: api.Created}}}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.arrows[a.rec.ID] = a
	stored := func() api.State {
		t.Helper()
		recs, _ := d.st.all()
		if len(recs) != 1 {
			t.Fatalf("%d records stored", len(recs))
		}
		return recs[0].State
	}

	if err := d.moveLocked(a, api.Starting, func(r *record) { r.Socket = "/s" }); err != nil {
		t.Fatal(err)
	}
	if a.rec.State != api.Starting || !a.rec.Launching || a.rec.Socket != "/s" || stored() != api.Starting {
		t.Fatalf("after the start: %+v", a.rec)
	}
	rs := newRunState(nil, nil)
	a.run = rs
	change := a.nextChangeLocked()

	if err := d.moveLocked(a, api.Running, nil); err != nil {
		t.Fatal(err)
	}
	if !closed(rs.started) || closed(rs.ended) || !closed(change) || stored() != api.Running {
		t.Fatalf("running: started %v ended %v changed %v stored %s", closed(rs.started), closed(rs.ended), closed(change), stored())
	}
	change = a.nextChangeLocked()
	if closed(change) {
		t.Fatal("the next change is signalled before it happened")
	}

	if err := d.moveLocked(a, api.Running, nil); err == nil {
		t.Fatal("running → running was allowed")
	}
	if !strings.Contains(log.String(), "bug: arrow web: illegal state change running → running") {
		t.Errorf("log: %q", log.String())
	}
	if closed(change) || closed(rs.ended) {
		t.Error("a refused move woke waiters")
	}

	if err := d.moveLocked(a, api.Restarting, func(r *record) { r.Restarts++ }); err != nil {
		t.Fatal(err)
	}
	if !closed(rs.ended) || !closed(change) || a.rec.Restarts != 1 || stored() != api.Restarting {
		t.Fatalf("restarting: ended %v changed %v %+v", closed(rs.ended), closed(change), a.rec)
	}

	// A run that ends before it ran wakes those awaiting its start too.
	a.run = nil
	if err := d.moveLocked(a, api.Starting, nil); err != nil {
		t.Fatal(err)
	}
	rs2 := newRunState(nil, nil)
	a.run = rs2
	if err := d.moveLocked(a, api.Exited, nil); err != nil {
		t.Fatal(err)
	}
	if !closed(rs2.started) || !closed(rs2.ended) || stored() != api.Exited {
		t.Fatalf("ended while starting: started %v ended %v", closed(rs2.started), closed(rs2.ended))
	}

	a.removed = true
	if err := d.moveLocked(a, api.Starting, nil); err == nil || a.rec.State != api.Exited {
		t.Fatalf("a removed arrow moved: %v %s", err, a.rec.State)
	}
}

// The waits of a client return as soon as the run moves, not at the next
// tick of a poll, and with the run's state as the record has it.
func TestWaitsWakeOnMove(t *testing.T) {
	d := newTestDaemon(t)
	a := &arrow{rec: &record{Arrow: api.Arrow{ID: testID('w'), Name: "web", State: api.Created}}}
	d.mu.Lock()
	d.arrows[a.rec.ID] = a
	_ = d.moveLocked(a, api.Starting, nil)
	rs := newRunState(nil, nil)
	a.run = rs
	d.mu.Unlock()
	ctx := context.Background()

	// within runs f in the background and fails unless it returns within
	// a second of wake (and not before).
	within := func(name string, f func(), wake func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
			t.Fatalf("%s returned before the move", name)
		case <-time.After(50 * time.Millisecond):
		}
		wake()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatalf("%s did not return after the move", name)
		}
	}
	within("awaitStarted", func() { d.awaitStarted(ctx, rs) }, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		_ = d.moveLocked(a, api.Running, nil)
	})
	within("waitHealthy", func() { d.waitHealthy(ctx, rs) }, func() {
		_ = d.update(a, func(r *record) { r.Health = healthStarting }) // not settled: no wake
		time.Sleep(20 * time.Millisecond)
		select {
		case <-rs.settled:
			t.Error("health starting settled the wait")
		default:
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		a.rec.Health = healthHealthy
		closeOnce(rs.settled)
	})

	// Following logs: the follow ends when the arrow ends for good, not
	// while it restarts.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	cancelled := make(chan struct{})
	go d.cancelWhenDone(fctx, a, func() { close(cancelled) })
	d.mu.Lock()
	_ = d.moveLocked(a, api.Restarting, nil)
	a.run = nil
	d.mu.Unlock()
	select {
	case <-cancelled:
		t.Fatal("the follow ended while the arrow restarts")
	case <-time.After(followGrace + 100*time.Millisecond):
	}
	d.mu.Lock()
	_ = d.moveLocked(a, api.Exited, nil)
	d.mu.Unlock()
	select {
	case <-cancelled:
	case <-time.After(followGrace + time.Second):
		t.Fatal("the follow did not end with the arrow")
	}

	// A wait whose context ends returns.
	rs2 := newRunState(nil, nil)
	cctx, ccancel := context.WithCancel(ctx)
	within("awaitStarted on a cancelled context", func() { d.awaitStarted(cctx, rs2) }, ccancel)
}
