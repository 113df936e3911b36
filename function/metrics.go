package function

import "github.com/prometheus/client_golang/prometheus"

// metrics are the functions' Prometheus metrics: invocations by how
// their instance started (cold: a clone started for it; warm: a kept-warm
// instance) and by HTTP status, their latency, and instances.
type metrics struct {
	invocations *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	instances   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arrow_function_invocations_total",
			Help: "Function invocations, by function, start (cold: in a clone started for it; warm: in a kept-warm instance) and HTTP status.",
		}, []string{"function", "start", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "arrow_function_invocation_seconds",
			Help:    "Function invocations' latency, from the request to the end of the response, by function and start.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"function", "start"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "arrow_function_instances",
			Help: "Running instances of each function (0: scaled to zero).",
		}, []string{"function"}),
	}
	if reg != nil {
		reg.MustRegister(m.invocations, m.latency, m.instances)
	}
	return m
}

// forget drops a removed function's series.
func (m *metrics) forget(name string) {
	l := prometheus.Labels{"function": name}
	m.invocations.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.instances.DeletePartialMatch(l)
}
