package engine

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The built-in GPU and model tables are data, not code: each entry carries
// its source in the YAML next to it.
var (
	//go:embed specs/gpus.yaml
	gpusYAML []byte
	//go:embed specs/models.yaml
	modelsYAML []byte
)

// GiB is 2^30 bytes, the unit vLLM logs memory in.
const GiB = 1 << 30

// MiB is 2^20 bytes.
const MiB = 1 << 20

// Terms are the efficiency and overhead terms of a card: what turns
// spec-sheet figures into measured step times and start-up memory. Every
// field is optional in a file; a nil field takes the default (the
// calibrated RTX 3050 laptop terms, specs/gpus.yaml `defaults`).
type Terms struct {
	// BandwidthEfficiency is effective/nominal DRAM bandwidth in decode.
	BandwidthEfficiency *float64 `yaml:"bandwidth_efficiency,omitempty" json:"bandwidth_efficiency,omitempty"`
	// ComputeEfficiency is sustained/nominal tensor throughput in prefill.
	ComputeEfficiency *float64 `yaml:"compute_efficiency,omitempty" json:"compute_efficiency,omitempty"`
	// StepOverheadS is the fixed cost of one engine step (scheduler,
	// input preparation, launch) in seconds.
	StepOverheadS *float64 `yaml:"step_overhead_s,omitempty" json:"step_overhead_s,omitempty"`
	// PerSeqS is the cost per running sequence per step (CPU bookkeeping,
	// sampler, per-sequence kernels) in seconds.
	PerSeqS *float64 `yaml:"per_seq_s,omitempty" json:"per_seq_s,omitempty"`
	// FrontendRequestS is the API server's cost per request (HTTP,
	// tokenise, detokenise, SSE set-up), added to TTFT.
	FrontendRequestS *float64 `yaml:"frontend_request_s,omitempty" json:"frontend_request_s,omitempty"`
	// FrontendTokenS is the API server's cost per streamed output token
	// beyond the engine step (detokenise + SSE write), added to each ITL.
	FrontendTokenS *float64 `yaml:"frontend_token_s,omitempty" json:"frontend_token_s,omitempty"`
	// NonTorchIncreaseGiB is memory allocated outside PyTorch during the
	// profiling run (cuBLAS/attention workspaces): vLLM's
	// non_torch_increase.
	NonTorchIncreaseGiB *float64 `yaml:"non_torch_increase_gib,omitempty" json:"non_torch_increase_gib,omitempty"`
	// CUDAGraphGiB is the CUDA-graph pool's fixed part, allocated at capture
	// after the KV cache, from the memory left outside util × total.
	CUDAGraphGiB *float64 `yaml:"cuda_graph_gib,omitempty" json:"cuda_graph_gib,omitempty"`
	// WarmupS is torch.compile (warm cache) plus CUDA-graph capture time
	// for a 24-layer model; scaled by layer count.
	WarmupS *float64 `yaml:"warmup_s,omitempty" json:"warmup_s,omitempty"`
}

// merge returns t with every nil field taken from d.
func (t Terms) merge(d Terms) Terms {
	pick := func(a, b *float64) *float64 {
		if a != nil {
			return a
		}
		return b
	}
	return Terms{
		BandwidthEfficiency: pick(t.BandwidthEfficiency, d.BandwidthEfficiency),
		ComputeEfficiency:   pick(t.ComputeEfficiency, d.ComputeEfficiency),
		StepOverheadS:       pick(t.StepOverheadS, d.StepOverheadS),
		PerSeqS:             pick(t.PerSeqS, d.PerSeqS),
		FrontendRequestS:    pick(t.FrontendRequestS, d.FrontendRequestS),
		FrontendTokenS:      pick(t.FrontendTokenS, d.FrontendTokenS),
		NonTorchIncreaseGiB: pick(t.NonTorchIncreaseGiB, d.NonTorchIncreaseGiB),
		CUDAGraphGiB:        pick(t.CUDAGraphGiB, d.CUDAGraphGiB),
		WarmupS:             pick(t.WarmupS, d.WarmupS),
	}
}

func (t Terms) validate() error {
	for name, p := range map[string]*float64{
		"bandwidth_efficiency": t.BandwidthEfficiency, "compute_efficiency": t.ComputeEfficiency,
		"step_overhead_s": t.StepOverheadS, "per_seq_s": t.PerSeqS,
		"frontend_request_s": t.FrontendRequestS, "frontend_token_s": t.FrontendTokenS,
		"non_torch_increase_gib": t.NonTorchIncreaseGiB, "cuda_graph_gib": t.CUDAGraphGiB, "warmup_s": t.WarmupS,
	} {
		if p == nil {
			continue
		}
		if v := *p; v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s must be a finite number >= 0, got %v", name, v)
		}
	}
	for name, p := range map[string]*float64{"bandwidth_efficiency": t.BandwidthEfficiency, "compute_efficiency": t.ComputeEfficiency} {
		if p != nil && (*p == 0 || *p > 1) {
			return fmt.Errorf("%s must be in (0, 1], got %v", name, *p)
		}
	}
	return nil
}

func val(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// GPUSpec is a card as a spec sheet and a start-up log describe it. Only
// name, memory_total_gib, bandwidth_gbs and fp16_tflops are required; the
// terms default to the calibrated ones.
type GPUSpec struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// MemoryTotalGiB is total memory as torch.cuda.mem_get_info reports it
	// (a "4 GB" RTX 3050 laptop reports 3.81 GiB), not the marketing size.
	MemoryTotalGiB float64 `yaml:"memory_total_gib" json:"memory_total_gib"`
	// MemoryFreeAtStartGiB is free memory when vLLM takes its first
	// snapshot (after its own CUDA context, with whatever a desktop or
	// other processes hold). 0 means the total.
	MemoryFreeAtStartGiB float64 `yaml:"memory_free_at_start_gib,omitempty" json:"memory_free_at_start_gib,omitempty"`
	BandwidthGBs         float64 `yaml:"bandwidth_gbs" json:"bandwidth_gbs"` // DRAM, spec sheet
	FP16TFLOPS           float64 `yaml:"fp16_tflops" json:"fp16_tflops"`     // dense fp16/bf16 tensor, spec sheet
	// Sampler is vLLM's top-k/top-p path on this card: "flashinfer"
	// (default) or "pytorch" (see samplerBytesPerEntry).
	Sampler string `yaml:"sampler,omitempty" json:"sampler,omitempty"`
	Source  string `yaml:"source,omitempty" json:"source,omitempty"`
	Terms   `yaml:",inline" json:",inline"`
}

// MemBytes is total memory in bytes.
func (g GPUSpec) MemBytes() int64 { return int64(g.MemoryTotalGiB * GiB) }

// FreeBytes is free memory at start in bytes.
func (g GPUSpec) FreeBytes() int64 {
	if g.MemoryFreeAtStartGiB <= 0 {
		return g.MemBytes()
	}
	return int64(g.MemoryFreeAtStartGiB * GiB)
}

func (g GPUSpec) validate() error {
	switch {
	case g.Name == "":
		return fmt.Errorf("GPU spec: name is required")
	case !(g.MemoryTotalGiB > 0):
		return fmt.Errorf("GPU spec %s: memory_total_gib must be > 0", g.Name)
	case g.MemoryFreeAtStartGiB < 0 || g.MemoryFreeAtStartGiB > g.MemoryTotalGiB:
		return fmt.Errorf("GPU spec %s: memory_free_at_start_gib must be in [0, memory_total_gib]", g.Name)
	case !(g.BandwidthGBs > 0):
		return fmt.Errorf("GPU spec %s: bandwidth_gbs must be > 0", g.Name)
	case !(g.FP16TFLOPS > 0):
		return fmt.Errorf("GPU spec %s: fp16_tflops must be > 0", g.Name)
	case g.Sampler != "" && g.Sampler != SamplerFlashInfer && g.Sampler != SamplerPyTorch:
		return fmt.Errorf("GPU spec %s: sampler must be %s or %s, got %q", g.Name, SamplerFlashInfer, SamplerPyTorch, g.Sampler)
	}
	if err := g.Terms.validate(); err != nil {
		return fmt.Errorf("GPU spec %s: %w", g.Name, err)
	}
	return nil
}

type gpuTable struct {
	Defaults Terms     `yaml:"defaults"`
	GPUs     []GPUSpec `yaml:"gpus"`
}

type modelTable struct {
	Models []HFConfig `yaml:"models"`
}

// builtin parses the embedded tables; they are tested, so an error is a
// build defect and panics.
func builtinGPUs() gpuTable {
	var t gpuTable
	dec := yaml.NewDecoder(bytes.NewReader(gpusYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		panic(fmt.Sprintf("engine: specs/gpus.yaml: %v", err))
	}
	for i := range t.GPUs {
		t.GPUs[i].Terms = t.GPUs[i].Terms.merge(t.Defaults)
	}
	return t
}

func builtinModels() []ModelSpec {
	var t modelTable
	dec := yaml.NewDecoder(bytes.NewReader(modelsYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		panic(fmt.Sprintf("engine: specs/models.yaml: %v", err))
	}
	out := make([]ModelSpec, 0, len(t.Models))
	for _, c := range t.Models {
		m, err := c.ModelSpec()
		if err != nil {
			panic(fmt.Sprintf("engine: specs/models.yaml %s: %v", c.Name, err))
		}
		out = append(out, m)
	}
	return out
}

// DefaultTerms are the terms a GPU spec file inherits for what it leaves out.
func DefaultTerms() Terms { return builtinGPUs().Defaults }

// LoadGPUSpec reads one GPU from a YAML file (--gpu-spec). Unknown keys are
// an error; terms it leaves out take the calibrated defaults.
func LoadGPUSpec(path string) (GPUSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return GPUSpec{}, fmt.Errorf("read GPU spec: %w", err)
	}
	var g GPUSpec
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil {
		return GPUSpec{}, fmt.Errorf("parse GPU spec %s: %w", path, err)
	}
	g.Terms = g.Terms.merge(DefaultTerms())
	if err := g.validate(); err != nil {
		return GPUSpec{}, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// HFConfig is the part of a Hugging Face config.json the engine needs. The
// YAML tags let the built-in table use the same keys.
type HFConfig struct {
	Name                  string   `yaml:"name" json:"-"`
	HFName                string   `yaml:"hf_name" json:"_name_or_path"`
	ModelType             string   `yaml:"model_type" json:"model_type"`
	HiddenSize            int      `yaml:"hidden_size" json:"hidden_size"`
	NumHiddenLayers       int      `yaml:"num_hidden_layers" json:"num_hidden_layers"`
	NumAttentionHeads     int      `yaml:"num_attention_heads" json:"num_attention_heads"`
	NumKeyValueHeads      int      `yaml:"num_key_value_heads" json:"num_key_value_heads"`
	HeadDim               int      `yaml:"head_dim" json:"head_dim"`
	IntermediateSize      int      `yaml:"intermediate_size" json:"intermediate_size"`
	VocabSize             int      `yaml:"vocab_size" json:"vocab_size"`
	MaxPositionEmbeddings int      `yaml:"max_position_embeddings" json:"max_position_embeddings"`
	TorchDtype            string   `yaml:"torch_dtype" json:"torch_dtype"`
	Dtype                 string   `yaml:"-" json:"dtype"` // newer transformers write "dtype"
	TieWordEmbeddings     *bool    `yaml:"tie_word_embeddings" json:"tie_word_embeddings"`
	AttentionBias         *bool    `yaml:"attention_bias" json:"attention_bias"`
	Quantization          *hfQuant `yaml:"-" json:"quantization_config"`
}

type hfQuant struct {
	QuantMethod string `json:"quant_method"`
	Bits        int    `json:"bits"`
	GroupSize   int    `json:"group_size"`
}

// ModelSpec derives the architecture from the config, the way vLLM's
// model classes read it: head_dim defaults to hidden/heads; Qwen2 has q/k/v
// biases, Qwen3 has per-head q/k RMSNorm; tie_word_embeddings decides
// whether lm_head is a second V×H matrix.
func (c HFConfig) ModelSpec() (ModelSpec, error) {
	switch {
	case c.HiddenSize <= 0, c.NumHiddenLayers <= 0, c.NumAttentionHeads <= 0, c.IntermediateSize <= 0, c.VocabSize <= 0:
		return ModelSpec{}, fmt.Errorf("config needs hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and vocab_size > 0")
	}
	m := ModelSpec{
		Name: c.Name, HFName: c.HFName, ModelType: c.ModelType,
		Layers: c.NumHiddenLayers, Hidden: c.HiddenSize, Heads: c.NumAttentionHeads,
		KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim, Intermediate: c.IntermediateSize,
		Vocab: c.VocabSize, MaxPositionEmbed: c.MaxPositionEmbeddings, DtypeBytes: 2,
		Tied: c.TieWordEmbeddings == nil || *c.TieWordEmbeddings,
	}
	if m.KVHeads <= 0 {
		m.KVHeads = m.Heads // MHA when the key is absent
	}
	if m.HeadDim <= 0 {
		m.HeadDim = m.Hidden / m.Heads
	}
	if m.MaxPositionEmbed <= 0 {
		m.MaxPositionEmbed = 2048
	}
	if c.TieWordEmbeddings == nil && c.ModelType == "llama" {
		m.Tied = false // transformers' LlamaConfig default
	}
	dt := c.TorchDtype
	if dt == "" {
		dt = c.Dtype
	}
	switch strings.ToLower(dt) {
	case "float32":
		m.DtypeBytes = 4
	case "", "bfloat16", "float16":
	default:
		return ModelSpec{}, fmt.Errorf("unsupported torch_dtype %q", dt)
	}
	bias := c.ModelType == "qwen2" // Qwen2Attention always has q/k/v bias
	if c.AttentionBias != nil {
		bias = *c.AttentionBias
	}
	qkNorm := c.ModelType == "qwen3"
	// Per layer: q, k, v, o projections, gate/up/down MLP, two RMSNorms.
	attn := int64(m.Hidden)*int64(m.Heads*m.HeadDim) + 2*int64(m.Hidden)*int64(m.KVHeads*m.HeadDim) +
		int64(m.Heads*m.HeadDim)*int64(m.Hidden)
	mlp := 3 * int64(m.Hidden) * int64(m.Intermediate)
	m.LinearParams = int64(m.Layers) * (attn + mlp)
	other := int64(m.Layers) * 2 * int64(m.Hidden)
	if bias {
		other += int64(m.Layers) * int64((m.Heads+2*m.KVHeads)*m.HeadDim)
	}
	if qkNorm {
		other += int64(m.Layers) * 2 * int64(m.HeadDim)
	}
	embed := int64(m.Vocab) * int64(m.Hidden)
	m.EmbedParams = embed
	if !m.Tied {
		m.EmbedParams += embed
	}
	other += int64(m.Hidden) // final norm
	m.Params = m.LinearParams + m.EmbedParams + other
	if q := c.Quantization; q != nil && q.QuantMethod != "" {
		if err := m.SetQuantization(q.QuantMethod); err != nil {
			return ModelSpec{}, err
		}
	}
	return m, nil
}

// LoadHFConfig reads a model as `vllm serve` takes it: a directory holding
// config.json, or the config.json file itself.
func LoadHFConfig(path string) (ModelSpec, error) {
	p := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		p = filepath.Join(path, "config.json")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return ModelSpec{}, fmt.Errorf("read model config: %w", err)
	}
	var c HFConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return ModelSpec{}, fmt.Errorf("parse model config %s: %w", p, err)
	}
	m, err := c.ModelSpec()
	if err != nil {
		return ModelSpec{}, fmt.Errorf("model config %s: %w", p, err)
	}
	m.Name = filepath.Base(filepath.Dir(p))
	if m.HFName == "" {
		m.HFName = path
	}
	return m, nil
}

// GPUNames lists the known GPUs, smallest memory first.
func GPUNames() []string {
	t := builtinGPUs()
	out := make([]string, len(t.GPUs))
	for i, g := range t.GPUs {
		out[i] = g.Name
	}
	return out
}

// ModelNames lists the known models.
func ModelNames() []string {
	ms := builtinModels()
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// LookupGPU returns the spec of a known GPU; "" means the default.
func LookupGPU(name string) (GPUSpec, error) {
	if name == "" {
		name = DefaultGPU
	}
	t := builtinGPUs()
	i := slices.IndexFunc(t.GPUs, func(g GPUSpec) bool { return g.Name == name })
	if i < 0 {
		return GPUSpec{}, fmt.Errorf("unknown GPU %q (known: %v; or give --gpu-spec FILE)", name, GPUNames())
	}
	return t.GPUs[i], nil
}

// LookupModel returns the spec of a known model; "" means the default.
func LookupModel(name string) (ModelSpec, error) {
	if name == "" {
		name = DefaultModelSpec
	}
	ms := builtinModels()
	i := slices.IndexFunc(ms, func(m ModelSpec) bool { return m.Name == name })
	if i < 0 {
		return ModelSpec{}, fmt.Errorf("unknown model spec %q (known: %v; or give a directory holding config.json)", name, ModelNames())
	}
	return ms[i], nil
}

// DefaultGPU and DefaultModelSpec are what `llmlab sim` models unless told.
const (
	DefaultGPU       = "rtx3050-4gb-laptop"
	DefaultModelSpec = "qwen2.5-0.5b"
)
