// Package engine models vLLM serving a small model on one GPU: the start-up
// memory plan (weights, activation peak, KV pool), the V1 scheduler with
// 16-token KV blocks, chunked prefill and preemption, and a roofline model
// of each step's GPU time. It has no clock: callers (the live server, the
// offline runner) advance time by each Step's Duration.
//
// CONTRACT: the types and signatures in this file are shared by the live
// server (internal/sim/server) and the offline runner. Fields may be added;
// do not rename or remove them.
package engine

import "time"

// Config is the engine configuration, named as vLLM's flags.
type Config struct {
	GPU                  string  // key of a known GPU, e.g. "rtx3050-4gb-laptop"
	ModelSpec            string  // key of a known model, e.g. "qwen2.5-0.5b"
	MaxModelLen          int     // --max-model-len
	GPUMemoryUtilization float64 // --gpu-memory-utilization (0.9)
	MaxNumSeqs           int     // --max-num-seqs (256)
	MaxNumBatchedTokens  int     // --max-num-batched-tokens (2048)
	EnableChunkedPrefill bool    // --enable-chunked-prefill
	BlockSize            int     // --block-size (16)
	// EnablePrefixCaching is --enable-prefix-caching (on by default in
	// vLLM V1; the CLI sets it): full KV blocks are cached by a chained
	// hash of their token ids and reused by later requests (kvcache.go).
	EnablePrefixCaching bool
	// Calibration, when non-nil, overrides the roofline step-time coefficients.
	Calibration *Calibration
	// GPUSpec, when non-nil, is the card itself (--gpu-spec FILE); GPU is
	// then only its label.
	GPUSpec *GPUSpec
	// Model, when non-nil, is the architecture itself (a config.json, or a
	// built-in spec with --dtype/--quantization/--kv-cache-dtype applied);
	// ModelSpec is then only its label.
	Model *ModelSpec
	// EnforceEager is --enforce-eager: no CUDA graphs are captured, so no
	// graph pool is allocated at start-up.
	EnforceEager bool
}

// Plan is the outcome of start-up memory profiling, as vLLM logs it.
type Plan struct {
	TotalBytes      int64 `json:"total_bytes"`      // GPU memory
	BudgetBytes     int64 `json:"budget_bytes"`     // gpu_memory_utilization × TotalBytes
	WeightBytes     int64 `json:"weight_bytes"`     // model weights
	ActivationBytes int64 `json:"activation_bytes"` // peak activation of the profiling run
	OverheadBytes   int64 `json:"overhead_bytes"`   // non-torch increase during profiling (cuBLAS/attention workspaces)
	KVBytes         int64 `json:"kv_bytes"`         // what is left for the KV cache
	NumBlocks       int   `json:"num_blocks"`       // KV blocks of BlockSize tokens
	KVTokens        int   `json:"kv_tokens"`        // NumBlocks × BlockSize ("GPU KV cache size: N tokens")
	// MaxConcurrency is NumBlocks / ⌈MaxModelLen / BlockSize⌉, which is
	// KVTokens / MaxModelLen when MaxModelLen is a whole number of blocks
	// ("Maximum concurrency for L tokens per request: Kx").
	MaxConcurrency float64 `json:"max_concurrency"`
	// StartupSeconds is the modelled load time of this model on this GPU
	// (weights, profiling, CUDA graph capture), used when --startup-seconds
	// is not given.
	StartupSeconds float64 `json:"startup_seconds"`
	// FreeAtStartBytes is free memory at vLLM's first snapshot.
	FreeAtStartBytes int64 `json:"free_at_start_bytes"`
	// ForwardPeakBytes and SamplerPeakBytes are the two candidates for the
	// activation peak; ActivationBytes is the larger (vLLM frees the
	// forward pass's intermediates before sampling).
	ForwardPeakBytes int64 `json:"forward_peak_bytes"`
	SamplerPeakBytes int64 `json:"sampler_peak_bytes"`
	// CUDAGraphBytes is the graph pool captured after the KV cache is
	// allocated, from memory outside the budget (0 with --enforce-eager).
	CUDAGraphBytes int64 `json:"cuda_graph_bytes"`
	// VLLMVersion is the vLLM source the memory algorithm follows.
	VLLMVersion string `json:"vllm_version"`
}

// Request is one sequence handed to the scheduler. The caller decides how
// many tokens it will produce (ignore_eos → max_tokens; otherwise where the
// simulated EOS falls), so the engine needs no output token contents.
type Request struct {
	ID           string
	PromptTokens int // > 0
	OutputTokens int // > 0; PromptTokens+OutputTokens <= MaxModelLen
	// Ref is an opaque caller value echoed in this request's TokenEvents,
	// so a caller can index its own state without a map lookup by ID.
	Ref int
	// Tokens are the prompt's token ids (len == PromptTokens), used only
	// to hash KV blocks for prefix caching. Optional: without them the
	// prompt is treated as one no other request shares (it can still hit
	// its own blocks when recomputed after preemption). The engine keeps
	// the slice until the request ends; the caller must not change it.
	Tokens []int32
}

// TokenEvent says that request ID produced its output token number Index
// (0-based) in a step; Finished is set on its last token.
type TokenEvent struct {
	ID       string
	Index    int
	Finished bool
	Ref      int // the Request's Ref
}

// Step is one scheduler iteration: what ran and how long it took on the GPU.
type Step struct {
	Duration      time.Duration // modelled GPU time; 0 when nothing was scheduled
	PrefillTokens int           // prompt (or recomputed) tokens processed
	DecodeSeqs    int           // sequences that decoded one token
	ContextTokens int           // Σ context length read from KV this step
	Tokens        []TokenEvent  // tokens produced, in scheduling order
	Preempted     []string      // IDs preempted this step (put back at the front of waiting)
	// Prefix-cache lookups of requests admitted this step (not resumed
	// after preemption), in tokens: vllm:prefix_cache_queries and _hits.
	PrefixCacheQueries int
	PrefixCacheHits    int
	// Tokens and Preempted are backed by buffers that the next Step call
	// reuses: copy what must outlive it.
}

// Stats is the scheduler's state after the last step, for /metrics.
type Stats struct {
	Running     int
	Waiting     int
	UsedBlocks  int
	TotalBlocks int
	Preemptions int // total since start
	// Prefix caching, in tokens, totals since start, as vLLM's
	// PrefixCacheStats: queries and hits of requests admitted for the first
	// time (exported as vllm:prefix_cache_queries/_hits), and apart those
	// of requests resumed after preemption (vLLM does not export these).
	PrefixCacheQueries          int64
	PrefixCacheHits             int64
	PreemptedPrefixCacheQueries int64
	PreemptedPrefixCacheHits    int64
}

// KVUsage is the fraction of KV blocks in use (vllm:kv_cache_usage_perc).
func (s Stats) KVUsage() float64 {
	if s.TotalBlocks == 0 {
		return 0
	}
	return float64(s.UsedBlocks) / float64(s.TotalBlocks)
}

// Calibration holds measured terms, in either of two forms:
//
//   - the roofline terms (Terms: bandwidth/compute efficiency, per-step and
//     per-sequence overhead, frontend cost, non-torch and CUDA-graph
//     memory), which override the GPU spec's and keep the roofline form;
//     this is what `llmlab sim calibrate` writes;
//   - the linear form step = A + B·prefill_tokens + C·decode_seqs +
//     D·Σcontext (seconds), which replaces the roofline altogether; with
//     it, only the frontend terms of the same file apply.
type Calibration struct {
	A float64 `json:"a_s,omitempty" yaml:"a_s,omitempty"`
	B float64 `json:"b_s_per_prefill_token,omitempty" yaml:"b_s_per_prefill_token,omitempty"`
	C float64 `json:"c_s_per_decode_seq,omitempty" yaml:"c_s_per_decode_seq,omitempty"`
	D float64 `json:"d_s_per_context_token,omitempty" yaml:"d_s_per_context_token,omitempty"`
	// Terms override the GPU spec's terms (nil fields keep the spec's).
	Terms `yaml:",inline" json:",inline"`
	// Source says where the terms came from (free text, e.g. the
	// measurements file and the fit error).
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
}

// The functions below are implemented in the package's other files:
//
//   func NewPlan(cfg Config) (Plan, error)
//       Validates cfg and profiles memory. A configuration that does not fit
//       returns an error whose text is vLLM's ("No available memory for the
//       cache blocks…" / "…larger than the available KV cache memory…").
//   func NewScheduler(cfg Config, plan Plan) *Scheduler
//   func (s *Scheduler) Add(r Request) error     // queue a request (FCFS)
//   func (s *Scheduler) Abort(id string) bool    // drop it, free its blocks
//   func (s *Scheduler) Step() Step              // run one iteration
//   func (s *Scheduler) Stats() Stats
//   func (s *Scheduler) HasWork() bool           // anything running or waiting
//   func LoadCalibration(path string) (*Calibration, error)
//   func GPUNames() []string; func ModelNames() []string
//   func LoadGPUSpec(path string) (GPUSpec, error)   // --gpu-spec FILE
//   func LoadHFConfig(path string) (ModelSpec, error) // a model dir's config.json
//   func (c Config) ResolveGPU() (GPUSpec, error); func (c Config) ResolveModel() (ModelSpec, error)
//   func (sm StepModel) FrontendRequestSeconds() float64 // API-server cost per request (TTFT)
//   func (sm StepModel) FrontendTokenSeconds() float64   // API-server cost per streamed token
//
// Scheduler is not safe for concurrent use; the live server serialises calls.
