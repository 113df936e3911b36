package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cfsPeriod is the CFS bandwidth period, in microseconds, that a CPU limit
// is a share of; minQuota is the smallest quota the kernel accepts.
const (
	cfsPeriod = 100000
	minQuota  = 1000
)

// unlimited is where a v1 limit stops being a number: the kernel reports
// "no limit" as the largest page-aligned int64.
const unlimited = 1 << 62

// Limits are the resources a group may use. A zero field means no limit.
type Limits struct {
	// MemoryBytes caps the memory the group's processes are charged,
	// page cache included; beyond it the kernel reclaims and then OOM-kills.
	MemoryBytes int64
	// NoSwap keeps the group out of swap, so that MemoryBytes is the
	// whole of what it may use (memory.swap.max 0 under v2; under v1 the
	// memory+swap limit equals MemoryBytes, which needs swap accounting
	// when the host has swap).
	NoSwap bool
	// CPUs caps CPU time as a number of CPUs, through the CFS quota: 1.5
	// lets the group run for 150ms in every 100ms period, across CPUs.
	CPUs float64
	// Pids caps the number of tasks (processes and threads).
	Pids int64
}

// validate reports a limit that cannot be written.
func (l Limits) validate() error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("negative memory limit %d", l.MemoryBytes)
	case l.CPUs < 0 || math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0) || l.CPUs > 1<<20:
		return fmt.Errorf("invalid CPU limit %v", l.CPUs)
	case l.Pids < 0:
		return fmt.Errorf("negative pids limit %d", l.Pids)
	}
	return nil
}

// quota returns the CFS quota in microseconds per cfsPeriod for l.CPUs,
// or 0 for no limit.
func (l Limits) quota() int64 {
	if l.CPUs == 0 {
		return 0
	}
	return max(int64(math.Round(l.CPUs*cfsPeriod)), minQuota)
}

// Stats is a group's resource usage.
type Stats struct {
	// MemoryBytes is the memory charged to the group now, page cache
	// included.
	MemoryBytes int64
	// MemoryLimit is the memory limit in force; 0 means none.
	MemoryLimit int64
	// CPUUsage is the CPU time, user and system, that the group's tasks
	// have used since it was created; 0 under v1 without cpuacct.
	CPUUsage time.Duration
	// OOMKills counts the processes the OOM killer has killed because the
	// group reached its memory limit.
	OOMKills uint64
	// Pids is the number of tasks (processes and threads) in the group.
	Pids int64
}

// A Group is one control group, in one directory under v2 or one directory
// per controller under v1.
type Group struct {
	name    string
	version int
	path    string            // the v2 directory, or the v1 memory directory
	dirs    map[string]string // v1: controller to directory; empty under v2
	rmdir   func(string) error
}

// Path returns the group's directory: the only one under v2, the memory
// controller's under v1.
func (g *Group) Path() string { return g.path }

// dir returns the directory of controller c, or "" if the group has none.
func (g *Group) dir(c string) string {
	if g.version == 2 {
		return g.path
	}
	return g.dirs[c]
}

// allDirs returns each distinct directory of the group, memory's first.
func (g *Group) allDirs() []string {
	if g.version == 2 {
		return []string{g.path}
	}
	var out []string
	for _, c := range v1Controllers {
		if d := g.dirs[c]; d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// SetLimits writes l to the group's limit files, replacing the limits in
// force; a zero field removes that limit. It fails if l asks for a limit
// whose controller the group does not have.
func (g *Group) SetLimits(l Limits) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("cgroup %s: %w", g.name, err)
	}
	type write struct {
		ctrl, file, value string
		set               bool // a limit is asked for, not removed
	}
	var ws []write
	quota := l.quota()
	if g.version == 2 {
		cpu := "max " + strconv.Itoa(cfsPeriod)
		if quota > 0 {
			cpu = fmt.Sprintf("%d %d", quota, cfsPeriod)
		}
		ws = []write{
			{"memory", "memory.max", limitString(l.MemoryBytes, "max"), l.MemoryBytes > 0},
			{"cpu", "cpu.max", cpu, quota > 0},
			{"pids", "pids.max", limitString(l.Pids, "max"), l.Pids > 0},
		}
		if l.NoSwap {
			// Required only where there is swap to keep out of: a
			// kernel without swap accounting has no such file.
			ws = append(ws, write{"memory", "memory.swap.max", "0", hostHasSwap()})
		}
	} else {
		ws = []write{
			// The memory+swap limit may never be below the memory
			// limit: lift it before the memory limit moves.
			{"memory", "memory.memsw.limit_in_bytes", "-1", false},
			{"memory", "memory.limit_in_bytes", limitString(l.MemoryBytes, "-1"), l.MemoryBytes > 0},
			{"cpu", "cpu.cfs_period_us", strconv.Itoa(cfsPeriod), quota > 0},
			{"cpu", "cpu.cfs_quota_us", limitString(quota, "-1"), quota > 0},
			{"pids", "pids.max", limitString(l.Pids, "max"), l.Pids > 0},
		}
		if l.NoSwap && l.MemoryBytes > 0 {
			// After memory.limit_in_bytes: the kernel refuses a
			// memory+swap limit below the memory limit.
			ws = append(ws, write{"memory", "memory.memsw.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10), hostHasSwap()})
		}
	}
	for _, w := range ws {
		dir := g.dir(w.ctrl)
		var err error
		if dir == "" {
			err = fs.ErrNotExist
		} else {
			err = writeFile(filepath.Join(dir, w.file), w.value)
		}
		// A missing controller only matters when a limit is asked of it.
		if errors.Is(err, fs.ErrNotExist) {
			if !w.set {
				continue
			}
			return fmt.Errorf("cgroup %s: %s controller unavailable: %w", g.name, w.ctrl, err)
		}
		if err != nil {
			return fmt.Errorf("cgroup %s: set %s: %w", g.name, w.file, err)
		}
	}
	return nil
}

// hostHasSwap reports whether the host has swap space: without any, a v1
// group cannot swap whether or not its kernel accounts swap.
func hostHasSwap() bool {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return true // assume the worst: the limit is then required
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "SwapTotal:" {
			return f[1] != "0"
		}
	}
	return true
}

// limitString formats a limit, or none for 0.
func limitString(v int64, none string) string {
	if v == 0 {
		return none
	}
	return strconv.FormatInt(v, 10)
}

// Add moves the process pid, with all its threads, into the group (into
// every hierarchy under v1). Its children from then on start in the group.
func (g *Group) Add(pid int) error {
	for _, dir := range g.allDirs() {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup %s: add process %d: %w", g.name, pid, err)
		}
	}
	return nil
}

// Procs returns the processes in the group, in increasing order.
func (g *Group) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.path, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", g.name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: bad pid %q in cgroup.procs", g.name, f)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// Stats reads the group's resource usage.
func (g *Group) Stats() (Stats, error) {
	var (
		s   Stats
		err error
	)
	wrap := func(err error) (Stats, error) {
		return Stats{}, fmt.Errorf("cgroup %s: stats: %w", g.name, err)
	}
	if g.version == 2 {
		if s.MemoryBytes, err = readInt(filepath.Join(g.path, "memory.current")); err != nil {
			return wrap(err)
		}
		if s.MemoryLimit, err = readLimit(filepath.Join(g.path, "memory.max")); err != nil {
			return wrap(err)
		}
		if s.OOMKills, err = readKey(filepath.Join(g.path, "memory.events"), "oom_kill"); err != nil {
			return wrap(err)
		}
		usec, err := readKey(filepath.Join(g.path, "cpu.stat"), "usage_usec")
		if err != nil {
			return wrap(err)
		}
		s.CPUUsage = time.Duration(usec) * time.Microsecond
	} else {
		mem := g.dirs["memory"]
		if s.MemoryBytes, err = readInt(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
			return wrap(err)
		}
		if s.MemoryLimit, err = readLimit(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
			return wrap(err)
		}
		// oom_kill is in memory.oom_control since Linux 4.13; older
		// kernels count no kills.
		s.OOMKills, err = readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill")
		if err != nil && !errors.Is(err, errNoKey) {
			return wrap(err)
		}
		if d := g.dirs["cpuacct"]; d != "" {
			ns, err := readInt(filepath.Join(d, "cpuacct.usage"))
			if err != nil {
				return wrap(err)
			}
			s.CPUUsage = time.Duration(ns)
		}
	}
	if d := g.dir("pids"); d != "" {
		s.Pids, err = readInt(filepath.Join(d, "pids.current"))
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return wrap(err)
		}
	}
	// No pids controller: count the threads instead.
	threads := "cgroup.threads"
	if g.version == 1 {
		threads = "tasks"
	}
	b, err := os.ReadFile(filepath.Join(g.path, threads))
	if err != nil {
		return wrap(err)
	}
	s.Pids = int64(len(strings.Fields(string(b))))
	return s, nil
}

// Kill sends SIGKILL to every process in the group, again until none is
// left (so that processes forked meanwhile die too), and returns once the
// group is empty or ctx is done. Under v2 it also writes cgroup.kill where
// the kernel has it (Linux 5.14).
func (g *Group) Kill(ctx context.Context) error {
	if g.version == 2 {
		err := writeFile(filepath.Join(g.path, "cgroup.kill"), "1")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup %s: kill: %w", g.name, err)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
				return fmt.Errorf("cgroup %s: kill %d: %w", g.name, pid, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup %s: kill: processes %v remain: %w", g.name, pids, ctx.Err())
		case <-tick.C:
		}
	}
}

// Remove removes the group's directories. It fails, with an error wrapping
// [unix.EBUSY], while processes remain in the group; [Group.Kill] them
// first. Removing a group that is already gone succeeds.
func (g *Group) Remove() error {
	pids, err := g.Procs()
	if errors.Is(err, fs.ErrNotExist) {
		pids, err = nil, nil
	}
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("remove cgroup %s: processes %v remain: %w", g.name, pids, unix.EBUSY)
	}
	var errs []error
	for _, dir := range g.allDirs() {
		// A process that just exited can keep a group busy briefly.
		deadline := time.Now().Add(2 * time.Second)
		for {
			err = g.rmdir(dir)
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", g.name, err))
		}
	}
	return errors.Join(errs...)
}

// writeFile writes value to the existing interface file path.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readLimit reads a limit file, returning 0 for no limit ("max" under v2,
// a huge number under v1).
func readLimit(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if v < 0 || v >= unlimited {
		return 0, nil
	}
	return v, nil
}

// errNoKey is returned by readKey for a file without the key.
var errNoKey = errors.New("key not found")

// readKey returns the value of key in a file of "key value" lines.
func readKey(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: %s: %w", path, key, errNoKey)
}
