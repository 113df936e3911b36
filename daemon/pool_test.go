package daemon

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

func TestShapeOf(t *testing.T) {
	def := shape{MemoryMiB: run.DefaultMemoryMiB, CPUs: run.DefaultCPUs}
	tests := []struct {
		name string
		cfg  api.Config
		want shape
		ok   bool
	}{
		{"defaults", api.Config{Program: "/bin/true"}, def, true},
		{"user network is the default", api.Config{Network: "user"}, def, true},
		{"auto accelerator is the default", api.Config{Accel: "auto"}, def, true},
		{"no network", api.Config{Network: "none", MemoryMiB: 512, CPUs: 2}, shape{MemoryMiB: 512, CPUs: 2, Network: "none"}, true},
		{"bridge network", api.Config{Network: "appnet"}, shape{MemoryMiB: def.MemoryMiB, CPUs: def.CPUs, Network: "appnet"}, false},
		{"volumes", api.Config{Volumes: []api.Volume{{Source: "/tmp", Target: "/data"}}}, def, false},
		{"another kernel", api.Config{Kernel: "/boot/vmlinuz"}, def, false},
		{"kernel arguments", api.Config{KernelArgs: "quiet"}, def, false},
		{"cold", api.Config{Cold: true}, def, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := shapeOf(tt.cfg)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("shapeOf = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// A pool that keeps no spares hands out none and starts none.
func TestPoolDisabled(t *testing.T) {
	d := newTestDaemon(t)
	p := newPool(d, 0, 0)
	if sp := p.take(shape{MemoryMiB: 256, CPUs: 1}); sp != nil {
		t.Fatal("a pool of size 0 handed out a spare")
	}
	if st := p.status(); len(st) != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestMemAvailable(t *testing.T) {
	n, err := memAvailableMiB()
	if err != nil || n <= 0 {
		t.Fatalf("memAvailableMiB = %d, %v", n, err)
	}
}

func TestHTTPPoolInvalid(t *testing.T) {
	d := newTestDaemon(t)
	h := d.Handler()
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"negative count", `{"count":-1}`, 400, "count -1"},
		{"too many", `{"count":1000}`, 400, "count 1000"},
		{"bridge network", `{"network":"appnet","count":1}`, 400, "user-mode network or none"},
		{"bad memory", `{"memory_mib":-5,"count":1}`, 400, "memory"},
		{"unknown field", `{"count":1,"size":2}`, 400, `unknown field "size"`},
		{"malformed", `{"count":`, 400, "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, serveReq(t, h, "POST", "/v1/pool", "application/json", strings.NewReader(tc.body)), tc.code, tc.msg)
			if st := d.pool.status(); len(st) != 0 {
				t.Fatalf("a bad request changed the pool: %+v", st)
			}
		})
	}
	// Count 0 for a shape the pool does not keep changes nothing either.
	resp := serveReq(t, h, "POST", "/v1/pool", "application/json", strings.NewReader(`{"count":0}`))
	if resp.code != http.StatusOK || strings.TrimSpace(string(resp.body)) != "[]" {
		t.Fatalf("count 0: %d %s", resp.code, resp.body)
	}
}

func TestDemandWant(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	ago := func(ds ...time.Duration) []time.Time {
		var l []time.Time
		for _, d := range ds {
			l = append(l, now.Add(-d))
		}
		return l
	}
	for _, tc := range []struct {
		name  string
		base  int
		takes []time.Time
		limit int
		want  int
	}{
		{"idle: the base", 1, nil, 4, 1},
		{"one take: the base", 1, ago(time.Second), 4, 1},
		{"three takes in the window", 1, ago(20*time.Second, 10*time.Second, 0), 4, 3},
		{"takes out of the window do not count", 1, ago(demandWindow+time.Second, demandWindow, time.Second), 4, 1},
		{"bounded by the maximum", 1, ago(5, 4, 3, 2, 1, 0), 4, 4},
		{"a base above the demand", 3, ago(time.Second, 0), 4, 3},
		{"a base above the maximum", 6, nil, 4, 4},
		{"no base", 0, ago(time.Second, 0), 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := demandWant(tc.base, tc.takes, now, demandWindow, tc.limit); got != tc.want {
				t.Fatalf("demandWant(%d, %d takes, limit %d) = %d, want %d", tc.base, len(tc.takes), tc.limit, got, tc.want)
			}
		})
	}
}

// The pool's want for a shape follows the takes of the demand window:
// up with a burst of runs, bounded by the maximum, and back to the pool
// size once the window passed them.
func TestPoolFollowsDemand(t *testing.T) {
	s := shape{MemoryMiB: 256, CPUs: 1}
	type step struct {
		after time.Duration // since the last step
		takes int           // then this many takes
		want  int           // then the want
	}
	for _, tc := range []struct {
		name      string
		size, max int
		steps     []step
	}{
		{"one run at a time keeps the pool size", 1, 4, []step{{0, 1, 1}, {demandWindow, 1, 1}, {demandWindow, 1, 1}}},
		{"a burst raises it", 1, 4, []step{{0, 3, 3}}},
		{"up to the maximum", 1, 4, []step{{0, 9, 4}}},
		{"and it decays", 1, 4, []step{{0, 3, 3}, {demandWindow / 2, 1, 4}, {demandWindow/2 + time.Second, 0, 1}, {demandWindow, 0, 1}}},
		{"a larger pool size is the floor", 2, 4, []step{{0, 1, 2}, {0, 2, 3}, {2 * demandWindow, 0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDaemon(t)
			p := newPool(d, tc.size, tc.max)
			defer p.close()
			now := time.Unix(1_000_000, 0)
			p.now = func() time.Time { return now }
			for i, st := range tc.steps {
				now = now.Add(st.after)
				p.decay()
				for range st.takes {
					if sp := p.take(s); sp != nil {
						t.Fatalf("step %d: a spare was ready (none can start here)", i)
					}
				}
				got := -1
				for _, e := range p.status() {
					if e.MemoryMiB == s.MemoryMiB && e.CPUs == s.CPUs {
						got = e.Want
					}
				}
				if got != st.want {
					t.Fatalf("step %d: want %d spares, pool says %d", i, st.want, got)
				}
			}
		})
	}
}
