package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/arrowsys/arrow/api"
)

// metrics are the daemon's Prometheus metrics, in a registry of its own
// (no global state: two daemons in one process, as in tests, do not mix).
type metrics struct {
	reg          *prometheus.Registry
	startLatency prometheus.Histogram
	restarts     prometheus.Counter
	ooms         prometheus.Counter
	// starts counts starts by how the VM started: cold, clone or spare.
	starts *prometheus.CounterVec
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		startLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "arrow_start_latency_seconds",
			Help:    "Time from starting an arrow's VM to its application's start.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32},
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "arrow_restarts_total",
			Help: "Restarts made by restart policies.",
		}),
		ooms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "arrow_oom_kills_total",
			Help: "Arrows whose VM was killed for exceeding its memory limit.",
		}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arrow_starts_total",
			Help: "Arrows' starts that reached running, by how their VM started: cold (a boot), clone (of a template) or spare (from the pool).",
		}, []string{"how"}),
	}
	m.reg.MustRegister(m.startLatency, m.restarts, m.ooms, m.starts, &collector{d: d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// collector reports the arrows' states and each running arrow's resource
// use at scrape time.
type collector struct{ d *Daemon }

var (
	descArrows    = prometheus.NewDesc("arrow_arrows", "Arrows by state.", []string{"state"}, nil)
	descCPU       = prometheus.NewDesc("arrow_cpu_seconds_total", "CPU time used by an arrow's VM process.", []string{"id", "name"}, nil)
	descMemory    = prometheus.NewDesc("arrow_memory_bytes", "Resident memory of an arrow's VM process.", []string{"id", "name"}, nil)
	descMemPriv   = prometheus.NewDesc("arrow_memory_private_bytes", "Resident memory of an arrow's VM process that no other process maps (for a clone: pages written since it was cloned).", []string{"id", "name"}, nil)
	descSpares    = prometheus.NewDesc("arrow_spares", "Spare VMs in the pool, ready or starting.", []string{"state"}, nil)
	descMemShared = prometheus.NewDesc("arrow_memory_shared_bytes", "Resident memory of an arrow's VM process shared with others (template pages, QEMU's code).", []string{"id", "name"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descArrows
	ch <- descCPU
	ch <- descMemory
	ch <- descMemPriv
	ch <- descMemShared
	ch <- descSpares
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counts := map[api.State]int{api.Created: 0, api.Starting: 0, api.Running: 0, api.Restarting: 0, api.Exited: 0}
	for _, a := range c.d.List(true) {
		counts[a.State]++
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(descArrows, prometheus.GaugeValue, float64(n), string(st))
	}
	ready, starting := 0, 0
	for _, e := range c.d.pool.status() {
		ready += e.Ready
		starting += e.Starting
	}
	ch <- prometheus.MustNewConstMetric(descSpares, prometheus.GaugeValue, float64(ready), "ready")
	ch <- prometheus.MustNewConstMetric(descSpares, prometheus.GaugeValue, float64(starting), "starting")
	for _, a := range c.d.running() {
		s, ok := c.d.sampleOf(a)
		if !ok {
			continue
		}
		short := a.ID[:12]
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, s.cpu.Seconds(), short, a.Name)
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(s.s.MemoryBytes), short, a.Name)
		ch <- prometheus.MustNewConstMetric(descMemPriv, prometheus.GaugeValue, float64(s.s.MemoryPrivate), short, a.Name)
		ch <- prometheus.MustNewConstMetric(descMemShared, prometheus.GaugeValue, float64(s.s.MemoryShared), short, a.Name)
	}
}

// startedHow names how a run's VM started, for arrow_starts_total.
func startedHow(template string, spare bool) string {
	switch {
	case spare:
		return "spare"
	case template != "":
		return "clone"
	}
	return "cold"
}

// Registry is the daemon's metrics registry, for serving /metrics on
// another listener.
func (d *Daemon) Registry() *prometheus.Registry { return d.metrics.reg }
