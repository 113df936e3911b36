package daemon

import (
	"net/http"
	"strings"
	"testing"

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
