package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

func TestDetachedExit(t *testing.T) {
	lines := func() []string { return []string{"listening soon", "fatal: no config"} }
	ready := api.Config{ReadyPort: 8000}
	tests := []struct {
		name string
		a    api.Arrow
		code int      // 0: success
		msg  []string // substrings of the error
	}{
		{"running, no ready port", api.Arrow{State: api.Running}, 0, nil},
		{"exited, no ready port, no error", api.Arrow{State: api.Exited, ExitCode: 3}, 0, nil},
		{"healthy", api.Arrow{Name: "w", State: api.Running, Health: "healthy", Config: ready}, 0, nil},
		{"healthy, then ended", api.Arrow{Name: "w", State: api.Exited, Health: "healthy", Config: ready}, 0, nil},
		{"unhealthy", api.Arrow{Name: "w", State: api.Running, Health: "unhealthy", Config: ready}, run.ExitArrowFailed, []string{"accepted no connection on port 8000"}},
		{"failed to start", api.Arrow{State: api.Exited, Error: "boot failed", ExitCode: 125}, 125, []string{"boot failed"}},
		{"exited before ready", api.Arrow{Name: "w", State: api.Exited, ExitCode: 3, Config: ready}, 3,
			[]string{"w exited with status 3 before accepting connections on port 8000", "fatal: no config"}},
		{"exited 0 before ready", api.Arrow{Name: "w", State: api.Exited, Config: ready}, run.ExitArrowFailed,
			[]string{"status 0 before accepting"}},
		{"restarting before ready", api.Arrow{Name: "w", State: api.Restarting, ExitCode: 1, Config: ready}, 1,
			[]string{"status 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := detachedExit(tt.a, lines)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			var re *run.Error
			if !errors.As(err, &re) || re.Code != tt.code {
				t.Fatalf("error %v, want exit %d", err, tt.code)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}
