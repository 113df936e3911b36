package jail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    Range
		wantErr string
	}{
		{"1900000000-1900065535", Range{First: 1900000000, Count: 65536}, ""},
		{"100000-100000", Range{First: 100000, Count: 1}, ""},
		{"100-200", Range{}, "away from the host's users"},
		{"2000000000-2147483648", Range{}, "away from the host's users"},
		{"200000-100000", Range{}, "FIRST-LAST"},
		{"100000", Range{}, "FIRST-LAST"},
		{"a-b", Range{}, "FIRST-LAST"},
		{"", Range{}, "FIRST-LAST"},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRange(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestAcquire leases every uid of a small range, finds the range
// exhausted, and gets a uid back once a lease is released; a lease's lock
// is per open file, so another holder's copy keeps it taken.
func TestAcquire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "uids")
	r := Range{First: 300000, Count: 3}
	seen := map[uint32]bool{}
	var leases []*Lease
	for i := 0; i < 3; i++ {
		l, err := Acquire(dir, r)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Contains(l.UID) || seen[l.UID] {
			t.Fatalf("lease %d: uid %d (seen %v)", i, l.UID, seen)
		}
		seen[l.UID] = true
		leases = append(leases, l)
	}
	if _, err := Acquire(dir, r); !errors.Is(err, ErrExhausted) {
		t.Fatalf("a fourth lease: %v, want ErrExhausted", err)
	}
	leases[1].Release()
	l, err := Acquire(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if l.UID != leases[1].UID {
		t.Errorf("after a release got uid %d, want %d back", l.UID, leases[1].UID)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("lease directory mode %o, want 0700", fi.Mode().Perm())
	}
}

// TestAcquireRefusesLooseDir: a lease directory others can write would
// let them take or fake leases.
func TestAcquireRefusesLooseDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir, Range{First: 300000, Count: 1}); err == nil || !strings.Contains(err.Error(), "want 0700") {
		t.Fatalf("Acquire in a 0777 directory: %v", err)
	}
}
