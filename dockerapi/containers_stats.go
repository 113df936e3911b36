package dockerapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/arrowsys/arrow/api"
)

// cpuCounters are the cumulative counters Docker's stats carry, from which
// clients compute a percentage: (Δtotal / Δsystem) × online CPUs × 100.
type cpuCounters struct {
	total  uint64 // the container's CPU time, ns
	system uint64 // the host's CPU time, all CPUs, ns
}

// hostCPUTime is the host's CPU time over all CPUs since boot (ns), from
// /proc/stat as dockerd reads it; 0 when unreadable.
func hostCPUTime() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var jiffies uint64
		for _, v := range fields[1:8] {
			n, _ := strconv.ParseUint(v, 10, 64)
			jiffies += n
		}
		return jiffies * (1e9 / 100) // USER_HZ
	}
	return 0
}

// statsOf translates one sample of Backend.Stats. pre are the counters
// before the sample's interval; the returned ones after it: the CPU time
// the interval added is Arrow's percentage of one CPU, over the host's
// CPU time of the interval, so that the client's percentage is Arrow's.
//
// sysNow is the host's CPU time now; when it is unknown (0) the interval
// times the CPUs stands for it.
func statsOf(a *api.Arrow, s *api.Stats, pre cpuCounters, sysNow uint64, interval time.Duration, ncpu int, now time.Time, hostMem uint64) (container.StatsResponse, cpuCounters) {
	cur := pre
	sysDelta := uint64(interval.Nanoseconds()) * uint64(ncpu)
	if sysNow > pre.system {
		sysDelta = sysNow - pre.system
	}
	cur.system = pre.system + sysDelta
	if s != nil && s.CPUPercent > 0 {
		cur.total = pre.total + uint64(s.CPUPercent/100*float64(sysDelta)/float64(ncpu))
	}
	resp := container.StatsResponse{
		ID:      a.ID,
		Name:    "/" + a.Name,
		OSType:  "linux",
		Read:    now,
		PreRead: now.Add(-interval),
		CPUStats: container.CPUStats{
			CPUUsage:    container.CPUUsage{TotalUsage: cur.total},
			SystemUsage: cur.system,
			OnlineCPUs:  uint32(ncpu),
		},
		PreCPUStats: container.CPUStats{
			CPUUsage:    container.CPUUsage{TotalUsage: pre.total},
			SystemUsage: pre.system,
			OnlineCPUs:  uint32(ncpu),
		},
	}
	if s != nil {
		resp.MemoryStats = container.MemoryStats{
			Usage: uint64(max(s.MemoryBytes, 0)),
			Limit: uint64(max(s.MemoryLimit, 0)),
			Stats: map[string]uint64{
				"rss":    uint64(max(s.MemoryBytes, 0)),
				"shared": uint64(max(s.MemoryShared, 0)),
				"pss":    uint64(max(s.MemoryPSS, 0)),
			},
		}
		if resp.MemoryStats.Limit == 0 {
			resp.MemoryStats.Limit = hostMem
		}
		resp.PidsStats = container.PidsStats{Current: uint64(max(s.Pids, 0))}
	}
	return resp, cur
}

// containerStats answers samples of the container's resource use: one
// (stream=false; one-shot=true samples briefly), or one a second.
func (s *Server) containerStats(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	stream := r.URL.Query().Get("stream") == "" || boolParam(r, "stream")
	interval := time.Second
	if !stream && boolParam(r, "one-shot") {
		interval = 200 * time.Millisecond
	}
	ncpu := runtime.NumCPU()
	hostMem := hostMemory()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	pre := cpuCounters{system: hostCPUTime()}
	for {
		sample := s.sample(r.Context(), a.ID, interval)
		if r.Context().Err() != nil {
			return
		}
		resp, cur := statsOf(&a, sample, pre, hostCPUTime(), interval, ncpu, time.Now(), hostMem)
		pre = cur
		if enc.Encode(resp) != nil || !stream || rc.Flush() != nil {
			return
		}
	}
}

// sample is Backend.Stats's sample of one container over interval; nil
// when it does not run.
func (s *Server) sample(ctx context.Context, id string, interval time.Duration) *api.Stats {
	a, err := s.b.Get(id)
	if err != nil || stateOf(&a) != container.StateRunning {
		select {
		case <-time.After(interval):
		case <-ctx.Done():
		}
		return nil
	}
	for _, st := range s.b.Stats(interval) {
		if st.ID == id {
			return &st
		}
	}
	return nil
}

// hostMemory is the host's memory (bytes), the limit of a container
// without one.
func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// containerTop lists the container's processes by running ps in it, with
// ?ps_args (default -ef) as dockerd runs ps on the host.
func (s *Server) containerTop(w http.ResponseWriter, r *http.Request) {
	a, err := s.getContainer(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if stateOf(&a) != container.StateRunning {
		writeError(w, http.StatusConflict, fmt.Sprintf("container %s is not running", a.ID))
		return
	}
	args := strings.Fields(r.URL.Query().Get("ps_args"))
	if len(args) > 32 {
		writeErr(w, invalidf("ps_args: at most 32 words"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	cmd := append([]string{"ps"}, args...)
	if len(args) == 0 {
		cmd = append(cmd, "-ef")
	}
	out, errOut, code, err := s.execCollect(ctx, a.ID, cmd)
	if err == nil && code != 0 && code != 127 && len(args) == 0 {
		// BusyBox's ps takes no -ef: ask it plainly.
		out, errOut, code, err = s.execCollect(ctx, a.ID, []string{"ps"})
	}
	switch {
	case err != nil:
		writeErr(w, err)
		return
	case code == 127 || code == 126:
		writeError(w, http.StatusNotImplemented, fmt.Sprintf("Arrow lists a container's processes by running ps in it, and its image has no ps (%s)", strings.TrimSpace(string(errOut))))
		return
	case code != 0:
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("ps %s in the container failed (exit status %d): %s", strings.Join(args, " "), code, strings.TrimSpace(string(errOut))))
		return
	}
	writeJSON(w, http.StatusOK, parsePS(string(out)))
}

// parsePS splits ps's output into titles and rows: as many fields as
// titles, the last taking the rest of the line (the command).
func parsePS(out string) container.TopResponse {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	resp := container.TopResponse{Titles: []string{}, Processes: [][]string{}}
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return resp
	}
	resp.Titles = strings.Fields(lines[0])
	n := len(resp.Titles)
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) > n {
			// Rejoin the command, keeping its spacing.
			rest := l
			for range n - 1 {
				rest = strings.TrimLeft(rest, " \t")
				rest = rest[strings.IndexAny(rest, " \t"):]
			}
			f = append(f[:n-1], strings.TrimSpace(rest))
		}
		resp.Processes = append(resp.Processes, f)
	}
	return resp
}
