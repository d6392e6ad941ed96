package slo

// Dist summarises one latency distribution, in seconds.
type Dist struct {
	P50, P95, P99, Max, Mean float64
}

// Latencies is the latency part of a run's results, judged against the
// Objective. Both `llmlab sim run` and `llmlab bench` embed it, so the two
// name these fields identically and their outputs can be compared directly.
// Definitions follow vLLM's benchmark: TTFT to the first token, TPOT per
// request excluding the first token, ITL between streamed chunks.
type Latencies struct {
	E2EP50  float64 `json:"e2e_p50_s"`
	E2EP95  float64 `json:"e2e_p95_s"`
	E2EP99  float64 `json:"e2e_p99_s"`
	E2EMax  float64 `json:"e2e_max_s"`
	E2EMean float64 `json:"e2e_mean_s"`

	TTFTP50  float64 `json:"ttft_p50_s"`
	TTFTP95  float64 `json:"ttft_p95_s"`
	TTFTP99  float64 `json:"ttft_p99_s"`
	TTFTMax  float64 `json:"ttft_max_s"`
	TTFTMean float64 `json:"ttft_mean_s"`

	TPOTP50  float64 `json:"tpot_p50_s"`
	TPOTP95  float64 `json:"tpot_p95_s"`
	TPOTP99  float64 `json:"tpot_p99_s"`
	TPOTMax  float64 `json:"tpot_max_s"`
	TPOTMean float64 `json:"tpot_mean_s"`

	ITLP50  float64 `json:"itl_p50_s"`
	ITLP95  float64 `json:"itl_p95_s"`
	ITLP99  float64 `json:"itl_p99_s"`
	ITLMax  float64 `json:"itl_max_s"`
	ITLMean float64 `json:"itl_mean_s"`
}

// NewLatencies assembles the four distributions.
func NewLatencies(e2e, ttft, tpot, itl Dist) Latencies {
	return Latencies{
		E2EP50: e2e.P50, E2EP95: e2e.P95, E2EP99: e2e.P99, E2EMax: e2e.Max, E2EMean: e2e.Mean,
		TTFTP50: ttft.P50, TTFTP95: ttft.P95, TTFTP99: ttft.P99, TTFTMax: ttft.Max, TTFTMean: ttft.Mean,
		TPOTP50: tpot.P50, TPOTP95: tpot.P95, TPOTP99: tpot.P99, TPOTMax: tpot.Max, TPOTMean: tpot.Mean,
		ITLP50: itl.P50, ITLP95: itl.P95, ITLP99: itl.P99, ITLMax: itl.Max, ITLMean: itl.Mean,
	}
}

// E2E, TTFT, TPOT and ITL return one distribution back.
func (l Latencies) E2E() Dist  { return Dist{l.E2EP50, l.E2EP95, l.E2EP99, l.E2EMax, l.E2EMean} }
func (l Latencies) TTFT() Dist { return Dist{l.TTFTP50, l.TTFTP95, l.TTFTP99, l.TTFTMax, l.TTFTMean} }
func (l Latencies) TPOT() Dist { return Dist{l.TPOTP50, l.TPOTP95, l.TPOTP99, l.TPOTMax, l.TPOTMean} }
func (l Latencies) ITL() Dist  { return Dist{l.ITLP50, l.ITLP95, l.ITLP99, l.ITLMax, l.ITLMean} }
