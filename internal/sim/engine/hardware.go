package engine

import (
	"fmt"
	"slices"
)

// GiB is 2^30 bytes, the unit vLLM logs memory in.
const GiB = 1 << 30

// MiB is 2^20 bytes.
const MiB = 1 << 20

// GPUSpec is what the memory plan and the roofline need to know about a card.
// Bandwidth and peak FLOP/s are public spec-sheet figures; the efficiency,
// overhead and start-up figures are estimates, documented per field.
type GPUSpec struct {
	Name string
	// MemBytes is the card's memory as CUDA reports it (torch.cuda.mem_get_info total).
	MemBytes int64
	// BandwidthBps is the DRAM bandwidth, bytes/s (spec sheet). Decode is
	// bandwidth-bound, so the spec figure is used as is: the design's 5.2 ms
	// decode floor for 0.99 GB of weights at 192 GB/s assumes exactly that.
	BandwidthBps float64
	// PeakFLOPS is dense fp16/bf16 tensor-core throughput, FLOP/s (no sparsity).
	PeakFLOPS float64
	// ComputeEfficiency is the fraction of PeakFLOPS that the GEMMs of a
	// 0.5B-class model reach. Hidden sizes of 896–1024 make thin GEMMs, and
	// laptop parts throttle to their power limit, so consumer cards get less.
	ComputeEfficiency float64
	// StepOverheadSeconds is the fixed cost of one engine step that is not GPU
	// math: the Python scheduler, input preparation, the CUDA-graph launch and
	// detokenisation hand-off. It is larger on a laptop CPU than on a server.
	StepOverheadSeconds float64
	// NonTorchBytes is memory outside PyTorch's allocator that vLLM's profiler
	// subtracts before sizing the KV pool: the CUDA context (larger on a
	// laptop part whose driver also reserves memory for the display),
	// cuBLAS/cuBLASLt workspaces and NCCL buffers.
	NonTorchBytes int64
	// WarmupSeconds is torch.compile (warm cache) plus CUDA-graph capture of
	// vLLM's 67 batch sizes for a 24-layer model; scaled by layer count.
	WarmupSeconds float64
}

// ModelSpec is the architecture of a model as its config.json gives it.
type ModelSpec struct {
	Name             string
	HFName           string // the Hugging Face repository it describes
	Layers           int
	Hidden           int
	Heads            int
	KVHeads          int
	HeadDim          int
	Intermediate     int
	Vocab            int
	Params           int64 // total parameters (embedding tied with lm_head)
	MaxPositionEmbed int   // max_position_embeddings: the largest max_model_len
	DtypeBytes       int   // bf16 = 2
}

// WeightBytes is the size of the weights in the serving dtype.
func (m ModelSpec) WeightBytes() int64 { return m.Params * int64(m.DtypeBytes) }

// KVBytesPerToken is K and V for every layer and KV head:
// 2 × layers × kv_heads × head_dim × dtype bytes.
func (m ModelSpec) KVBytesPerToken() int64 {
	return int64(2 * m.Layers * m.KVHeads * m.HeadDim * m.DtypeBytes)
}

// gpus are the cards llmlab can model. Bandwidth and FLOP/s: NVIDIA spec
// sheets (dense fp16 tensor with fp16 accumulate for GeForce parts).
var gpus = []GPUSpec{
	{
		// RTX 3050 Laptop 4 GB: GA107, 128-bit GDDR6 at 12 Gbps.
		Name: "rtx3050-4gb-laptop", MemBytes: 4 * GiB, BandwidthBps: 192e9, PeakFLOPS: 24e12,
		ComputeEfficiency: 0.4, StepOverheadSeconds: 1.0e-3, NonTorchBytes: 576 * MiB,
		WarmupSeconds: 24,
	},
	{
		// RTX 3050 8 GB desktop: GA106/GA107, 128-bit at 14 Gbps.
		Name: "rtx3050-8gb", MemBytes: 8 * GiB, BandwidthBps: 224e9, PeakFLOPS: 36e12,
		ComputeEfficiency: 0.45, StepOverheadSeconds: 0.8e-3, NonTorchBytes: 512 * MiB,
		WarmupSeconds: 18,
	},
	{
		// RTX 4060 8 GB: AD107, 128-bit at 17 Gbps.
		Name: "rtx4060-8gb", MemBytes: 8 * GiB, BandwidthBps: 272e9, PeakFLOPS: 60e12,
		ComputeEfficiency: 0.45, StepOverheadSeconds: 0.7e-3, NonTorchBytes: 512 * MiB,
		WarmupSeconds: 15,
	},
	{
		// A100 40 GB (SXM/PCIe): HBM2, 1555 GB/s, 312 TFLOP/s bf16 dense.
		Name: "a100-40gb", MemBytes: 40 * GiB, BandwidthBps: 1555e9, PeakFLOPS: 312e12,
		ComputeEfficiency: 0.5, StepOverheadSeconds: 0.5e-3, NonTorchBytes: 640 * MiB,
		WarmupSeconds: 10,
	},
	{
		// H100 80 GB SXM: HBM3, 3.35 TB/s, 989 TFLOP/s bf16 dense.
		Name: "h100-80gb", MemBytes: 80 * GiB, BandwidthBps: 3350e9, PeakFLOPS: 989e12,
		ComputeEfficiency: 0.5, StepOverheadSeconds: 0.4e-3, NonTorchBytes: 768 * MiB,
		WarmupSeconds: 8,
	},
}

// models are the architectures llmlab can model (from their config.json).
var models = []ModelSpec{
	{
		Name: "qwen2.5-0.5b", HFName: "Qwen/Qwen2.5-0.5B-Instruct",
		Layers: 24, Hidden: 896, Heads: 14, KVHeads: 2, HeadDim: 64, Intermediate: 4864,
		Vocab: 151936, Params: 494_032_768, MaxPositionEmbed: 32768, DtypeBytes: 2,
	},
	{
		// 28 × (q 1024→2048, k/v 1024→1024, o 2048→1024, MLP 3×1024×3072)
		// + 151936×1024 tied embedding ≈ 0.596 B parameters.
		Name: "qwen3-0.6b", HFName: "Qwen/Qwen3-0.6B",
		Layers: 28, Hidden: 1024, Heads: 16, KVHeads: 8, HeadDim: 128, Intermediate: 3072,
		Vocab: 151936, Params: 596_049_920, MaxPositionEmbed: 40960, DtypeBytes: 2,
	},
}

// DefaultGPU and DefaultModelSpec are what `llmlab sim` models unless told.
const (
	DefaultGPU       = "rtx3050-4gb-laptop"
	DefaultModelSpec = "qwen2.5-0.5b"
)

// GPUNames lists the known GPUs.
func GPUNames() []string {
	out := make([]string, len(gpus))
	for i, g := range gpus {
		out[i] = g.Name
	}
	return out
}

// ModelNames lists the known models.
func ModelNames() []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.Name
	}
	return out
}

// LookupGPU returns the spec of a known GPU; "" means the default.
func LookupGPU(name string) (GPUSpec, error) {
	if name == "" {
		name = DefaultGPU
	}
	i := slices.IndexFunc(gpus, func(g GPUSpec) bool { return g.Name == name })
	if i < 0 {
		return GPUSpec{}, fmt.Errorf("unknown GPU %q (known: %v)", name, GPUNames())
	}
	return gpus[i], nil
}

// LookupModel returns the spec of a known model; "" means the default.
func LookupModel(name string) (ModelSpec, error) {
	if name == "" {
		name = DefaultModelSpec
	}
	i := slices.IndexFunc(models, func(m ModelSpec) bool { return m.Name == name })
	if i < 0 {
		return ModelSpec{}, fmt.Errorf("unknown model spec %q (known: %v)", name, ModelNames())
	}
	return models[i], nil
}
