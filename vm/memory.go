package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ErrHostMemory is returned for a VM whose memory the host cannot back.
var ErrHostMemory = errors.New("more memory than the host has")

// maxMeminfo bounds what is read of /proc/meminfo (about 1.5 KiB).
const maxMeminfo = 64 << 10

// HostMemoryMiB returns the host's memory: MemTotal of /proc/meminfo.
func HostMemoryMiB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMeminfo))
	if err != nil {
		return 0, err
	}
	kb, err := parseMemTotal(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/meminfo: %w", err)
	}
	return kb >> 10, nil
}

// parseMemTotal returns the "MemTotal:  N kB" value of a meminfo file.
func parseMemTotal(b []byte) (int64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("MemTotal:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("MemTotal: malformed line %q", line)
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n <= 0 || n > 1<<50 {
			return 0, fmt.Errorf("MemTotal: malformed value %q", f[0])
		}
		return n, nil
	}
	return 0, errors.New("no MemTotal")
}

// CheckHostMemory refuses a VM of memMiB whose memory, with overheadMiB
// for QEMU itself, exceeds the host's: QEMU would only fail once it
// touches the memory, seconds into a boot (or never, overcommitted, until
// the OOM killer comes). Swap does not count: a VM's cgroup has none.
func CheckHostMemory(memMiB, overheadMiB int) error {
	host, err := HostMemoryMiB()
	if err != nil {
		return fmt.Errorf("the host's memory: %w", err)
	}
	return checkMemory(int64(memMiB), int64(overheadMiB), host)
}

func checkMemory(mem, overhead, host int64) error {
	if mem+overhead > host {
		return fmt.Errorf("memory %dM: %w: the host has %dM (%.1f GiB), and a VM needs its memory plus %dM for QEMU", mem, ErrHostMemory, host, float64(host)/1024, overhead)
	}
	return nil
}
