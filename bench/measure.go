package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one measured run.
type sample struct {
	wall time.Duration
	// peakRSS is the highest sum of the resident sizes of the process and
	// all its descendants seen while it ran, sampled every few ms.
	peakRSS int64
}

// measure runs cmd to completion and samples its process tree's memory.
// The run must succeed and print want, so that a broken baseline cannot
// masquerade as a fast one.
func measure(ctx context.Context, argv []string, want string) (sample, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var max int64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := treeRSS(cmd.Process.Pid); v > max {
				max = v
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(t0)
	close(done)
	s := sample{wall: wall, peakRSS: <-peak}
	if err != nil {
		return s, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, errb.String())
	}
	if !strings.Contains(out.String(), want) {
		return s, fmt.Errorf("%s: output %q does not contain %q (stderr %q)", strings.Join(argv, " "), out.String(), want, errb.String())
	}
	return s, nil
}

// treeRSS sums VmRSS over pid and its descendants, in bytes. It follows
// /proc/PID/task/TID/children rather than scanning all of /proc, so that
// sampling costs little CPU next to the runs it measures.
func treeRSS(pid int) int64 {
	var total int64
	stack := []int{pid}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		total += rss(p)
		tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "task"))
		for _, t := range tasks {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "task", t.Name(), "children"))
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					stack = append(stack, n)
				}
			}
		}
	}
	return total
}

func rss(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// median returns the medians of wall time and peak memory of ss.
func median(ss []sample) (time.Duration, int64) {
	ws := make([]time.Duration, len(ss))
	ms := make([]int64, len(ss))
	for i, s := range ss {
		ws[i], ms[i] = s.wall, s.peakRSS
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
	return ws[len(ws)/2], ms[len(ms)/2]
}
