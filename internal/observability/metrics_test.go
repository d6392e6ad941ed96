package observability

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

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
