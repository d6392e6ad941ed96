package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Memory model of vLLM's start-up profiling (gpu_worker.determine_available_memory):
//
//	budget   = gpu_memory_utilization × total GPU memory
//	KV pool  = budget − weights − activation peak − non-torch − CUDA graphs
//
// The activation peak is what PyTorch's allocator high-water mark grows by
// during the profiling run, which does one forward pass over
// max_num_batched_tokens dummy tokens and then one sampler pass over
// max_num_seqs dummy requests. Both terms are modelled from first
// principles below; the constants are estimates, chosen so that on the
// default 4 GB card the profiles of configs/model_profiles fit and the
// largest points of the M4 grid do not, as they would not on the real card.
const (
	// activationSlack multiplies the bytes that are live at the MLP peak of
	// one layer. PyTorch's caching allocator rounds blocks and keeps freed
	// segments of the previous layer, and torch.compile's fused kernels keep
	// extra workspaces; measured high-water marks of small models run about
	// 1.3–1.5× the tensor sizes.
	activationSlack = 1.4
	// samplerBytesPerVocabEntry is, per dummy request, how many bytes per
	// vocabulary entry the sampler holds at its peak. The profiling run
	// exercises top-k/top-p: bf16 logits (2) → fp32 logits (4), sorted values
	// (4) and int64 sort indices (8), softmax of the sorted values (4), their
	// cumsum (4), the scattered-back logits (4), probabilities (4), the
	// exponential noise of Gumbel sampling (4) and raw logprobs (4): 42 bytes.
	// With a 151,936-token vocabulary that is 6.1 MiB per sequence — which is
	// why max_num_seqs, not only the token budget, eats KV cache on a small card.
	samplerBytesPerVocabEntry = 42
	// cudaGraphBytesPerSeqLayer is the CUDA-graph memory pool per captured
	// batch slot and layer (vLLM captures graphs for batch sizes up to
	// max_num_seqs; the pool grows with the largest one). An estimate.
	cudaGraphBytesPerSeqLayer = 8 << 10
	// cudaGraphBaseBytes is the graph pool's fixed part.
	cudaGraphBaseBytes = 16 * MiB
	// processInitSeconds is Python import, engine-core process spawn and
	// tokenizer load before any GPU work: CPU-bound, about the same on every host.
	processInitSeconds = 10.0
	// weightLoadBps is the rate at which safetensors load from page cache or
	// NVMe into GPU memory.
	weightLoadBps = 2e9
)

// ActivationBytesPerToken is the per-token part of the profiling run's peak:
// at the MLP of one layer the gate_up output (2·I), the SiLU·mul output (I),
// q/k/v ((heads + 2·kv_heads)·head_dim), and the hidden state, residual,
// attention output and o_proj output (4·H) are live in bf16, plus RMSNorm's
// fp32 upcast of the hidden state (2×4·H bytes), all times activationSlack.
// For Qwen2.5-0.5B this is ≈ 63 KiB per token.
func (m ModelSpec) ActivationBytesPerToken() int64 {
	bf16 := 2 * (3*m.Intermediate + (m.Heads+2*m.KVHeads)*m.HeadDim + 4*m.Hidden)
	fp32Norm := 8 * m.Hidden
	return int64(math.Round(activationSlack * float64(bf16+fp32Norm)))
}

// SamplerBytesPerSeq is the sampler's per-request peak in the profiling run.
func (m ModelSpec) SamplerBytesPerSeq() int64 {
	return int64(m.Vocab) * samplerBytesPerVocabEntry
}

// ValidateConfig checks the configuration the way vLLM's config classes do,
// with their messages, and fills nothing in: zero values are errors.
func ValidateConfig(cfg Config) error {
	m, err := LookupModel(cfg.ModelSpec)
	if err != nil {
		return err
	}
	if _, err := LookupGPU(cfg.GPU); err != nil {
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

// NewPlan validates cfg and profiles memory as vLLM does at start-up. A
// configuration that does not fit returns a *StartupError with vLLM's text.
func NewPlan(cfg Config) (Plan, error) {
	if err := ValidateConfig(cfg); err != nil {
		return Plan{}, configError(err)
	}
	g, _ := LookupGPU(cfg.GPU)
	m, _ := LookupModel(cfg.ModelSpec)

	p := Plan{
		TotalBytes:  g.MemBytes,
		BudgetBytes: int64(cfg.GPUMemoryUtilization * float64(g.MemBytes)),
		WeightBytes: m.WeightBytes(),
		ActivationBytes: int64(cfg.MaxNumBatchedTokens)*m.ActivationBytesPerToken() +
			int64(cfg.MaxNumSeqs)*m.SamplerBytesPerSeq(),
		OverheadBytes: g.NonTorchBytes + cudaGraphBaseBytes +
			int64(cfg.MaxNumSeqs)*int64(m.Layers)*cudaGraphBytesPerSeqLayer,
		StartupSeconds: processInitSeconds + float64(m.WeightBytes())/weightLoadBps +
			g.WarmupSeconds*float64(m.Layers)/24,
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
	// vLLM needs whole blocks for one max_model_len sequence
	// (cdiv(max_model_len, block_size) pages): bytes for max_model_len
	// tokens are not enough when the pool is a block short, and the
	// scheduler would then refuse the longest requests.
	blocksPerSeq := (cfg.MaxModelLen + cfg.BlockSize - 1) / cfg.BlockSize
	need := int64(blocksPerSeq) * blockBytes
	if p.KVBytes < need {
		// vLLM's estimate of the longest sequence that would fit.
		est := p.KVTokens
		return p, outOfMemory(fmt.Errorf("ValueError: To serve at least one request with the models's max seq len (%d), "+
			"(%.2f GiB KV cache is needed, which is larger than the available KV cache memory (%.2f GiB). "+
			"Based on the available memory, the estimated maximum model length is %d. "+
			"Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
			cfg.MaxModelLen, float64(need)/GiB, float64(p.KVBytes)/GiB, est))
	}
	// vLLM divides whole blocks: num_blocks / cdiv(max_model_len, block_size).
	p.MaxConcurrency = float64(p.NumBlocks) / float64(blocksPerSeq)
	return p, nil
}

// LogLines are the start-up lines vLLM prints once memory is profiled, in
// its wording, so that a log reader can take the figures from either.
func (p Plan) LogLines(cfg Config) []string {
	return []string{
		fmt.Sprintf("Model loading took %.4f GiB", float64(p.WeightBytes)/GiB),
		fmt.Sprintf("Memory profiling: total %.2f GiB, requested (util %.2f) %.2f GiB, weights %.2f GiB, "+
			"activation peak %.2f GiB, non-torch + CUDA graphs %.2f GiB, KV cache %.2f GiB",
			float64(p.TotalBytes)/GiB, cfg.GPUMemoryUtilization, float64(p.BudgetBytes)/GiB,
			float64(p.WeightBytes)/GiB, float64(p.ActivationBytes)/GiB, float64(p.OverheadBytes)/GiB,
			float64(p.KVBytes)/GiB),
		// vLLM formats both numbers with thousands separators.
		fmt.Sprintf("GPU KV cache size: %s tokens", thousands(p.KVTokens)),
		fmt.Sprintf("Maximum concurrency for %s tokens per request: %.2fx", thousands(cfg.MaxModelLen), p.MaxConcurrency),
	}
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
