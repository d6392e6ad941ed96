package engine

import (
	"fmt"
	"math"
	"strings"
)

// ModelSpec is a dense decoder's architecture as its config.json gives it,
// plus how its weights are stored for serving.
type ModelSpec struct {
	Name             string
	HFName           string // the Hugging Face repository (or local path) it describes
	ModelType        string // config.json model_type: qwen2, qwen3, llama…
	Layers           int
	Hidden           int
	Heads            int
	KVHeads          int
	HeadDim          int
	Intermediate     int
	Vocab            int
	Params           int64 // total parameters (a tied lm_head counted once)
	LinearParams     int64 // parameters in the layers' q/k/v/o and MLP matrices
	EmbedParams      int64 // embedding (+ lm_head when untied)
	MaxPositionEmbed int   // max_position_embeddings: the largest max_model_len
	DtypeBytes       int   // serving dtype of weights and activations: bf16/fp16 = 2
	Tied             bool  // tie_word_embeddings
	// Quantization is "", "awq", "gptq" or "fp8" (--quantization).
	Quantization string
	// WeightBytesOverride, when > 0, replaces the computed weight size (what
	// vLLM's "Model loading took X GiB" line says for an unusual checkpoint).
	WeightBytesOverride int64
	// KVDtypeBytes is the KV cache element size (--kv-cache-dtype); 0 means
	// DtypeBytes.
	KVDtypeBytes int
}

// quantGroup is the group size of the AWQ/GPTQ checkpoints vLLM serves
// (quantization_config.group_size = 128 in Qwen's -AWQ/-GPTQ-Int4 repos).
const quantGroup = 128

// SetQuantization applies --quantization. AWQ and GPTQ store the q/k/v/o
// and MLP matrices as 4-bit integers with, per group of 128 input rows, an
// fp16 scale and a 4-bit zero point (awq_marlin/gptq_marlin repack the
// same bytes); embeddings, lm_head and norms stay fp16. fp8 stores those
// matrices in one byte per weight.
func (m *ModelSpec) SetQuantization(q string) error {
	switch strings.ToLower(q) {
	case "", "none":
		m.Quantization = ""
	case "awq", "awq_marlin":
		m.Quantization = "awq"
	case "gptq", "gptq_marlin":
		m.Quantization = "gptq"
	case "fp8":
		m.Quantization = "fp8"
	default:
		return fmt.Errorf("unsupported --quantization %q (modelled: awq, awq_marlin, gptq, gptq_marlin, fp8)", q)
	}
	if m.Quantization != "" && m.DtypeBytes > 2 {
		m.DtypeBytes = 2 // quantised kernels run fp16 activations
	}
	return nil
}

// WeightBytes is the size of the weights as loaded for serving.
func (m ModelSpec) WeightBytes() int64 {
	if m.WeightBytesOverride > 0 {
		return m.WeightBytesOverride
	}
	rest := (m.Params - m.LinearParams) * int64(m.DtypeBytes)
	switch m.Quantization {
	case "awq", "gptq":
		perWeight := 0.5 + (2+0.5)/quantGroup // 4-bit weight + fp16 scale + 4-bit zero per group
		return int64(math.Round(float64(m.LinearParams)*perWeight)) + rest
	case "fp8":
		return m.LinearParams + rest
	}
	return m.Params * int64(m.DtypeBytes)
}

// KVBytesPerToken is K and V for every layer and KV head:
// 2 × layers × kv_heads × head_dim × KV dtype bytes (vLLM's
// AttentionSpec.page_size_bytes / block_size, summed over layers).
func (m ModelSpec) KVBytesPerToken() int64 {
	b := m.KVDtypeBytes
	if b <= 0 {
		b = m.DtypeBytes
	}
	return int64(2 * m.Layers * m.KVHeads * m.HeadDim * b)
}

// ForwardBytesPerToken is the activation memory per batched token at the
// peak of the profiling forward pass: in the MLP of one layer the gate_up
// projection's output (2·I) and SiluAndMul's output (I) are live together
// with the residual stream and the normed hidden state (2·H), in the
// activation dtype. Earlier layers' tensors are freed (inference mode), and
// attention's q/k/v (≤ 3·H here) are gone before the MLP runs.
func (m ModelSpec) ForwardBytesPerToken() int64 {
	return int64((3*m.Intermediate + 2*m.Hidden) * m.DtypeBytes)
}

// Sampler paths of vLLM's profiling sampler pass (_dummy_sampler_run in
// vllm/v1/worker/gpu_model_runner.py asks for top_k = vocab−1 and
// top_p = 0.9, so top-k/top-p filtering runs in full).
const (
	// SamplerFlashInfer is TopKTopPSampler.forward_cuda with FlashInfer,
	// what vLLM 0.11 uses when FlashInfer is installed (the RTX 3050 log of
	// the calibration source says so).
	SamplerFlashInfer = "flashinfer"
	// SamplerPyTorch is apply_top_k_top_p_pytorch: a full sort of the
	// vocabulary (current vLLM on cards with ≤ 16 SMs, or no FlashInfer).
	SamplerPyTorch = "pytorch"
)

// samplerBytesPerEntry is, per dummy request and vocabulary entry, what the
// sampler pass holds at its peak.
//
// FlashInfer (flashinfer/sampling.py top_k_top_p_sampling_from_logits,
// filter order top_k_first): the bf16 logits of compute_logits (2) and
// Sampler.forward's fp32 copy (4) stay live while top_k_mask_logits
// writes fp32 masked logits (4) and softmax fp32 probabilities (4): 14 B.
//
// PyTorch: measured, not derived — torch.sort's workspace sets the peak.
// configs/calibration/measure_sampler_peak.py (the same ops, PyTorch 2.11,
// on an H200) gives 38.0 B per entry for 1 request or ≥ 128 requests and
// 50.2–50.8 B for 2–96 requests, for vocabularies of 151,936 and 128,256.
func samplerBytesPerEntry(path string, reqs int) int64 {
	if path == SamplerPyTorch {
		if reqs >= 2 && reqs < 128 {
			return 51
		}
		return 38
	}
	return 14
}

// SamplerBytesPerSeq is the sampler's per-request peak in the profiling
// run on vLLM's default (FlashInfer) path.
func (m ModelSpec) SamplerBytesPerSeq() int64 {
	return int64(m.Vocab) * samplerBytesPerEntry(SamplerFlashInfer, 1)
}

// samplerPeak is the sampler pass's peak for reqs requests on a path.
func (m ModelSpec) samplerPeak(path string, reqs int) int64 {
	return int64(reqs) * int64(m.Vocab) * samplerBytesPerEntry(path, reqs)
}

// ActivationBytesPerToken is ForwardBytesPerToken (kept for callers of the
// first engine API).
func (m ModelSpec) ActivationBytesPerToken() int64 { return m.ForwardBytesPerToken() }
