package admission

import (
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// WorkerMetrics are the worker's own signals, read from its /metrics
// (vLLM's names, which the simulated engine exports too). -1: absent.
type WorkerMetrics struct {
	KVUsage     float64 // vllm:kv_cache_usage_perc, 0–1
	Waiting     float64 // vllm:num_requests_waiting
	Running     float64 // vllm:num_requests_running
	Preemptions float64 // vllm:num_preemptions_total (a counter)
}

// ParseWorkerMetrics reads a Prometheus text exposition. Series of one
// name are summed (one engine per worker: one series each in practice).
func ParseWorkerMetrics(r io.Reader) (WorkerMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return WorkerMetrics{}, fmt.Errorf("parse worker metrics: %w", err)
	}
	get := func(name string) float64 {
		f, ok := fams[name]
		if !ok {
			return -1
		}
		var sum float64
		for _, m := range f.GetMetric() {
			sum += value(m)
		}
		return sum
	}
	return WorkerMetrics{
		KVUsage:     get("vllm:kv_cache_usage_perc"),
		Waiting:     get("vllm:num_requests_waiting"),
		Running:     get("vllm:num_requests_running"),
		Preemptions: get("vllm:num_preemptions_total"),
	}, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
