package daemon

import (
	"time"

	"github.com/arrowsys/arrow/api"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Arrow runs on.
const clockTicks = 100

// sample is one reading of an arrow's VM process.
type sample struct {
	cpu time.Duration
	at  time.Time
	s   api.Stats
}

// running returns the arrows whose VM process is up.
func (d *Daemon) running() []api.Arrow {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []api.Arrow
	for _, a := range d.arrows {
		if a.run != nil && a.rec.Pid > 0 {
			out = append(out, a.rec.Arrow)
		}
	}
	return out
}

// sampleOf reads a's QEMU process: CPU time and resident memory, and the
// memory limit of its cgroup.
func (d *Daemon) sampleOf(a api.Arrow) (sample, bool) {
	st, err := readProcStat(a.Pid)
	if err != nil {
		return sample{}, false
	}
	rss, _ := processRSS(a.Pid)
	sm := sample{
		cpu: time.Duration(st.utime+st.stime) * time.Second / clockTicks,
		at:  time.Now(),
		s:   api.Stats{ID: a.ID, Name: a.Name, MemoryBytes: rss},
	}
	if m, err := readMemoryRollup(a.Pid); err == nil {
		sm.s.MemoryPrivate, sm.s.MemoryShared, sm.s.MemoryPSS = m.private, m.shared, m.pss
	}
	if d.cg != nil {
		if g, err := d.cg.Open(a.ID); err == nil {
			if cs, err := g.Stats(); err == nil {
				sm.s.MemoryLimit = cs.MemoryLimit
				sm.s.Pids = int(cs.Pids)
			}
		}
	}
	return sm, true
}

// Stats samples every running arrow twice, interval apart, and returns
// their CPU use over the interval and their memory.
func (d *Daemon) Stats(interval time.Duration) []api.Stats {
	arrows := d.running()
	first := make(map[string]sample, len(arrows))
	for _, a := range arrows {
		if s, ok := d.sampleOf(a); ok {
			first[a.ID] = s
		}
	}
	time.Sleep(interval)
	out := make([]api.Stats, 0, len(first))
	for _, a := range arrows {
		s0, ok := first[a.ID]
		if !ok {
			continue
		}
		s1, ok := d.sampleOf(a)
		if !ok {
			continue
		}
		if dt := s1.at.Sub(s0.at); dt > 0 {
			s1.s.CPUPercent = 100 * float64(s1.cpu-s0.cpu) / float64(dt)
		}
		out = append(out, s1.s)
	}
	return out
}
