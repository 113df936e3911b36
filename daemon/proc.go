package daemon

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat holds the fields of /proc/PID/stat the daemon uses.
type procStat struct {
	state     byte
	utime     uint64 // clock ticks
	stime     uint64
	startTime uint64 // clock ticks since boot
}

// readProcStat parses /proc/PID/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its closing
// parenthesis.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("proc stat: %d fields", len(f)+2)
	}
	var s procStat
	s.state = f[0][0]
	var err error
	if s.utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat utime: %w", err)
	}
	if s.stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat stime: %w", err)
	}
	if s.startTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat starttime: %w", err)
	}
	return s, nil
}

// processStart returns pid's start time, 0 when it cannot be read.
func processStart(pid int) uint64 {
	s, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return s.startTime
}

// processAlive reports whether pid is still the process that started at
// start (not a zombie, not another process that reused the PID).
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	s, err := readProcStat(pid)
	if err != nil || s.state == 'Z' || s.state == 'X' {
		return false
	}
	return start == 0 || s.startTime == start
}

// processRSS returns pid's resident memory in bytes.
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// memoryRollup is a process's resident memory split by sharing, from
// /proc/PID/smaps_rollup.
type memoryRollup struct {
	private, shared, pss int64 // bytes
}

func readMemoryRollup(pid int) (memoryRollup, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return memoryRollup{}, err
	}
	return parseMemoryRollup(string(b)), nil
}

func parseMemoryRollup(s string) memoryRollup {
	var m memoryRollup
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch k {
		case "Private_Clean", "Private_Dirty":
			m.private += n << 10
		case "Shared_Clean", "Shared_Dirty":
			m.shared += n << 10
		case "Pss":
			m.pss = n << 10
		}
	}
	return m
}
