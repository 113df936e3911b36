package api

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ParseSignal parses a signal as `kill -s` takes it: a name with or without
// "SIG" (case-insensitive), or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %d: want 1 to 64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown (want a name such as SIGTERM, or a number)", s)
}

// ParseSince parses a --since value: a duration before now ("10m",
// "1h30m"), an RFC 3339 time, or Unix seconds.
func ParseSince(s string, now time.Time) (time.Time, error) {
	// "0" is Unix seconds, the epoch (as in docker), though ParseDuration
	// takes it too.
	if d, err := time.ParseDuration(s); err == nil && s != "0" {
		if d < 0 {
			return time.Time{}, fmt.Errorf("since %q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1<<53 { // within int64, not Inf
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("since %q: want a duration (10m), an RFC 3339 time or Unix seconds", s)
}
