package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Range is a block of host user IDs Arrow reserves for its VMs' processes;
// each VM leases one, and its gid is the same number. The IDs have no
// passwd entry: nothing on the host is owned by them, so a jailed process
// can reach only what is world-accessible, and the jail gives it nothing
// of that either.
type Range struct {
	First uint32
	Count uint32
}

// The default range is 1900000000 to 1900065535: above the container
// ranges systemd hands out (524288 to 1879048191) and below 2^31, so that
// no tool that treats uids as signed sees a negative one.
const (
	DefaultFirst = 1_900_000_000
	DefaultCount = 65536
)

// DefaultRange is DefaultFirst and DefaultCount.
func DefaultRange() Range { return Range{First: DefaultFirst, Count: DefaultCount} }

// RangeEnv overrides the default range: FIRST-LAST, inclusive. Tests use it to
// exhaust a small range.
const RangeEnv = "ARROW_JAIL_UIDS"

// ParseRange parses FIRST-LAST.
func ParseRange(s string) (Range, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(a, 10, 32)
	last, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || last < first {
		return Range{}, fmt.Errorf("uid range %q: want FIRST-LAST", s)
	}
	if first < 65536 || last >= 1<<31 {
		return Range{}, fmt.Errorf("uid range %q: want uids from 65536 to 2147483647, away from the host's users", s)
	}
	return Range{First: uint32(first), Count: uint32(last-first) + 1}, nil
}

// RangeFromEnv is DefaultRange(), or the range $ARROW_JAIL_UIDS names.
func RangeFromEnv() (Range, error) {
	if s := os.Getenv(RangeEnv); s != "" {
		return ParseRange(s)
	}
	return DefaultRange(), nil
}

func (r Range) String() string {
	return fmt.Sprintf("%d-%d", r.First, r.First+r.Count-1)
}

// Contains reports whether uid is in r.
func (r Range) Contains(uid uint32) bool { return uid >= r.First && uid-r.First < r.Count }

// ErrExhausted is returned by Acquire when every uid of the range is leased.
var ErrExhausted = errors.New("no free uid in the jail's range")

// Lease is one uid of a Range, held by an open lock file for as long as the
// VM runs. The lock is released when every copy of the descriptor is
// closed: the holder's and the jail helper's, which inherits one, so a uid
// is not handed out again until the helper, and with it QEMU, is gone.
type Lease struct {
	UID  uint32
	lock *os.File
}

// GID is the lease's group: the same number as its uid.
func (l *Lease) GID() uint32 { return l.UID }

// File is the lock file's descriptor, for the helper to inherit.
func (l *Lease) File() *os.File { return l.lock }

// Release gives the uid back (once the helper holding its copy is gone).
func (l *Lease) Release() {
	if l != nil && l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
}

// Acquire leases a free uid of r, using lock files in dir (created 0700).
// The search starts at an offset drawn from the caller's pid, so that
// concurrent runs seldom try the same uids.
func Acquire(dir string, r Range) (*Lease, error) {
	if r.Count == 0 {
		return nil, fmt.Errorf("uid range %s: empty", r)
	}
	if err := privateDir(dir); err != nil {
		return nil, err
	}
	start := uint32(os.Getpid()) % r.Count
	for i := uint32(0); i < r.Count; i++ {
		uid := r.First + (start+i)%r.Count
		f, err := os.OpenFile(filepath.Join(dir, strconv.FormatUint(uint64(uid), 10)), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("uid lease: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lease{UID: uid, lock: f}, nil
		}
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("uid lease: lock: %w", err)
		}
	}
	return nil, fmt.Errorf("%w %s (%d VMs running)", ErrExhausted, r, r.Count)
}

// privateDir creates dir (and its parents) owned by the caller, mode 0700,
// and refuses one that exists with another owner or looser mode: whoever
// could write there could take or forge leases.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("jail directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("jail directory: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("jail directory %s: not a directory", dir)
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("jail directory %s: owned by uid %d, not by uid %d", dir, st.Uid, os.Geteuid())
	case st.Mode&0o077 != 0:
		return fmt.Errorf("jail directory %s: mode %o, want 0700", dir, st.Mode&0o777)
	}
	return nil
}
