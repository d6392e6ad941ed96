package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// VLLMVersion is the vLLM source the memory plan follows. The algorithm was
// read in vllm-project/vllm at commit 35d5cda123ec (vllm/v1/worker/
// gpu_worker.py); it is the same as in v0.11.0, the release the calibration
// data of the default card ran (docs/calibration.md).
const VLLMVersion = "vLLM V1 worker at 35d5cda123ec (algorithm as in v0.11.0)"

// Start-up memory, as vLLM's V1 worker plans it (all in
// vllm/v1/worker/gpu_worker.py unless said otherwise):
//
//	Worker.init_device: snapshot after the CUDA context exists;
//	    requested = gpu_memory_utilization × total (total as torch reports it);
//	    free at start < requested → ValueError "Free memory on device …"
//	Worker.determine_available_memory: memory_profiling() around
//	    GPUModelRunner.profile_run (a forward pass over max_num_batched_tokens
//	    dummy tokens, then _dummy_sampler_run over max_num_seqs requests);
//	    KV = requested − (weights + torch_peak_increase + non_torch_increase)
//	    (non_kv_cache_memory in vllm/utils/mem_utils.py).
//	Worker.compile_or_warm_up_model: CUDA graphs are captured after the KV
//	    cache is allocated and are not in the formula: they must fit in the
//	    memory left outside `requested`.
//
// The torch peak increase is the larger of the forward pass and the sampler
// pass (profile_run deletes the forward intermediates layer by layer; only
// the final hidden states stay live through sampling), not their sum.
const (
	// processInitSeconds is Python import, engine-core process spawn and
	// tokenizer load before any GPU work (CPU-bound). An estimate: the
	// calibration source gives only the total (48 s, see warmup_s in
	// specs/gpus.yaml), which the split leaves unchanged for its model.
	processInitSeconds = 10.0
	// weightLoadBps is the rate safetensors load into GPU memory from a
	// warm cache: "Model loading took 1.9542 GiB and 3.96 seconds" on the
	// RTX 3050 (PROGRESS_LOG.md, Stage 7): 2.098 GB / 3.96 s.
	weightLoadBps = 0.53e9
)

// ResolveGPU is the card cfg models: GPUSpec when set, else the built-in GPU.
func (c Config) ResolveGPU() (GPUSpec, error) {
	if c.GPUSpec != nil {
		return *c.GPUSpec, nil
	}
	return LookupGPU(c.GPU)
}

// ResolveModel is the architecture cfg models: Model when set, else the
// built-in model spec.
func (c Config) ResolveModel() (ModelSpec, error) {
	if c.Model != nil {
		return *c.Model, nil
	}
	return LookupModel(c.ModelSpec)
}

// terms are the GPU's terms with the calibration's overrides applied.
func (c Config) terms(g GPUSpec) Terms {
	t := g.Terms.merge(DefaultTerms())
	if c.Calibration != nil {
		t = c.Calibration.Terms.merge(t)
	}
	return t
}

// ValidateConfig checks the configuration the way vLLM's config classes do,
// with their messages, and fills nothing in: zero values are errors.
func ValidateConfig(cfg Config) error {
	m, err := cfg.ResolveModel()
	if err != nil {
		return err
	}
	g, err := cfg.ResolveGPU()
	if err != nil {
		return err
	}
	if err := g.validate(); err != nil {
		return err
	}
	switch {
	case cfg.MaxModelLen <= 0:
		return fmt.Errorf("max_model_len must be > 0, got %d", cfg.MaxModelLen)
	case cfg.MaxModelLen > m.MaxPositionEmbed:
		return fmt.Errorf("User-specified max_model_len (%d) is greater than the derived max_model_len "+
			"(max_position_embeddings=%d or model_max_length=None in model's config.json). "+
			"To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. "+
			"VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution.", cfg.MaxModelLen, m.MaxPositionEmbed)
	case cfg.GPUMemoryUtilization <= 0:
		return fmt.Errorf("GPU memory utilization must be greater than 0. Got %v.", cfg.GPUMemoryUtilization)
	case cfg.GPUMemoryUtilization > 1:
		return fmt.Errorf("GPU memory utilization must be less than 1.0. Got %v.", cfg.GPUMemoryUtilization)
	case cfg.MaxNumSeqs <= 0:
		return fmt.Errorf("max_num_seqs must be > 0, got %d", cfg.MaxNumSeqs)
	case cfg.MaxNumBatchedTokens <= 0:
		return fmt.Errorf("max_num_batched_tokens must be > 0, got %d", cfg.MaxNumBatchedTokens)
	case !validBlockSize(cfg.BlockSize):
		return fmt.Errorf("block_size must be one of [1, 8, 16, 32, 64, 128], got %d", cfg.BlockSize)
	case !cfg.EnableChunkedPrefill && cfg.MaxNumBatchedTokens < cfg.MaxModelLen:
		return fmt.Errorf("max_num_batched_tokens (%d) is smaller than max_model_len (%d). "+
			"This effectively limits the maximum sequence length to max_num_batched_tokens and "+
			"makes vLLM reject longer sequences. Please increase max_num_batched_tokens or "+
			"decrease max_model_len.", cfg.MaxNumBatchedTokens, cfg.MaxModelLen)
	case cfg.MaxNumBatchedTokens < cfg.MaxNumSeqs:
		return fmt.Errorf("max_num_batched_tokens (%d) must be greater than or equal to max_num_seqs (%d).",
			cfg.MaxNumBatchedTokens, cfg.MaxNumSeqs)
	}
	if c := cfg.Calibration; c != nil {
		if err := c.validate(); err != nil {
			return err
		}
	}
	return nil
}

func validBlockSize(b int) bool {
	switch b {
	case 1, 8, 16, 32, 64, 128:
		return true
	}
	return false
}

// cudaGraphCaptureMax is the largest batch vLLM captures a CUDA graph for:
// min(2 × max_num_seqs, 512), then at most max_num_batched_tokens
// (vllm/config/vllm.py VllmConfig._set_cudagraph_sizes, no speculative
// decoding; the RTX 3050 log of the calibration source lists
// [16, 8, 4, 2, 1] at max_num_seqs 8 and sizes up to 64 at 32).
func cudaGraphCaptureMax(maxNumSeqs, maxNumBatchedTokens int) int {
	return min(2*maxNumSeqs, 512, maxNumBatchedTokens)
}

// NewPlan validates cfg and profiles memory as vLLM does at start-up. A
// configuration that does not fit returns a *StartupError with vLLM's text.
func NewPlan(cfg Config) (Plan, error) {
	if err := ValidateConfig(cfg); err != nil {
		return Plan{}, configError(err)
	}
	g, _ := cfg.ResolveGPU()
	m, _ := cfg.ResolveModel()
	t := cfg.terms(g)

	p := Plan{
		TotalBytes:       g.MemBytes(),
		FreeAtStartBytes: g.FreeBytes(),
		BudgetBytes:      int64(cfg.GPUMemoryUtilization * float64(g.MemBytes())),
		WeightBytes:      m.WeightBytes(),
		OverheadBytes:    int64(val(t.NonTorchIncreaseGiB) * GiB),
		VLLMVersion:      VLLMVersion,
		StartupSeconds: processInitSeconds + float64(m.WeightBytes())/weightLoadBps +
			val(t.WarmupS)*float64(m.Layers)/24,
	}
	// Worker.init_device: the free-memory check, in vLLM's words (GiB
	// rounded to 2 places, as its GiB lambda does).
	if p.FreeAtStartBytes < p.BudgetBytes {
		r := func(b int64) string { return pyFloat(math.Round(float64(b)/GiB*100) / 100) }
		return p, outOfMemory(fmt.Errorf("ValueError: Free memory on device (%s/%s GiB) on startup is less than desired "+
			"GPU memory utilization (%s, %s GiB). Decrease GPU memory utilization or reduce GPU memory "+
			"used by other processes.", r(p.FreeAtStartBytes), r(p.TotalBytes), pyFloat(cfg.GPUMemoryUtilization), r(p.BudgetBytes)))
	}
	// Worker.load_model: weights that do not fit in free memory fail while
	// loading, before any profiling.
	if p.WeightBytes > p.FreeAtStartBytes {
		return p, outOfMemory(fmt.Errorf("torch.OutOfMemoryError: CUDA out of memory while loading the model weights "+
			"(%.2f GiB of weights, %.2f GiB free of %.2f GiB total).",
			float64(p.WeightBytes)/GiB, float64(p.FreeAtStartBytes)/GiB, float64(p.TotalBytes)/GiB))
	}
	// GPUModelRunner.profile_run: forward over max_num_batched_tokens, then
	// the sampler over min(max_num_seqs, max_num_batched_tokens) requests
	// while the forward's final hidden states are still referenced.
	reqs := min(cfg.MaxNumSeqs, cfg.MaxNumBatchedTokens)
	p.ForwardPeakBytes = int64(cfg.MaxNumBatchedTokens) * m.ForwardBytesPerToken()
	p.SamplerPeakBytes = m.samplerPeak(g.Sampler, reqs) +
		int64(cfg.MaxNumBatchedTokens)*int64(m.Hidden*m.DtypeBytes)
	p.ActivationBytes = max(p.ForwardPeakBytes, p.SamplerPeakBytes)
	if !cfg.EnforceEager {
		p.CUDAGraphBytes = int64(val(t.CUDAGraphGiB)*GiB) +
			int64(cudaGraphCaptureMax(cfg.MaxNumSeqs, cfg.MaxNumBatchedTokens))*m.ForwardBytesPerToken()
	}

	p.KVBytes = p.BudgetBytes - p.WeightBytes - p.ActivationBytes - p.OverheadBytes
	if p.KVBytes <= 0 {
		return p, outOfMemory(fmt.Errorf("ValueError: No available memory for the cache blocks. " +
			"Try increasing `gpu_memory_utilization` when initializing the engine."))
	}
	kvPerToken := m.KVBytesPerToken()
	blockBytes := kvPerToken * int64(cfg.BlockSize)
	p.NumBlocks = int(p.KVBytes / blockBytes)
	p.KVTokens = p.NumBlocks * cfg.BlockSize
	// vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory: one
	// max_model_len sequence needs cdiv(max_model_len, block_size) whole
	// pages; its estimate of the longest that fits is in whole blocks too.
	blocksPerSeq := (cfg.MaxModelLen + cfg.BlockSize - 1) / cfg.BlockSize
	need := int64(blocksPerSeq) * blockBytes
	if p.KVBytes < need {
		return p, outOfMemory(fmt.Errorf("ValueError: To serve at least one request with the models's max seq len (%d), "+
			"(%.2f GiB KV cache is needed, which is larger than the available KV cache memory (%.2f GiB). "+
			"Based on the available memory, the estimated maximum model length is %d. "+
			"Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
			cfg.MaxModelLen, float64(need)/GiB, float64(p.KVBytes)/GiB, p.KVTokens))
	}
	// vLLM divides whole blocks: num_blocks / cdiv(max_model_len, block_size).
	p.MaxConcurrency = float64(p.NumBlocks) / float64(blocksPerSeq)
	// compile_or_warm_up_model: graph capture allocates from what is left
	// outside the budget; when that is too little, capture fails with
	// PyTorch's OOM and the engine does not start.
	if left := p.FreeAtStartBytes - p.BudgetBytes; p.CUDAGraphBytes > left {
		return p, fmt.Errorf("torch.OutOfMemoryError: CUDA out of memory during CUDA graph capture: "+
			"the graph pool needs %.2f GiB but only %.2f GiB is free outside gpu_memory_utilization "+
			"(%.2f of %.2f GiB free at start). Decrease gpu_memory_utilization or use --enforce-eager.",
			float64(p.CUDAGraphBytes)/GiB, float64(max(left, 0))/GiB, float64(p.FreeAtStartBytes)/GiB, float64(p.TotalBytes)/GiB)
	}
	return p, nil
}

// LogLines are the start-up lines vLLM prints once memory is profiled, in
// its wording, so that a log reader can take the figures from either.
func (p Plan) LogLines(cfg Config) []string {
	lines := []string{
		fmt.Sprintf("Model loading took %.4f GiB", float64(p.WeightBytes)/GiB),
		fmt.Sprintf("Memory profiling (%s): total %.2f GiB, free at start %.2f GiB, requested (util %.2f) %.2f GiB, "+
			"weights %.2f GiB, peak activation %.2f GiB (forward %.2f, sampler %.2f), non-torch %.2f GiB",
			VLLMVersion, float64(p.TotalBytes)/GiB, float64(p.FreeAtStartBytes)/GiB, cfg.GPUMemoryUtilization,
			float64(p.BudgetBytes)/GiB, float64(p.WeightBytes)/GiB, float64(p.ActivationBytes)/GiB,
			float64(p.ForwardPeakBytes)/GiB, float64(p.SamplerPeakBytes)/GiB, float64(p.OverheadBytes)/GiB),
		fmt.Sprintf("Available KV cache memory: %.2f GiB", float64(p.KVBytes)/GiB),
		// vLLM formats both numbers with thousands separators.
		fmt.Sprintf("GPU KV cache size: %s tokens", thousands(p.KVTokens)),
		fmt.Sprintf("Maximum concurrency for %s tokens per request: %.2fx", thousands(cfg.MaxModelLen), p.MaxConcurrency),
	}
	if p.CUDAGraphBytes > 0 {
		lines = append(lines, fmt.Sprintf("Graph capturing finished, took %.2f GiB", float64(p.CUDAGraphBytes)/GiB))
	}
	return lines
}

// pyFloat formats x as Python's str(float) does for these magnitudes
// (4.0, not 4).
func pyFloat(x float64) string {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// thousands formats n as Python's f"{n:,}" does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
