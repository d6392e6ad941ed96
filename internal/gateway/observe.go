package gateway

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/prometheus/client_golang/prometheus"
)

// inferenceRoutes are the routes whose latency is the service's: the SLO,
// the histograms and the status page's figures count only these.
var inferenceRoutes = map[string]bool{
	"/v1/completions": true, "/v1/chat/completions": true, "/generate": true,
}

// The status page's windows: a minute for quantiles and the error ratio,
// ten seconds for rates, so they follow the load.
const (
	recentSpan     = time.Minute
	recentRateSpan = 10 * time.Second
)

// observatory keeps what the status page shows beyond /status's counters:
// the latest requests and the objective they are judged by.
type observatory struct {
	objective slo.Objective
	recent    *observability.Window
	started   time.Time
	// latOK is each inference route's latency series for answered
	// requests, looked up once rather than per request.
	latOK map[string]prometheus.Observer
}

func newObservatory(m *observability.Metrics, obj *slo.Objective) (*observatory, error) {
	o := &observatory{started: time.Now()}
	if obj != nil {
		o.objective = *obj
	} else {
		spec, err := slo.Default()
		if err != nil {
			return nil, fmt.Errorf("slo: %w", err)
		}
		o.objective = spec.SLO
	}
	// 16 Ki latencies: a minute at 270 requests/s, far beyond what one
	// small GPU serves; past it the quantiles are the latest requests'.
	o.recent = observability.NewWindow(1<<14, recentSpan, recentRateSpan,
		time.Duration(o.objective.P95E2ESeconds*float64(time.Second)))
	m.SetSLO(o.objective.P95E2ESeconds, o.objective.MaxErrorRate)
	// The series the SLO rules divide exist from the start, at 0: a
	// ratio is then 0 rather than absent before the first error, and the
	// first error is not lost to rate() (a series born at 1 shows no
	// increase).
	o.latOK = make(map[string]prometheus.Observer, len(inferenceRoutes))
	for r := range inferenceRoutes {
		for _, out := range []string{observability.OutcomeOK, observability.OutcomeRejected, observability.OutcomeError} {
			m.Latency.WithLabelValues(r, out)
		}
		o.latOK[r] = m.Latency.WithLabelValues(r, observability.OutcomeOK)
	}
	return o, nil
}

// observe records one finished request of an inference route: its
// latency by outcome, so refused requests (answered at once) never pull
// the answered ones' quantiles down.
func (s *Server) observe(route string, code int, start time.Time) {
	if !inferenceRoutes[route] {
		return
	}
	now := time.Now()
	d := now.Sub(start)
	out := observability.Outcome(code)
	lat := s.obs.latOK[route]
	if out != observability.OutcomeOK {
		lat = s.metrics.Latency.WithLabelValues(route, out)
	}
	lat.Observe(d.Seconds())
	s.obs.recent.Observe(now, d, out)
}

// workerObserver turns the supervisor's transitions into metrics.
type workerObserver struct{ m *observability.Metrics }

func (o workerObserver) WorkerTransition(t supervisor.Transition) {
	o.m.WorkerTransition(t.From, t.To, time.Duration(t.ColdStartSeconds*float64(time.Second)), supervisor.StateNames())
}

// statusExtras are the parts of /status that the status page draws.
type statusExtras struct {
	SLO struct {
		P95Seconds   float64 `json:"p95_e2e_seconds"`
		MaxErrorRate float64 `json:"max_error_rate"`
	} `json:"slo"`
	Recent         observability.Stats     `json:"recent"`
	Transitions    []supervisor.Transition `json:"transitions"`
	ErrorsByReason []reasonCount           `json:"errors_by_reason"`
	Build          observability.Build     `json:"build"`
}

type reasonCount struct {
	Reason string  `json:"reason"`
	Count  float64 `json:"count"`
}

func (s *Server) extras() statusExtras {
	var x statusExtras
	x.SLO.P95Seconds, x.SLO.MaxErrorRate = s.obs.objective.P95E2ESeconds, s.obs.objective.MaxErrorRate
	x.Recent = s.obs.recent.Stats(time.Now(), s.obs.started)
	x.Transitions = s.sup.Transitions()
	byReason, err := s.metrics.ErrorsByReason()
	if err != nil {
		s.log.Warn("gather error counts", "error", err)
	}
	x.ErrorsByReason = make([]reasonCount, 0, len(byReason))
	for r, n := range byReason {
		x.ErrorsByReason = append(x.ErrorsByReason, reasonCount{r, n})
	}
	sort.Slice(x.ErrorsByReason, func(i, j int) bool { return x.ErrorsByReason[i].Reason < x.ErrorsByReason[j].Reason })
	x.Build = observability.ReadBuild()
	return x
}

// handleVersion is GET /version: which build is running.
func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, observability.ReadBuild())
}
