package api

import (
	"syscall"
	"testing"
	"time"
)

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal // 0: an error
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"TERM", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"sigkill", syscall.SIGKILL},
		{"SigHup", syscall.SIGHUP},
		{"INT", syscall.SIGINT},
		{"USR1", syscall.SIGUSR1},
		{"WINCH", syscall.SIGWINCH},
		{"9", syscall.SIGKILL},
		{"15", syscall.SIGTERM},
		{"1", syscall.Signal(1)},
		{"64", syscall.Signal(64)},
		{"", 0},
		{"0", 0},
		{"65", 0},
		{"-9", 0},
		{"SIG", 0},
		{"SIGFOO", 0},
		{"KILLX", 0},
		{"SIG TERM", 0},
		{"TERM\x00", 0},
		{"9.0", 0},
		{"99999999999999999999", 0},
	} {
		got, err := ParseSignal(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("ParseSignal(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"10m", now.Add(-10 * time.Minute), false},
		{"1h30m", now.Add(-90 * time.Minute), false},
		{"0s", now, false},
		{"1.5s", now.Add(-1500 * time.Millisecond), false},
		{"2025-05-31T10:00:00Z", time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC), false},
		{"2025-05-31T10:00:00.25+02:00", time.Date(2025, 5, 31, 8, 0, 0, 250e6, time.UTC), false},
		{"1700000000", time.Unix(1700000000, 0), false},
		{"1700000000.5", time.Unix(1700000000, 5e8), false},
		{"0", time.Unix(0, 0), false}, // Unix seconds, the epoch: not "0 before now"
		{"-10m", time.Time{}, true},
		{"-5", time.Time{}, true},
		{"", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"10 m", time.Time{}, true},
		{"2025-05-31", time.Time{}, true},
		{"NaN", time.Time{}, true},
		{"Inf", time.Time{}, true},
	} {
		got, err := ParseSince(tc.in, now)
		if tc.err {
			if err == nil {
				t.Errorf("ParseSince(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSince(%q): %v", tc.in, err)
			continue
		}
		// Unix seconds with a fraction go through float64: allow a µs.
		if d := got.Sub(tc.want); d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("ParseSince(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
