package daemon

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

func TestBackoff(t *testing.T) {
	want := []time.Duration{
		100 * time.Millisecond, // 0 failures (a restart after a stable run)
		100 * time.Millisecond,
		200 * time.Millisecond,
		400 * time.Millisecond,
		800 * time.Millisecond,
		1600 * time.Millisecond,
		3200 * time.Millisecond,
		6400 * time.Millisecond,
		12800 * time.Millisecond,
		25600 * time.Millisecond,
		30 * time.Second,
		30 * time.Second,
	}
	for n, w := range want {
		if got := backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
	for _, n := range []int{-1, 100, 1 << 30} {
		if got := backoff(n); got < backoffMin || got > backoffMax {
			t.Errorf("backoff(%d) = %v, out of [%v, %v]", n, got, backoffMin, backoffMax)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	d := &Daemon{ctx: context.Background()}
	pol := func(name string, max int) api.RestartPolicy { return api.RestartPolicy{Name: name, MaxRetries: max} }
	for _, tc := range []struct {
		policy   api.RestartPolicy
		restarts int
		byUser   bool
		code     int
		oom      bool
		want     bool
	}{
		{pol("", 0), 0, false, 1, false, false},
		{pol("no", 0), 0, false, 0, false, false},
		{pol("no", 0), 0, false, 1, false, false},

		{pol("on-failure", 0), 0, false, 0, false, false},
		{pol("on-failure", 0), 0, false, 1, false, true},
		{pol("on-failure", 0), 0, false, 137, false, true},
		{pol("on-failure", 0), 1000, false, 1, false, true}, // unbounded
		{pol("on-failure", 0), 0, true, 1, false, false},

		{pol("on-failure", 3), 0, false, 1, false, true},
		{pol("on-failure", 3), 2, false, 1, false, true},  // below N
		{pol("on-failure", 3), 3, false, 1, false, false}, // at N
		{pol("on-failure", 3), 4, false, 1, false, false},
		{pol("on-failure", 3), 0, false, 0, false, false},
		{pol("on-failure", 3), 0, true, 1, false, false},
		{pol("on-failure", 1), 0, false, 2, false, true},
		{pol("on-failure", 1), 1, false, 2, false, false},

		{pol("always", 0), 0, false, 0, false, true},
		{pol("always", 0), 0, false, 1, false, true},
		{pol("always", 0), 99, false, 1, false, true},
		{pol("always", 0), 0, true, 0, false, false},
		{pol("always", 0), 0, true, 1, false, false},

		{pol("unless-stopped", 0), 0, false, 0, false, true},
		{pol("unless-stopped", 0), 5, false, 1, false, true},
		{pol("unless-stopped", 0), 0, true, 0, false, false},
		{pol("unless-stopped", 0), 0, true, 1, false, false},

		{pol("bogus", 0), 0, false, 1, false, false},

		// A VM killed for its memory would only be killed again.
		{pol("always", 0), 0, false, 137, true, false},
		{pol("unless-stopped", 0), 0, false, 137, true, false},
		{pol("on-failure", 0), 0, false, 137, true, false},
	} {
		r := &record{Arrow: api.Arrow{Config: api.Config{Restart: tc.policy}, Restarts: tc.restarts, StoppedByUser: tc.byUser}}
		if got := d.shouldRestart(r, tc.code, tc.oom); got != tc.want {
			t.Errorf("policy %s, %d restarts, stopped by user %v, exit %d, oom %v: restart %v, want %v",
				tc.policy, tc.restarts, tc.byUser, tc.code, tc.oom, got, tc.want)
		}
	}

	// A daemon that is stopping restarts nothing: the next one decides.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stopping := &Daemon{ctx: ctx}
	r := &record{Arrow: api.Arrow{Config: api.Config{Restart: pol("always", 0)}}}
	if stopping.shouldRestart(r, 1, false) {
		t.Error("a stopping daemon restarts")
	}
}

func TestRandomName(t *testing.T) {
	re := regexp.MustCompile(`^[a-z]+_[a-z]+_([0-9]|[1-9][0-9])$`)
	seen := make(map[string]bool)
	for range 500 {
		n := randomName()
		if !re.MatchString(n) {
			t.Fatalf("randomName() = %q, want adjective_noun_N", n)
		}
		if !api.ValidName(n) {
			t.Fatalf("randomName() = %q is not a valid name", n)
		}
		seen[n] = true
	}
	if len(seen) < 400 {
		t.Errorf("%d distinct names of 500", len(seen))
	}
}

func TestFreeName(t *testing.T) {
	d := &Daemon{arrows: make(map[string]*arrow)}
	d.arrows["x"] = &arrow{rec: &record{Arrow: api.Arrow{ID: "x", Name: "swift_heron_1"}}}
	d.arrows["y"] = &arrow{rec: &record{Arrow: api.Arrow{ID: "y", Name: "calm_tern_2"}}}
	// The generator offers both taken names before a free one.
	offers := []string{"swift_heron_1", "calm_tern_2", "bold_owl_3"}
	next := func() string {
		n := offers[0]
		offers = offers[1:]
		return n
	}
	if n := d.freeNameLocked(next); n != "bold_owl_3" {
		t.Fatalf("freeNameLocked = %q, want the first free name offered", n)
	}
}
