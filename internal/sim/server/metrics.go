package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llmlab/llmlab/internal/openai"
)

// Bucket lists copied from vLLM's PrometheusStatLogger
// (vllm/v1/metrics/loggers.py), so dashboards and queries written for vLLM
// read the simulator unchanged.
var (
	ttftBuckets = []float64{
		0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
		0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
	}
	itlBuckets = []float64{
		0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
	}
	requestLatencyBuckets = []float64{
		0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
		40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
	}
	// stepLagBuckets spans 10 µs to 100 ms: a healthy simulator lags well
	// under a millisecond; tens of milliseconds mean the host is the
	// bottleneck.
	// time_per_prefill_token_request_seconds (loggers.py).
	prefillPerTokenBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0}
	stepLagBuckets         = []float64{
		0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005,
		0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
	}
)

// Counter names carry "_total" explicitly: the Python client vLLM uses adds
// it, the Go client does not.
//
// metrics are the simulator's Prometheus series, in a private registry so
// that several servers (tests) can live in one process.
type metrics struct {
	reg *prometheus.Registry

	running, waiting, kvUsage     prometheus.Gauge
	gpuCacheUsage                 prometheus.Gauge
	promptTokens, genTokens       prometheus.Counter
	preemptions                   prometheus.Counter
	prefixQueries, prefixHits     prometheus.Counter
	success                       map[string]prometheus.Counter
	ttft, itl, tpot, e2e, queue   prometheus.Observer
	prefill, decode, inference    prometheus.Observer
	prefillPerToken               prometheus.Observer
	stepLag                       prometheus.Observer
	promptHist, genHist           prometheus.Observer
	iterationTokens, maxTokenHist prometheus.Observer
	maxGenHist, nHist             prometheus.Observer
}

// cacheInfo is the label set of vllm:cache_config_info, vLLM's
// CacheConfig.metrics_info() (every CacheConfig field as a string); the sim
// reports the fields it models.
type cacheInfo struct {
	blockSize      int
	gpuUtilization float64
	numGPUBlocks   int
}

func newMetrics(servedName string, maxModelLen int, ci cacheInfo) *metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"model_name": servedName, "engine": "0"}
	names := []string{"model_name", "engine"}
	gauge := func(name, help string) prometheus.Gauge {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, names)
		reg.MustRegister(v)
		return v.With(labels)
	}
	counter := func(name, help string) prometheus.Counter {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, names)
		reg.MustRegister(v)
		return v.With(labels)
	}
	hist := func(name, help string, buckets []float64) prometheus.Observer {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, names)
		reg.MustRegister(v)
		return v.With(labels)
	}
	tokenBuckets := build125Buckets(maxModelLen)
	m := &metrics{
		reg:     reg,
		running: gauge("vllm:num_requests_running", "Number of requests in model execution batches."),
		waiting: gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
		kvUsage: gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
		// Deprecated in vLLM 0.9 but still exported by 0.10–0.11, and the
		// official Grafana dashboard's "Cache Utilization" panel reads it.
		gpuCacheUsage: gauge("vllm:gpu_cache_usage_perc",
			"GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead."),
		promptTokens: counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
		genTokens:    counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
		preemptions:  counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine."),
		ttft:         hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttftBuckets),
		itl:          hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itlBuckets),
		tpot: hist("vllm:time_per_output_token_seconds",
			"Histogram of time per output token in seconds.DEPRECATED: Use vllm:inter_token_latency_seconds instead.", itlBuckets),
		e2e:       hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", requestLatencyBuckets),
		queue:     hist("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", requestLatencyBuckets),
		inference: hist("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", requestLatencyBuckets),
		prefill:   hist("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", requestLatencyBuckets),
		decode:    hist("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", requestLatencyBuckets),
		prefillPerToken: hist("vllm:time_per_prefill_token_request_seconds",
			"Time spent per token during prefill  phase in seconds", prefillPerTokenBuckets),
		promptHist:   hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokenBuckets),
		genHist:      hist("vllm:request_generation_tokens", "Number of generation tokens processed.", tokenBuckets),
		maxTokenHist: hist("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokenBuckets),
		maxGenHist: hist("vllm:request_max_num_generation_tokens",
			"Histogram of maximum number of requested generation tokens.", tokenBuckets),
		nHist: hist("vllm:request_params_n", "Histogram of the n request parameter.", []float64{1, 2, 5, 10, 20}),
		iterationTokens: hist("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
			[]float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}),
		stepLag: hist("llmlab_sim_step_lag_seconds",
			"Wall-clock time by which each simulated engine step ended after its modelled end (actual - modelled).", stepLagBuckets),
	}
	// In tokens, as vLLM's PrometheusStatLogger (vllm/v1/metrics/loggers.py).
	m.prefixQueries = counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.")
	m.prefixHits = counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.")
	success := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vllm:request_success_total", Help: "Count of successfully processed requests.",
	}, append(names, "finished_reason"))
	reg.MustRegister(success)
	m.success = make(map[string]prometheus.Counter)
	// vLLM creates every finished_reason series up front, so they read 0
	// rather than being absent before the first request.
	for _, r := range []string{openai.FinishStop, openai.FinishLength, openai.FinishAbort} {
		m.success[r] = success.With(prometheus.Labels{"model_name": servedName, "engine": "0", "finished_reason": r})
	}
	// vllm:cache_config_info is an info metric: a gauge set to 1 whose
	// labels carry the configuration (loggers.py log_metrics_info).
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vllm:cache_config_info", Help: "Information of the LLMEngine CacheConfig",
	}, []string{"block_size", "cache_dtype", "gpu_memory_utilization", "num_cpu_blocks", "num_gpu_blocks", "engine"})
	reg.MustRegister(info)
	info.With(prometheus.Labels{
		"block_size": strconv.Itoa(ci.blockSize), "cache_dtype": "auto",
		"gpu_memory_utilization": strconv.FormatFloat(ci.gpuUtilization, 'f', -1, 64),
		"num_cpu_blocks":         "None", "num_gpu_blocks": strconv.Itoa(ci.numGPUBlocks), "engine": "0",
	}).Set(1)
	return m
}

// firstToken records what vLLM records when a request's first token is
// out: the queue time (arrival → the step that produced it began; exact
// when the prompt's prefill fits one step, as short prompts do) and the
// time to first token.
func (m *metrics) firstToken(s *seq, stepStart, end time.Time) {
	m.promptTokens.Add(float64(s.promptTokens))
	m.ttft.Observe(end.Sub(s.arrival).Seconds())
	s.scheduledAt = stepStart
	if stepStart.Before(s.arrival) {
		s.scheduledAt = s.arrival
	}
	s.firstTokenAt = end
	m.queue.Observe(s.scheduledAt.Sub(s.arrival).Seconds())
}

// finished records a finished request as vLLM's PrometheusStatLogger does
// for each of iteration_stats.finished_requests (prefill = scheduled →
// first token, decode = first → last token, inference = scheduled → last).
func (m *metrics) finished(s *seq, generated int, end time.Time) {
	m.success[s.finishReason].Inc()
	m.e2e.Observe(end.Sub(s.arrival).Seconds())
	prefill := s.firstTokenAt.Sub(s.scheduledAt).Seconds()
	m.prefill.Observe(prefill)
	if s.promptTokens > 0 {
		m.prefillPerToken.Observe(prefill / float64(s.promptTokens))
	}
	m.decode.Observe(end.Sub(s.firstTokenAt).Seconds())
	m.inference.Observe(end.Sub(s.scheduledAt).Seconds())
	m.promptHist.Observe(float64(s.promptTokens))
	m.genHist.Observe(float64(generated))
	m.maxTokenHist.Observe(float64(s.maxTokens))
	// n = 1: the largest generation of the request's group is its own.
	m.maxGenHist.Observe(float64(generated))
	m.nHist.Observe(1)
}

// handler serves the registry in the text exposition format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// build125Buckets is vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, …
// up to max.
func build125Buckets(max int) []float64 {
	var out []float64
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			v := m * p
			if v > max {
				return out
			}
			out = append(out, float64(v))
		}
	}
}
