package engine

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Measurements is what a user measured of real vLLM on their card: the
// input of `llmlab sim calibrate` (format in docs/calibration.md).
type Measurements struct {
	// GPU names the built-in card the points were measured on, or GPUSpec
	// a spec file; its spec-sheet figures turn the fitted rates into
	// efficiencies.
	GPU     string `yaml:"gpu"`
	GPUSpec string `yaml:"gpu_spec"`
	// Band labels the thermal state of the points (e.g. sustained, boost).
	Band    string          `yaml:"band"`
	Startup []StartupPoint  `yaml:"startup"`
	Decode  []DecodePoint   `yaml:"decode"`
	Prefill []PrefillPoint  `yaml:"prefill"`
	Serve   []ServePoint    `yaml:"serve"`
	Fixed   map[string]bool `yaml:"fixed"` // terms to keep at the base card's value
}

// PointModel says which model a point ran: a built-in spec or a
// config.json path, its quantization, and optionally the weight size vLLM
// logged ("Model loading took X GiB"), which wins over the computed size.
type PointModel struct {
	Source       string  `yaml:"source"`
	Model        string  `yaml:"model"`
	Quantization string  `yaml:"quantization"`
	WeightGiB    float64 `yaml:"weight_gib"`
}

// StartupPoint is one start-up log: settings and "GPU KV cache size".
type StartupPoint struct {
	PointModel          `yaml:",inline"`
	MemoryTotalGiB      float64 `yaml:"memory_total_gib"`
	GPUMemUtil          float64 `yaml:"gpu_memory_utilization"`
	MaxNumSeqs          int     `yaml:"max_num_seqs"`
	MaxNumBatchedTokens int     `yaml:"max_num_batched_tokens"`
	KVTokens            int     `yaml:"kv_tokens"`
	// Log is vLLM's start-up log, pasted: "Model loading took X GiB",
	// "GPU KV cache size: N tokens" and "Free memory on device (F/T GiB)"
	// fill weight_gib, kv_tokens and memory_total_gib when those are unset.
	Log string `yaml:"log"`
}

var (
	reLoadGiB  = regexp.MustCompile(`Model loading took ([0-9.]+) ?GiB`)
	reKVTokens = regexp.MustCompile(`GPU KV cache size: ([0-9,]+) tokens`)
	reTotalGiB = regexp.MustCompile(`Free memory on device \(([0-9.]+)/([0-9.]+) GiB\)`)
)

// fromLog fills the point's unset figures from its pasted log.
func (p *StartupPoint) fromLog() error {
	if p.Log == "" {
		return nil
	}
	if m := reLoadGiB.FindStringSubmatch(p.Log); m != nil && p.WeightGiB == 0 {
		p.WeightGiB, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reKVTokens.FindStringSubmatch(p.Log); m != nil && p.KVTokens == 0 {
		p.KVTokens, _ = strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	}
	if m := reTotalGiB.FindStringSubmatch(p.Log); m != nil && p.MemoryTotalGiB == 0 {
		p.MemoryTotalGiB, _ = strconv.ParseFloat(m[2], 64)
	}
	if p.KVTokens <= 0 || p.MemoryTotalGiB <= 0 || p.GPUMemUtil <= 0 || p.MaxNumSeqs <= 0 || p.MaxNumBatchedTokens <= 0 {
		return fmt.Errorf("startup point %s needs kv_tokens, memory_total_gib, gpu_memory_utilization, max_num_seqs and max_num_batched_tokens (from the log or given)", p.label())
	}
	return nil
}

// DecodePoint is an inter-token latency at a batch size and mean context
// (`vllm bench latency`, or ITL p50 of a closed-loop run at concurrency N).
type DecodePoint struct {
	PointModel `yaml:",inline"`
	Batch      int     `yaml:"batch"`
	Context    int     `yaml:"context"`
	ITLMs      float64 `yaml:"itl_ms"`
	// Alternatively `vllm bench latency --batch-size B --input-len I
	// --output-len O`'s "Avg latency: S seconds": the ITL is then
	// (S − the modelled prefill of B×I tokens) / (O − 1) at context I + O/2.
	InputLen    int     `yaml:"input_len"`
	OutputLen   int     `yaml:"output_len"`
	AvgLatencyS float64 `yaml:"avg_latency_s"`
}

// PrefillPoint is a time to first token of a lone request.
type PrefillPoint struct {
	PointModel   `yaml:",inline"`
	PromptTokens int     `yaml:"prompt_tokens"`
	TTFTMs       float64 `yaml:"ttft_ms"`
}

// ServePoint is a closed-loop serving result (`vllm bench serve
// --max-concurrency N`, or a ramp level): checked against the fit, not fitted.
type ServePoint struct {
	PointModel          `yaml:",inline"`
	Concurrency         int     `yaml:"concurrency"`
	InputLen            int     `yaml:"input_len"`
	OutputLen           int     `yaml:"output_len"`
	Requests            int     `yaml:"requests"`
	MaxNumSeqs          int     `yaml:"max_num_seqs"`
	MaxNumBatchedTokens int     `yaml:"max_num_batched_tokens"`
	GPUMemUtil          float64 `yaml:"gpu_memory_utilization"` // default 0.9
	OutputTokS          float64 `yaml:"output_tok_s"`
	TPOTMs              float64 `yaml:"tpot_ms"`
	TTFTMs              float64 `yaml:"ttft_ms"`
}

// FitRow is one point's measured and fitted value.
type FitRow struct {
	Kind     string  `json:"kind"`
	Point    string  `json:"point"`
	Measured float64 `json:"measured"`
	Fitted   float64 `json:"fitted"`
	Unit     string  `json:"unit"`
	ErrPct   float64 `json:"error_pct"`
	Source   string  `json:"source,omitempty"`
}

// FitResult is the calibration and the error of every point.
type FitResult struct {
	GPU         GPUSpec     `json:"gpu"`
	Calibration Calibration `json:"calibration"`
	Rows        []FitRow    `json:"points"`
}

// LoadMeasurements reads a measurements file; unknown keys are an error.
func LoadMeasurements(path string) (Measurements, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Measurements{}, fmt.Errorf("read measurements: %w", err)
	}
	var ms Measurements
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&ms); err != nil {
		return Measurements{}, fmt.Errorf("parse measurements %s: %w", path, err)
	}
	if len(ms.Startup)+len(ms.Decode)+len(ms.Prefill) == 0 {
		return Measurements{}, fmt.Errorf("measurements %s: no startup, decode or prefill points to fit", path)
	}
	for i := range ms.Startup {
		if err := ms.Startup[i].fromLog(); err != nil {
			return Measurements{}, fmt.Errorf("measurements %s: %w", path, err)
		}
	}
	return ms, nil
}

func (pm PointModel) spec() (ModelSpec, error) {
	var m ModelSpec
	var err error
	if st, e := os.Stat(pm.Model); e == nil && (st.IsDir() || st.Mode().IsRegular()) {
		m, err = LoadHFConfig(pm.Model)
	} else {
		m, err = LookupModel(pm.Model)
	}
	if err != nil {
		return ModelSpec{}, err
	}
	if err := m.SetQuantization(pm.Quantization); err != nil {
		return ModelSpec{}, err
	}
	if pm.WeightGiB > 0 {
		m.WeightBytesOverride = int64(pm.WeightGiB * GiB)
	}
	return m, nil
}

func (pm PointModel) label() string {
	s := pm.Model
	if pm.Quantization != "" {
		s += "-" + pm.Quantization
	}
	return s
}

func pctErr(fitted, measured float64) float64 { return 100 * (fitted - measured) / measured }

// Fit fits the terms of a card from measurements, in this order: the
// non-torch memory increase from start-up logs; step overhead, per-sequence
// cost and effective bandwidth from decode points (least squares on
// ITL = overhead + per_seq·B + bytes/bandwidth); sustained compute and the
// frontend's per-request cost from prefill points (least squares on
// TTFT = frontend + overhead + FLOPs/compute + a quadratic attention term
// the sim does not model, fitted so it does not bias the linear one).
// Terms with too few points, or listed under `fixed`, keep the base card's
// values. Serve points are then replayed in virtual time and compared.
func Fit(ms Measurements) (FitResult, error) {
	var g GPUSpec
	var err error
	if ms.GPUSpec != "" {
		g, err = LoadGPUSpec(ms.GPUSpec)
	} else {
		g, err = LookupGPU(ms.GPU)
	}
	if err != nil {
		return FitResult{}, err
	}
	t := g.Terms.merge(DefaultTerms())
	var rows []FitRow
	fixed := func(name string) bool { return ms.Fixed[name] }

	// 1. Memory: vLLM's plan solved for the non-torch increase.
	if len(ms.Startup) > 0 && !fixed("non_torch_increase_gib") {
		sum := 0.0
		for _, p := range ms.Startup {
			m, err := p.spec()
			if err != nil {
				return FitResult{}, fmt.Errorf("startup point %s: %w", p.label(), err)
			}
			budget := p.GPUMemUtil * p.MemoryTotalGiB * GiB
			act := activationPeak(m, g.Sampler, p.MaxNumSeqs, p.MaxNumBatchedTokens)
			kv := float64(p.KVTokens) * float64(m.KVBytesPerToken())
			sum += budget - float64(m.WeightBytes()) - float64(act) - kv
		}
		v := math.Max(sum/float64(len(ms.Startup))/GiB, 0)
		t.NonTorchIncreaseGiB = &v
	}
	for _, p := range ms.Startup {
		m, _ := p.spec()
		budget := int64(p.GPUMemUtil * p.MemoryTotalGiB * GiB)
		kv := budget - m.WeightBytes() - activationPeak(m, g.Sampler, p.MaxNumSeqs, p.MaxNumBatchedTokens) -
			int64(val(t.NonTorchIncreaseGiB)*GiB)
		tokens := float64(kv/(m.KVBytesPerToken()*16)) * 16
		rows = append(rows, FitRow{Kind: "startup", Point: fmt.Sprintf("%s util %.2f seqs %d tokens %d",
			p.label(), p.GPUMemUtil, p.MaxNumSeqs, p.MaxNumBatchedTokens), Measured: float64(p.KVTokens),
			Fitted: tokens, Unit: "KV tokens", ErrPct: pctErr(tokens, float64(p.KVTokens)), Source: p.Source})
	}

	// 2. Decode: ITL = a + c·B + bytes·x, x = 1/effective bandwidth.
	// `vllm bench latency` points become ITL points first, with the prefill
	// modelled by the base card's compute terms.
	for i := range ms.Decode {
		p := &ms.Decode[i]
		if p.ITLMs > 0 || p.AvgLatencyS <= 0 {
			continue
		}
		m, err := p.spec()
		if err != nil {
			return FitResult{}, fmt.Errorf("decode point %s: %w", p.label(), err)
		}
		if p.Batch <= 0 || p.InputLen <= 0 || p.OutputLen < 2 {
			return FitResult{}, fmt.Errorf("decode point %s: a bench-latency point needs batch, input_len and output_len >= 2", p.label())
		}
		base := g
		base.Terms = t
		sm, err := NewStepModel(Config{GPUSpec: &base, Model: &m, MaxModelLen: m.MaxPositionEmbed})
		if err != nil {
			return FitResult{}, err
		}
		prefill := sm.Seconds(p.Batch*p.InputLen, 0, p.Batch*p.InputLen)
		p.ITLMs = (p.AvgLatencyS - prefill) / float64(p.OutputLen-1) * 1e3
		p.Context = p.InputLen + p.OutputLen/2
		if p.ITLMs <= 0 {
			return FitResult{}, fmt.Errorf("decode point %s: latency %v s is below the modelled prefill %v s", p.label(), p.AvgLatencyS, prefill)
		}
	}
	if len(ms.Decode) > 0 {
		var X [][]float64
		var y []float64
		for _, p := range ms.Decode {
			m, err := p.spec()
			if err != nil {
				return FitResult{}, fmt.Errorf("decode point %s: %w", p.label(), err)
			}
			X = append(X, []float64{1, float64(p.Batch), decodeBytes(m, p.Batch, p.Context)})
			y = append(y, p.ITLMs/1e3)
		}
		free := []int{0, 1, 2}
		known := []float64{val(t.StepOverheadS), val(t.PerSeqS), 1 / (g.BandwidthGBs * 1e9 * val(t.BandwidthEfficiency))}
		if fixed("step_overhead_s") {
			free = without(free, 0)
		}
		if fixed("per_seq_s") {
			free = without(free, 1)
		}
		if fixed("bandwidth_efficiency") {
			free = without(free, 2)
		}
		coef, err := leastSquares(X, y, free, known)
		if err != nil {
			return FitResult{}, fmt.Errorf("decode fit: %w", err)
		}
		a, c, x := coef[0], coef[1], coef[2]
		eff := 1 / x / (g.BandwidthGBs * 1e9)
		if eff > 1 || x <= 0 {
			return FitResult{}, fmt.Errorf("decode fit gives an effective bandwidth of %.0f GB/s, above the spec sheet's %.0f: check the points", 1/x/1e9, g.BandwidthGBs)
		}
		t.StepOverheadS, t.PerSeqS, t.BandwidthEfficiency = &a, &c, &eff
	}

	// 3. Prefill: TTFT = (frontend + a) + FLOPs·z + n²·q.
	if len(ms.Prefill) > 0 {
		var X [][]float64
		var y []float64
		for _, p := range ms.Prefill {
			m, err := p.spec()
			if err != nil {
				return FitResult{}, fmt.Errorf("prefill point %s: %w", p.label(), err)
			}
			n := float64(p.PromptTokens)
			X = append(X, []float64{1, n * prefillFLOPsPerToken(m), n * n})
			y = append(y, p.TTFTMs/1e3)
		}
		free := []int{0, 1}
		if len(ms.Prefill) >= 3 {
			free = append(free, 2)
		}
		known := []float64{val(t.FrontendRequestS) + val(t.StepOverheadS),
			1 / (g.FP16TFLOPS * 1e12 * val(t.ComputeEfficiency)), 0}
		if fixed("frontend_request_s") {
			free = without(free, 0)
		}
		if fixed("compute_efficiency") {
			free = without(free, 1)
		}
		coef, err := leastSquares(X, y, free, known)
		if err != nil {
			return FitResult{}, fmt.Errorf("prefill fit: %w", err)
		}
		front := math.Max(coef[0]-val(t.StepOverheadS), 0)
		eff := 1 / coef[1] / (g.FP16TFLOPS * 1e12)
		if coef[1] <= 0 || eff > 1 {
			return FitResult{}, fmt.Errorf("prefill fit gives sustained compute of %.1f TFLOP/s against a spec sheet of %.1f: check the points", 1/coef[1]/1e12, g.FP16TFLOPS)
		}
		t.FrontendRequestS, t.ComputeEfficiency = &front, &eff
	}

	cal := Calibration{Terms: t, Source: ms.Band}
	g.Terms = t
	// Report every point against the fitted model as the sim runs it.
	for _, p := range ms.Decode {
		m, _ := p.spec()
		sm, err := NewStepModel(Config{GPUSpec: &g, Model: &m, MaxModelLen: m.MaxPositionEmbed})
		if err != nil {
			return FitResult{}, err
		}
		s := (sm.Seconds(0, p.Batch, p.Batch*p.Context) + sm.FrontendTokenSeconds()) * 1e3
		rows = append(rows, FitRow{Kind: "decode", Point: fmt.Sprintf("%s batch %d ctx %d", p.label(), p.Batch, p.Context),
			Measured: p.ITLMs, Fitted: s, Unit: "ITL ms", ErrPct: pctErr(s, p.ITLMs), Source: p.Source})
	}
	for _, p := range ms.Prefill {
		m, _ := p.spec()
		sm, err := NewStepModel(Config{GPUSpec: &g, Model: &m, MaxModelLen: m.MaxPositionEmbed})
		if err != nil {
			return FitResult{}, err
		}
		s := (sm.Seconds(p.PromptTokens, 0, p.PromptTokens) + sm.FrontendRequestSeconds()) * 1e3
		rows = append(rows, FitRow{Kind: "prefill", Point: fmt.Sprintf("%s prompt %d", p.label(), p.PromptTokens),
			Measured: p.TTFTMs, Fitted: s, Unit: "TTFT ms", ErrPct: pctErr(s, p.TTFTMs), Source: p.Source})
	}
	for _, p := range ms.Serve {
		m, err := p.spec()
		if err != nil {
			return FitResult{}, fmt.Errorf("serve point %s: %w", p.label(), err)
		}
		util := p.GPUMemUtil
		if util == 0 {
			util = 0.9
		}
		r, err := ClosedLoop(Config{GPUSpec: &g, Model: &m, MaxModelLen: p.InputLen + p.OutputLen,
			GPUMemoryUtilization: util, MaxNumSeqs: max(p.MaxNumSeqs, 1), MaxNumBatchedTokens: max(p.MaxNumBatchedTokens, p.MaxNumSeqs),
			EnableChunkedPrefill: true, BlockSize: 16}, p.Concurrency, p.InputLen, p.OutputLen, p.Requests)
		if err != nil {
			return FitResult{}, fmt.Errorf("serve point %s conc %d: %w", p.label(), p.Concurrency, err)
		}
		name := fmt.Sprintf("%s conc %d (%d in/%d out)", p.label(), p.Concurrency, p.InputLen, p.OutputLen)
		if p.OutputTokS > 0 {
			rows = append(rows, FitRow{Kind: "serve", Point: name, Measured: p.OutputTokS, Fitted: r.OutputTokS,
				Unit: "output tok/s", ErrPct: pctErr(r.OutputTokS, p.OutputTokS), Source: p.Source})
		}
		if p.TPOTMs > 0 {
			rows = append(rows, FitRow{Kind: "serve", Point: name, Measured: p.TPOTMs, Fitted: r.MeanTPOTS * 1e3,
				Unit: "TPOT ms", ErrPct: pctErr(r.MeanTPOTS*1e3, p.TPOTMs), Source: p.Source})
		}
		if p.TTFTMs > 0 {
			rows = append(rows, FitRow{Kind: "serve", Point: name, Measured: p.TTFTMs, Fitted: r.MedianTTFTS * 1e3,
				Unit: "TTFT p50 ms", ErrPct: pctErr(r.MedianTTFTS*1e3, p.TTFTMs), Source: p.Source})
		}
	}
	return FitResult{GPU: g, Calibration: cal, Rows: rows}, nil
}

// activationPeak is the profiling run's torch peak increase (see NewPlan).
func activationPeak(m ModelSpec, sampler string, seqs, tokens int) int64 {
	fwd := int64(tokens) * m.ForwardBytesPerToken()
	smp := m.samplerPeak(sampler, min(seqs, tokens)) + int64(tokens)*int64(m.Hidden*m.DtypeBytes)
	return max(fwd, smp)
}

// decodeBytes is the memory traffic of one decode step (see StepModel).
func decodeBytes(m ModelSpec, batch, ctx int) float64 {
	return float64(m.WeightBytes()) + float64(batch)*(float64(ctx)*float64(m.KVBytesPerToken())+float64(m.Vocab*samplerBytesPerDecodeSeq))
}

// prefillFLOPsPerToken is the body FLOPs of one prompt token (see StepModel).
func prefillFLOPsPerToken(m ModelSpec) float64 { return 2 * float64(m.Params-m.EmbedParams) }

func without(s []int, v int) []int {
	out := s[:0:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// leastSquares solves min |X·β − y| over the coefficients listed in free,
// holding the others at known. It refuses an under-determined system.
func leastSquares(X [][]float64, y []float64, free []int, known []float64) ([]float64, error) {
	beta := append([]float64(nil), known...)
	k := len(free)
	if k == 0 {
		return beta, nil
	}
	if len(y) < k {
		return nil, fmt.Errorf("%d points cannot fix %d terms (list some under `fixed`)", len(y), k)
	}
	// Normal equations on the residual after the known terms, with each
	// free column scaled to unit size first (seconds, bytes and FLOPs
	// differ by 20 orders of magnitude).
	colScale := make([]float64, k)
	for i, fi := range free {
		for _, row := range X {
			colScale[i] = math.Max(colScale[i], math.Abs(row[fi]))
		}
		if colScale[i] == 0 {
			return nil, fmt.Errorf("the points do not vary in term %d: it cannot be fitted (list it under `fixed`)", fi)
		}
	}
	A := make([][]float64, k)
	b := make([]float64, k)
	for i := range A {
		A[i] = make([]float64, k)
	}
	for r, row := range X {
		res := y[r]
		for j := range known {
			if !contains(free, j) {
				res -= row[j] * known[j]
			}
		}
		for i, fi := range free {
			xi := row[fi] / colScale[i]
			b[i] += xi * res
			for j, fj := range free {
				A[i][j] += xi * row[fj] / colScale[j]
			}
		}
	}
	sol, err := solve(A, b)
	if err != nil {
		return nil, err
	}
	for i, fi := range free {
		beta[fi] = sol[i] / colScale[i]
	}
	return beta, nil
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// solve is Gaussian elimination with partial pivoting.
func solve(A [][]float64, b []float64) ([]float64, error) {
	n := len(b)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(A[r][c]) > math.Abs(A[p][c]) {
				p = r
			}
		}
		if math.Abs(A[p][c]) < 1e-14 {
			return nil, fmt.Errorf("the points cannot separate the terms (list some under `fixed`)")
		}
		A[c], A[p] = A[p], A[c]
		b[c], b[p] = b[p], b[c]
		for r := c + 1; r < n; r++ {
			f := A[r][c] / A[c][c]
			for k := c; k < n; k++ {
				A[r][k] -= f * A[c][k]
			}
			b[r] -= f * b[c]
		}
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := b[i]
		for k := i + 1; k < n; k++ {
			s -= A[i][k] * x[k]
		}
		x[i] = s / A[i][i]
	}
	return x, nil
}

// ClosedLoopResult is a closed-loop run in virtual time.
type ClosedLoopResult struct {
	Requests    int     `json:"requests"`
	OutputTokS  float64 `json:"output_tok_s"`
	MeanTPOTS   float64 `json:"mean_tpot_s"`
	MedianTTFTS float64 `json:"median_ttft_s"`
	Seconds     float64 `json:"seconds"`
}

// ClosedLoop runs `concurrency` clients that each send a request (input
// tokens in, output tokens out) as soon as their previous one finished, as
// `vllm bench serve --max-concurrency N` does, in virtual time, until
// `requests` have finished (0: max(40, 5·concurrency)). Time to first token
// includes the frontend's per-request cost; each later token its
// per-token cost.
func ClosedLoop(cfg Config, concurrency, input, output, requests int) (ClosedLoopResult, error) {
	if concurrency <= 0 || input <= 0 || output <= 0 {
		return ClosedLoopResult{}, fmt.Errorf("closed loop needs concurrency, input and output > 0")
	}
	if requests <= 0 {
		requests = max(40, 5*concurrency)
	}
	plan, err := NewPlan(cfg)
	if err != nil {
		return ClosedLoopResult{}, err
	}
	s := NewScheduler(cfg, plan)
	sm := s.StepModel()
	// The frontend's per-request cost comes before the engine sees the
	// request (HTTP, tokenisation), as the live server and the offline
	// runner model it; its per-token cost paces delivery after each step.
	fr, ft := sm.FrontendRequestSeconds(), sm.FrontendTokenSeconds()
	type st struct{ arrival, first, last float64 }
	state := map[int]*st{}
	var pending []int // sent, not yet in the scheduler (entering at arrival+fr)
	now, sent, done := 0.0, 0, 0
	var tpot, ttft []float64
	send := func(at float64) {
		state[sent] = &st{arrival: at}
		pending = append(pending, sent)
		sent++
	}
	admit := func() error {
		keep := pending[:0]
		for _, ref := range pending {
			if state[ref].arrival+fr <= now {
				if err := s.Add(Request{ID: strconv.Itoa(ref), PromptTokens: input, OutputTokens: output, Ref: ref}); err != nil {
					return err
				}
				continue
			}
			keep = append(keep, ref)
		}
		pending = keep
		return nil
	}
	// Clients start spread over one request's lone lifetime rather than
	// all at once: a long closed-loop run reaches that steady state (real
	// step times jitter), whereas equal requests started together would
	// stay in lockstep in a deterministic model and batch their prefills.
	life := fr + sm.Seconds(input, 0, input) + float64(output-1)*(sm.Seconds(0, concurrency, concurrency*(input+output/2))+ft)
	for i := 0; i < concurrency && sent < requests; i++ {
		send(life * float64(i) / float64(concurrency))
	}
	outTokens := 0
	for done < requests {
		if err := admit(); err != nil {
			return ClosedLoopResult{}, err
		}
		if !s.HasWork() {
			if len(pending) == 0 {
				break
			}
			next := math.Inf(1)
			for _, ref := range pending {
				next = math.Min(next, state[ref].arrival+fr)
			}
			now = next
			continue
		}
		step := s.Step()
		if step.PrefillTokens == 0 && step.DecodeSeqs == 0 {
			break
		}
		now += step.Duration.Seconds()
		var finishedAt []float64
		for _, ev := range step.Tokens {
			q := state[ev.Ref]
			if ev.Index == 0 {
				q.first, q.last = now, now
			} else {
				q.last = math.Max(now, q.last+ft)
			}
			outTokens++
			if ev.Finished {
				ttft = append(ttft, q.first-q.arrival)
				if output > 1 {
					tpot = append(tpot, (q.last-q.first)/float64(output-1))
				}
				finishedAt = append(finishedAt, q.last)
				delete(state, ev.Ref)
				done++
			}
		}
		for _, at := range finishedAt {
			if sent < requests {
				send(at)
			}
		}
	}
	r := ClosedLoopResult{Requests: done, Seconds: now}
	if now > 0 {
		r.OutputTokS = float64(outTokens) / now
	}
	r.MeanTPOTS = mean(tpot)
	r.MedianTTFTS = median(ttft)
	return r, nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := append([]float64(nil), xs...)
	for i := 1; i < len(c); i++ { // insertion sort: small inputs
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c[len(c)/2]
}
