package main

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/arrowsys/arrow/api"
)

// TestStatusPaused: ps words a paused arrow as docker does.
func TestStatusPaused(t *testing.T) {
	now := time.Now()
	started := now.Add(-3 * time.Minute)
	tests := []struct {
		a    api.Arrow
		want string
	}{
		{api.Arrow{State: api.Running, StartedAt: started}, "Up 3 minutes"},
		{api.Arrow{State: api.Running, StartedAt: started, Paused: true}, "Up 3 minutes (Paused)"},
		{api.Arrow{State: api.Running, StartedAt: started, Paused: true, Health: "healthy"}, "Up 3 minutes (Paused)"},
		{api.Arrow{State: api.Running, StartedAt: started, Health: "healthy"}, "Up 3 minutes (healthy)"},
	}
	for _, tt := range tests {
		if got := status(tt.a, now); got != tt.want {
			t.Errorf("status(paused %v, health %q) = %q, want %q", tt.a.Paused, tt.a.Health, got, tt.want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in   []string
		want map[string]string
		err  string
	}{
		{nil, nil, ""},
		{[]string{"a=b", "c", "a=d", "e=f=g"}, map[string]string{"a": "d", "c": "", "e": "f=g"}, ""},
		{[]string{"=v"}, nil, "non-empty key"},
	}
	for _, tt := range tests {
		got, err := parseLabels(tt.in)
		if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) || !maps.Equal(got, tt.want) {
			t.Errorf("parseLabels(%q) = %v, %v; want %v, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}
