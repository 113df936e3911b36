package vm

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"MemTotal:       24558000 kB\nMemFree:         1000 kB\n", 24558000, false},
		{"MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048, false},
		{"MemFree: 1 kB\n", 0, true},
		{"MemTotal: lots kB\n", 0, true},
		{"MemTotal: 12\n", 0, true},
		{"MemTotal: -5 kB\n", 0, true},
		{"MemTotal: 99999999999999999999 kB\n", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseMemTotal([]byte(tt.in))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseMemTotal(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCheckMemory(t *testing.T) {
	tests := []struct {
		mem, overhead, host int64
		ok                  bool
	}{
		{256, 192, 24 << 10, true},
		{100 << 10, 192, 24 << 10, false},
		{1 << 20, 192, 24 << 10, false},
		{24<<10 - 192, 192, 24 << 10, true},
		{24<<10 - 191, 192, 24 << 10, false},
	}
	for _, tt := range tests {
		err := checkMemory(tt.mem, tt.overhead, tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("checkMemory(%d, %d, %d) = %v; want ok %v", tt.mem, tt.overhead, tt.host, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrHostMemory) || !strings.Contains(err.Error(), "the host has 24576M")) {
			t.Errorf("error %q does not name the host's memory", err)
		}
	}
	if host, err := HostMemoryMiB(); err != nil || host <= 0 {
		t.Fatalf("HostMemoryMiB() = %d, %v", host, err)
	}
}

func FuzzParseMemTotal(f *testing.F) {
	f.Add([]byte("MemTotal:       24558000 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseMemTotal(b)
		if err == nil && (n <= 0 || n > 1<<50) {
			t.Fatalf("MemTotal %d accepted", n)
		}
	})
}
