package observability

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the control plane's Prometheus series. They live in a private
// registry (no package globals), so tests and several servers in one process
// never collide.
type Metrics struct {
	Registry *prometheus.Registry

	QueueDepth   prometheus.Gauge
	InFlight     prometheus.Gauge
	QueueWait    prometheus.Histogram
	Latency      *prometheus.HistogramVec // by route
	TTFT         *prometheus.HistogramVec // by route, streams only
	Requests     *prometheus.CounterVec   // by route, code
	Errors       *prometheus.CounterVec   // by reason, code
	WorkerState  *prometheus.GaugeVec     // by state; 1 for the current one
	ColdStart    prometheus.Histogram
	WorkerStarts prometheus.Counter
	WorkerStops  prometheus.Counter
	// WorkerCrashes counts exits the supervisor did not ask for, and
	// start-ups that failed.
	WorkerCrashes prometheus.Counter
}

// Latency buckets reach from sub-millisecond gateway answers to multi-minute
// generations on a small GPU.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160}

// NewMetrics creates and registers every series. workerStates lists the
// supervisor's states so each has a series from the start.
func NewMetrics(workerStates []string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmlab_queue_depth", Help: "Requests waiting in the gateway queue for a place.",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmlab_requests_in_flight", Help: "Requests holding a place (held for a cold start or sent to the worker).",
		}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmlab_queue_wait_seconds", Help: "Time a request waited in the queue for a place (0 when one was free).",
			Buckets: latencyBuckets,
		}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "llmlab_request_duration_seconds", Help: "Time from arrival to the end of the response.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "llmlab_time_to_first_token_seconds", Help: "Time from arrival to the first streamed event sent to the client.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmlab_requests_total", Help: "Requests answered, by route and HTTP status code.",
		}, []string{"route", "code"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmlab_request_errors_total", Help: "Failed requests, by reason and HTTP status code.",
		}, []string{"reason", "code"}),
		WorkerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llmlab_worker_state", Help: "Worker lifecycle state: 1 for the current state, 0 for the others.",
		}, []string{"state"}),
		ColdStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmlab_worker_cold_start_seconds", Help: "Time from starting the worker process to its first healthy answer.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300},
		}),
		WorkerStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmlab_worker_starts_total", Help: "Worker processes started.",
		}),
		WorkerStops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmlab_worker_stops_total", Help: "Worker processes stopped on purpose (idle, admin, shutdown).",
		}),
		WorkerCrashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llmlab_worker_crashes_total", Help: "Worker processes that exited unasked or failed to start.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.QueueDepth, m.InFlight, m.QueueWait, m.Latency, m.TTFT, m.Requests, m.Errors,
		m.WorkerState, m.ColdStart, m.WorkerStarts, m.WorkerStops, m.WorkerCrashes,
	)
	for _, s := range workerStates {
		m.WorkerState.WithLabelValues(s).Set(0)
	}
	return m
}

// SetWorkerState marks state as current and every other known state as not.
func (m *Metrics) SetWorkerState(state string, all []string) {
	for _, s := range all {
		v := 0.0
		if s == state {
			v = 1
		}
		m.WorkerState.WithLabelValues(s).Set(v)
	}
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
