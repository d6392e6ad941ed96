package observability

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsExposition(t *testing.T) {
	states := []string{"STOPPED", "READY"}
	m := NewMetrics(states)
	m.SetWorkerState("READY", states)
	m.Requests.WithLabelValues("/v1/completions", "200").Inc()
	m.WorkerStarts.Inc()
	// A second instance must not collide: each has its own registry.
	_ = NewMetrics(states)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`llmlab_worker_state{state="READY"} 1`,
		`llmlab_worker_state{state="STOPPED"} 0`,
		`llmlab_requests_total{code="200",route="/v1/completions"} 1`,
		`llmlab_worker_starts_total 1`,
		`llmlab_queue_depth 0`,
		`llmlab_worker_cold_start_seconds_bucket`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for code, want := range map[int]string{200: OutcomeOK, 429: OutcomeRejected, 499: OutcomeCanceled, 400: OutcomeClientError, 404: OutcomeClientError, 503: OutcomeError, 504: OutcomeError, 502: OutcomeError} {
		if got := Outcome(code); got != want {
			t.Errorf("Outcome(%d) = %s, want %s", code, got, want)
		}
	}
}

func TestWorkerTransitionMetrics(t *testing.T) {
	states := []string{"STOPPED", "STARTING", "READY", "DRAINING", "FAILED"}
	m := NewMetrics(states)
	m.WorkerTransition("STOPPED", "STARTING", 0, states)
	m.WorkerTransition("STARTING", "READY", 1500*time.Millisecond, states)
	m.WorkerTransition("READY", "FAILED", 0, states)
	m.WorkerTransition("FAILED", "STARTING", 0, states)
	m.WorkerTransition("STARTING", "READY", 500*time.Millisecond, states)
	m.WorkerTransition("READY", "DRAINING", 0, states)
	m.WorkerTransition("DRAINING", "STOPPED", 0, states)
	for name, want := range map[string]float64{
		"llmlab_worker_starts_total": 2, "llmlab_worker_crashes_total": 1, "llmlab_worker_stops_total": 1,
	} {
		if got := testutil.ToFloat64(map[string]prometheus.Collector{
			"llmlab_worker_starts_total": m.WorkerStarts, "llmlab_worker_crashes_total": m.WorkerCrashes, "llmlab_worker_stops_total": m.WorkerStops,
		}[name]); got != want {
			t.Errorf("%s = %g, want %g", name, got, want)
		}
	}
	if got := testutil.ToFloat64(m.WorkerState.WithLabelValues("STOPPED")); got != 1 {
		t.Errorf("STOPPED gauge %g, want 1", got)
	}
	if got := testutil.ToFloat64(m.WorkerTransitions.WithLabelValues("STARTING", "READY")); got != 2 {
		t.Errorf("STARTING→READY transitions %g, want 2", got)
	}
	if n := testutil.CollectAndCount(m.ColdStart); n != 1 {
		t.Fatalf("cold start histogram series %d", n)
	}
}

func TestErrorsByReason(t *testing.T) {
	m := NewMetrics(nil)
	m.Errors.WithLabelValues("queue_full", "429").Add(3)
	m.Errors.WithLabelValues("bad_request", "400").Inc()
	m.Errors.WithLabelValues("bad_request", "415").Inc()
	got, err := m.ErrorsByReason()
	if err != nil {
		t.Fatal(err)
	}
	if got["queue_full"] != 3 || got["bad_request"] != 2 || len(got) != 2 {
		t.Fatalf("ErrorsByReason = %v", got)
	}
}

func TestWindowStats(t *testing.T) {
	w := NewWindow(1000, time.Minute, 10*time.Second, 5*time.Second)
	t0 := time.Unix(1000, 0)
	now := t0.Add(2 * time.Minute).Add(300 * time.Millisecond)
	cur := now.Truncate(time.Second)
	// Too old: outside the minute.
	w.Observe(cur.Add(-90*time.Second), 50*time.Second, OutcomeOK)
	// 30 s ago: in the minute, not in the rate window.
	for i := range 10 {
		w.Observe(cur.Add(-30*time.Second), time.Duration(i+1)*100*time.Millisecond, OutcomeOK)
	}
	// The last 10 whole seconds: 20 answered (one over the objective),
	// 5 refused, 5 the client's own mistakes.
	for i := range 20 {
		d := time.Second
		if i == 0 {
			d = 6 * time.Second
		}
		w.Observe(cur.Add(-time.Duration(i+1)*400*time.Millisecond), d, OutcomeOK)
	}
	for range 5 {
		w.Observe(cur.Add(-time.Second), time.Millisecond, OutcomeRejected)
		w.Observe(cur.Add(-time.Second), time.Millisecond, OutcomeClientError)
	}
	// The current second is not whole yet: not counted.
	w.Observe(cur.Add(100*time.Millisecond), 9*time.Second, OutcomeError)
	st := w.Stats(now, t0)
	if st.Requests != 40 {
		t.Errorf("requests %d, want 40", st.Requests)
	}
	if st.RPS != 3 || st.OKRPS != 2 || st.GoodRPS != 1.9 {
		t.Errorf("rates %g/%g/%g, want 3/2/1.9 per second", st.RPS, st.OKRPS, st.GoodRPS)
	}
	if want := 5.0 / 35; st.ErrorRatio != want {
		t.Errorf("error ratio %g, want %g", st.ErrorRatio, want)
	}
	// 30 answered: 0.1..1.0 s, nineteen of 1 s, one of 6 s; the 429s
	// (1 ms) do not count.
	if st.P50 != 1 || st.P95 != 1 || st.P99 != 6 {
		t.Errorf("quantiles %g/%g/%g, want 1/1/6", st.P50, st.P95, st.P99)
	}
	// Just started: rates divide by the whole seconds since.
	if st := w.Stats(now, cur.Add(-5*time.Second)); st.RateWindowSeconds != 5 || st.WindowSeconds != 5 {
		t.Errorf("windows %g/%g s, want 5/5", st.RateWindowSeconds, st.WindowSeconds)
	}
}

// Rates stay exact when more requests end than the latency ring holds.
func TestWindowRatesBeyondCapacity(t *testing.T) {
	w := NewWindow(4, time.Minute, 10*time.Second, time.Hour)
	cur := time.Unix(5000, 0)
	for i := range 10 {
		w.Observe(cur.Add(-time.Second), time.Duration(i)*time.Second, OutcomeOK)
	}
	st := w.Stats(cur, cur.Add(-time.Hour))
	if st.Requests != 10 || st.OKRPS != 1 {
		t.Fatalf("requests %d, ok rate %g; want 10 and 1/s", st.Requests, st.OKRPS)
	}
	if st.P50 != 7 {
		t.Fatalf("p50 %g: want that of the last 4 (6..9 s), 7", st.P50)
	}
}

func TestBuildInfoSeries(t *testing.T) {
	m := NewMetrics(nil)
	b := ReadBuild()
	if b.GoVersion == "" || b.Version == "" || b.Revision == "" {
		t.Fatalf("ReadBuild() = %+v", b)
	}
	if got := testutil.ToFloat64(m.BuildInfo.WithLabelValues(b.Version, b.Revision, b.GoVersion)); got != 1 {
		t.Fatalf("llmlab_build_info = %g, want 1", got)
	}
}

// The latency, TTFT and queue-wait histograms carry native buckets beside
// the classic ones (sent when a scraper asks for protobuf).
func TestNativeHistogramsExposed(t *testing.T) {
	m := NewMetrics(nil)
	m.Latency.WithLabelValues("/v1/completions", OutcomeOK).Observe(1.3)
	m.TTFT.WithLabelValues("/v1/completions").Observe(0.2)
	m.QueueWait.Observe(0.01)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range fams {
		switch f.GetName() {
		case "llmlab_request_duration_seconds", "llmlab_time_to_first_token_seconds", "llmlab_queue_wait_seconds":
			h := f.GetMetric()[0].GetHistogram()
			if h.Schema == nil || len(h.GetPositiveSpan())+int(h.GetZeroCount()) == 0 || len(h.GetBucket()) != len(SLOBuckets) {
				t.Errorf("%s: schema %v, spans %d, classic buckets %d", f.GetName(), h.Schema, len(h.GetPositiveSpan()), len(h.GetBucket()))
			}
			seen++
		}
	}
	if seen != 3 {
		t.Fatalf("found %d of the 3 histograms", seen)
	}
}

// The cost the status page's window adds to every inference request.
func BenchmarkWindowObserve(b *testing.B) {
	w := NewWindow(1<<14, time.Minute, 10*time.Second, 5*time.Second)
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Observe(now, time.Second, OutcomeOK)
		}
	})
}

// The cost of observing one request's latency by route and outcome.
func BenchmarkLatencyObserve(b *testing.B) {
	m := NewMetrics(nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Latency.WithLabelValues("/v1/completions", Outcome(200)).Observe(1.3)
		}
	})
}
