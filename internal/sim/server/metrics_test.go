package server

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// dashboardSeries are the series vLLM's official Grafana dashboard
// (examples/online_serving/prometheus_grafana/grafana.json) queries, one
// per panel target, by metric family.
var dashboardSeries = []string{
	"vllm:e2e_request_latency_seconds",       // E2E Request Latency
	"vllm:prompt_tokens_total",               // Token Throughput
	"vllm:generation_tokens_total",           // Token Throughput
	"vllm:time_per_output_token_seconds",     // Time Per Output Token Latency
	"vllm:num_requests_running",              // Scheduler State
	"vllm:num_requests_waiting",              // Scheduler State
	"vllm:time_to_first_token_seconds",       // Time To First Token Latency
	"vllm:gpu_cache_usage_perc",              // Cache Utilization
	"vllm:request_prompt_tokens",             // Request Prompt Length
	"vllm:request_generation_tokens",         // Request Generation Length
	"vllm:request_success_total",             // Finish Reason
	"vllm:request_queue_time_seconds",        // Queue Time
	"vllm:request_prefill_time_seconds",      // Requests Prefill and Decode Time
	"vllm:request_decode_time_seconds",       // Requests Prefill and Decode Time
	"vllm:request_max_num_generation_tokens", // Max Generation Token in Sequence Group
}

// TestDashboardHasNoEmptyPanel: after a few requests every series the
// dashboard queries exists with vLLM's labels and has data (histograms
// counted each request; the time histograms summed real time).
func TestDashboardHasNoEmptyPanel(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	const n = 3
	for range n {
		if code, body := ts.post(t, "/v1/completions", `{"prompt":"Explain KV caches.","max_tokens":12,"ignore_eos":true}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	fams := ts.scrape(t)
	for _, name := range dashboardSeries {
		f, ok := fams[name]
		if !ok || len(f.GetMetric()) == 0 {
			t.Errorf("%s: missing", name)
			continue
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["model_name"] != testModel || labels["engine"] != "0" {
			t.Errorf("%s: labels %v", name, labels)
		}
		if f.GetType() == dto.MetricType_HISTOGRAM {
			h := m.GetHistogram()
			if h.GetSampleCount() < n {
				t.Errorf("%s: %d samples, want >= %d", name, h.GetSampleCount(), n)
			}
			if name != "vllm:request_queue_time_seconds" && h.GetSampleSum() <= 0 {
				t.Errorf("%s: sum %v", name, h.GetSampleSum())
			}
		}
	}
	// The generation histograms saw 12 tokens per request.
	if s := fams["vllm:request_max_num_generation_tokens"].GetMetric()[0].GetHistogram().GetSampleSum(); s != 12*n {
		t.Errorf("max_num_generation_tokens sum %v, want %d", s, 12*n)
	}
	info, ok := fams["vllm:cache_config_info"]
	if !ok {
		t.Fatal("vllm:cache_config_info missing")
	}
	got := map[string]string{}
	for _, l := range info.GetMetric()[0].GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if got["block_size"] != "16" || got["num_gpu_blocks"] == "" || got["num_gpu_blocks"] == "0" || info.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("cache_config_info %v", got)
	}
}
