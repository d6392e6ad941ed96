package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// defaultConfig is the default GPU and model at max_model_len 512, util 0.9.
func defaultConfig(seqs, tokens int) Config {
	return Config{
		GPU: DefaultGPU, ModelSpec: DefaultModelSpec, MaxModelLen: 512,
		GPUMemoryUtilization: 0.9, MaxNumSeqs: seqs, MaxNumBatchedTokens: tokens,
		EnableChunkedPrefill: true, BlockSize: 16,
	}
}

func TestModelSpecs(t *testing.T) {
	q25, err := LookupModel("qwen2.5-0.5b")
	if err != nil {
		t.Fatal(err)
	}
	if got := q25.KVBytesPerToken(); got != 12288 {
		t.Errorf("qwen2.5-0.5b KV bytes/token = %d, want 12288", got)
	}
	// Parameter counts derived from config.json match the published ones.
	for name, want := range map[string]int64{"qwen2.5-0.5b": 494_032_768, "qwen2.5-1.5b": 1_543_714_304, "qwen2.5-3b": 3_085_938_688} {
		m, err := LookupModel(name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Params != want {
			t.Errorf("%s: %d parameters, want %d", name, m.Params, want)
		}
	}
	q3, err := LookupModel("qwen3-0.6b")
	if err != nil {
		t.Fatal(err)
	}
	// 2 (K,V) × 28 layers × 8 KV heads × 128 head dim × 2 bytes.
	if got := q3.KVBytesPerToken(); got != 114688 {
		t.Errorf("qwen3-0.6b KV bytes/token = %d, want 114688", got)
	}
	if _, err := LookupModel("llama-70b"); err == nil {
		t.Error("unknown model accepted")
	}
	if _, err := LookupGPU("tpu"); err == nil {
		t.Error("unknown GPU accepted")
	}
	for _, g := range GPUNames() {
		if _, err := LookupGPU(g); err != nil {
			t.Error(err)
		}
	}
}

// TestWeightBytesMatchVLLMLogs: the weight sizes the RTX 3050 start-up logs
// report ("Model loading took X GiB", docs/calibration.md) against the
// sizes computed from config.json and the quantisation format.
func TestWeightBytesMatchVLLMLogs(t *testing.T) {
	for _, c := range []struct {
		model, quant string
		logged, tol  float64 // GiB, relative
	}{
		{"qwen2.5-1.5b", "", 2.8871, 0.01},
		{"qwen2.5-1.5b", "awq", 1.1018, 0.04},
		{"qwen2.5-3b", "awq", 1.9542, 0.03},
	} {
		m, _ := LookupModel(c.model)
		if err := m.SetQuantization(c.quant); err != nil {
			t.Fatal(err)
		}
		got := float64(m.WeightBytes()) / GiB
		if math.Abs(got-c.logged)/c.logged > c.tol {
			t.Errorf("%s %s: %.4f GiB, vLLM logged %.4f", c.model, c.quant, got, c.logged)
		}
	}
	m, _ := LookupModel("qwen2.5-0.5b")
	if err := m.SetQuantization("int3"); err == nil {
		t.Error("unknown quantization accepted")
	}
}

// TestGridAllFit: on the default card every point of the M4 grid at
// max_model_len 512 starts, as vLLM's algorithm says it would (the KV pool
// is about 2 GiB, and one 512-token sequence needs 6 MiB); the pool never
// grows when either knob grows.
func TestGridAllFit(t *testing.T) {
	prevBySeqs := map[int]int{}
	for _, seqs := range []int{64, 128, 192, 256} {
		prevKV := math.MaxInt
		for _, tokens := range []int{4096, 8192, 12288, 16384} {
			cfg := defaultConfig(seqs, tokens)
			p, err := NewPlan(cfg)
			name := fmt.Sprintf("seqs=%d tokens=%d", seqs, tokens)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if p.KVTokens > prevKV {
				t.Errorf("%s: KV tokens %d grew with the token budget (was %d)", name, p.KVTokens, prevKV)
			}
			prevKV = p.KVTokens
			if prev, ok := prevBySeqs[tokens]; ok && p.KVTokens > prev {
				t.Errorf("%s: KV tokens %d grew with max_num_seqs (was %d)", name, p.KVTokens, prev)
			}
			prevBySeqs[tokens] = p.KVTokens
		}
	}
}

// TestActivationIsMaxOfForwardAndSampler pins vLLM's profile_run: the
// peak is the larger of the forward pass (per batched token) and the
// sampler pass (per request), not their sum.
func TestActivationIsMaxOfForwardAndSampler(t *testing.T) {
	m, _ := LookupModel(DefaultModelSpec)
	for _, c := range []struct {
		seqs, tokens int
		sampler      bool // which pass should set the peak
	}{
		{256, 4096, true},   // 256 × 151,936 × 14 B = 0.51 GiB vs 0.13 GiB forward
		{16, 16384, false},  // 16 requests: 0.03 GiB vs 0.5 GiB forward
		{128, 16384, false}, // 0.25 + 0.03 GiB vs 0.5 GiB
	} {
		cfg := defaultConfig(c.seqs, c.tokens)
		p, err := NewPlan(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fwd := int64(c.tokens) * m.ForwardBytesPerToken()
		smp := int64(c.seqs)*m.SamplerBytesPerSeq() + int64(c.tokens)*int64(m.Hidden*2)
		if p.ForwardPeakBytes != fwd || p.SamplerPeakBytes != smp {
			t.Errorf("%d/%d: forward %d sampler %d, want %d %d", c.seqs, c.tokens, p.ForwardPeakBytes, p.SamplerPeakBytes, fwd, smp)
		}
		if p.ActivationBytes != max(fwd, smp) || (smp > fwd) != c.sampler {
			t.Errorf("%d/%d: activation %d, want max(%d, %d), sampler-bound %v", c.seqs, c.tokens, p.ActivationBytes, fwd, smp, c.sampler)
		}
		if sum := p.WeightBytes + p.ActivationBytes + p.OverheadBytes + p.KVBytes; sum != p.BudgetBytes {
			t.Errorf("%d/%d: parts sum to %d, budget %d", c.seqs, c.tokens, sum, p.BudgetBytes)
		}
	}
}

// TestSamplerPaths: the PyTorch top-k/top-p path (a full sort, measured
// at 38 B per request and vocabulary entry for ≥ 128 requests) costs more
// than FlashInfer's (14 B), so the same configuration keeps less KV cache.
func TestSamplerPaths(t *testing.T) {
	m, _ := LookupModel(DefaultModelSpec)
	cfg := defaultConfig(256, 4096)
	fi, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := LookupGPU(DefaultGPU)
	g.Sampler = SamplerPyTorch
	cfg.GPUSpec = &g
	pt, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hidden := int64(4096) * int64(m.Hidden*2)
	if fi.SamplerPeakBytes != 256*151936*14+hidden || pt.SamplerPeakBytes != 256*151936*38+hidden {
		t.Errorf("sampler peaks %d (flashinfer), %d (pytorch)", fi.SamplerPeakBytes, pt.SamplerPeakBytes)
	}
	if pt.KVTokens >= fi.KVTokens {
		t.Errorf("pytorch path keeps %d KV tokens, flashinfer %d", pt.KVTokens, fi.KVTokens)
	}
	g.Sampler = "cub"
	if _, err := NewPlan(cfg); err == nil {
		t.Error("unknown sampler path accepted")
	}
}

// TestFreeMemoryRefusal: vLLM refuses to start when free memory at start is
// below util × total, with its message. The figures are the RTX 3050 under
// WSL2 of the calibration source, whose log reads "Free memory on device
// (3.21/4.0 GiB) on startup is less than desired GPU memory utilization
// (0.9, 3.6 GiB)."
func TestFreeMemoryRefusal(t *testing.T) {
	cfg := defaultConfig(8, 2048)
	cfg.GPU = "rtx3050-4gb-laptop-wsl"
	_, err := NewPlan(cfg)
	want := "ValueError: Free memory on device (3.21/4.0 GiB) on startup is less than desired GPU memory utilization (0.9, 3.6 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}
	cfg.GPUMemoryUtilization = 0.78 // what the source then ran
	if _, err := NewPlan(cfg); err != nil {
		t.Fatalf("util 0.78: %v", err)
	}
}

// TestCUDAGraphsNeedHeadroom: graphs are captured outside the budget; when
// the memory left outside it is too small the start fails, and
// --enforce-eager removes the pool.
func TestCUDAGraphsNeedHeadroom(t *testing.T) {
	g, _ := LookupGPU(DefaultGPU)
	g.MemoryFreeAtStartGiB = 0.9*g.MemoryTotalGiB + 0.01 // 10 MiB of headroom
	cfg := defaultConfig(64, 4096)
	cfg.GPUSpec = &g
	p, err := NewPlan(cfg)
	if err == nil || !strings.Contains(err.Error(), "CUDA graph capture") {
		t.Fatalf("plan %+v, error %v", p, err)
	}
	cfg.EnforceEager = true
	p, err = NewPlan(cfg)
	if err != nil || p.CUDAGraphBytes != 0 {
		t.Fatalf("enforce eager: %+v, %v", p, err)
	}
}

// TestConfigJSONModel: a model directory holding a Hugging Face
// config.json plans exactly like the built-in spec it describes.
func TestConfigJSONModel(t *testing.T) {
	dir := t.TempDir()
	cfgJSON := `{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,
"num_attention_heads":14,"num_hidden_layers":24,"num_key_value_heads":2,"vocab_size":151936,
"max_position_embeddings":32768,"torch_dtype":"bfloat16","tie_word_embeddings":true,"rope_theta":1000000.0}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadHFConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	builtin, _ := LookupModel(DefaultModelSpec)
	if m.Params != builtin.Params || m.KVBytesPerToken() != builtin.KVBytesPerToken() || m.WeightBytes() != builtin.WeightBytes() {
		t.Fatalf("config.json model %+v differs from the built-in %+v", m, builtin)
	}
	cfg := defaultConfig(128, 8192)
	want, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model, cfg.ModelSpec = &m, m.Name
	got, err := NewPlan(cfg)
	if err != nil || got.KVTokens != want.KVTokens {
		t.Fatalf("plan from config.json: %d KV tokens (%v), built-in %d", got.KVTokens, err, want.KVTokens)
	}
	// The file itself works too, and a broken one says what is missing.
	if _, err := LoadHFConfig(filepath.Join(dir, "config.json")); err != nil {
		t.Error(err)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"hidden_size": 896}`), 0o644)
	if _, err := LoadHFConfig(bad); err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Errorf("incomplete config: %v", err)
	}
}

// TestCustomGPUSpec: a YAML spec with only spec-sheet figures takes the
// calibrated terms, and more memory gives more KV cache.
func TestCustomGPUSpec(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gpu.yaml")
	if err := os.WriteFile(path, []byte("name: my-card\nmemory_total_gib: 7.5\nbandwidth_gbs: 256\nfp16_tflops: 40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := LoadGPUSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if *g.BandwidthEfficiency != *DefaultTerms().BandwidthEfficiency || g.FreeBytes() != g.MemBytes() {
		t.Errorf("terms not defaulted: %+v", g)
	}
	cfg := defaultConfig(128, 8192)
	small, _ := NewPlan(cfg)
	cfg.GPUSpec, cfg.GPU = &g, g.Name
	big, err := NewPlan(cfg)
	if err != nil || big.KVTokens <= small.KVTokens {
		t.Fatalf("custom 7.5 GiB card: %d KV tokens (%v), default %d", big.KVTokens, err, small.KVTokens)
	}
	for name, body := range map[string]string{
		"typo.yaml":    "name: x\nmemory_total_gib: 8\nbandwidth_gbs: 1\nfp16_tflops: 1\nbandwith: 2\n",
		"nomem.yaml":   "name: x\nbandwidth_gbs: 1\nfp16_tflops: 1\n",
		"badeff.yaml":  "name: x\nmemory_total_gib: 8\nbandwidth_gbs: 1\nfp16_tflops: 1\nbandwidth_efficiency: 2\n",
		"freebig.yaml": "name: x\nmemory_total_gib: 8\nmemory_free_at_start_gib: 9\nbandwidth_gbs: 1\nfp16_tflops: 1\n",
	} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadGPUSpec(p); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestPlanProfiles(t *testing.T) {
	for _, c := range []struct {
		name         string
		seqs, tokens int
	}{
		{"safe", 64, 4096},
		{"throughput", 128, 8192},
		{"aggressive", 192, 12288},
	} {
		cfg := defaultConfig(c.seqs, c.tokens)
		p, err := NewPlan(cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.KVTokens != p.NumBlocks*16 {
			t.Errorf("%s: KV tokens %d != blocks %d × 16", c.name, p.KVTokens, p.NumBlocks)
		}
		if int64(p.NumBlocks)*16*12288 > p.KVBytes {
			t.Errorf("%s: blocks overflow the KV bytes", c.name)
		}
		if p.MaxConcurrency != float64(p.KVTokens)/512 {
			t.Errorf("%s: max concurrency %.2f", c.name, p.MaxConcurrency)
		}
		if p.StartupSeconds < 20 || p.StartupSeconds > 60 {
			t.Errorf("%s: startup %.1f s, want tens of seconds on the 3050", c.name, p.StartupSeconds)
		}
		lines := strings.Join(p.LogLines(cfg), "\n")
		if !strings.Contains(lines, "GPU KV cache size: ") || !strings.Contains(lines, "Maximum concurrency for 512 tokens per request: ") {
			t.Errorf("%s: log lines %q", c.name, lines)
		}
	}
}

func TestPlanBigGPUsStartFaster(t *testing.T) {
	small, err := NewPlan(defaultConfig(128, 8192))
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig(256, 16384)
	cfg.GPU = "h100-80gb"
	big, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if big.StartupSeconds > small.StartupSeconds {
		t.Errorf("H100 startup %.1f s above the 3050's %.1f s", big.StartupSeconds, small.StartupSeconds)
	}
	if big.KVTokens < 20*small.KVTokens {
		t.Errorf("H100 KV tokens %d implausibly small", big.KVTokens)
	}
}

func TestPlanTooLongForKV(t *testing.T) {
	// Qwen3-0.6B at its full 40,960-token context needs 4.4 GiB for one
	// sequence: more than a 4 GB card has left after weights.
	cfg := defaultConfig(16, 2048)
	cfg.ModelSpec = "qwen3-0.6b"
	cfg.MaxModelLen = 40960
	_, err := NewPlan(cfg)
	if err == nil {
		t.Fatal("fits")
	}
	for _, want := range []string{"To serve at least one request with the models's max seq len (40960)",
		"KV cache is needed, which is larger than the available KV cache memory",
		"Try increasing `gpu_memory_utilization` or decreasing `max_model_len`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestValidateConfig(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"budget below max_model_len without chunked prefill": {func(c *Config) {
			c.EnableChunkedPrefill = false
			c.MaxNumBatchedTokens = 256
			c.MaxNumSeqs = 16
		}, "is smaller than max_model_len"},
		"seqs above budget":  {func(c *Config) { c.MaxNumSeqs = 512; c.MaxNumBatchedTokens = 256 }, "must be greater than or equal to max_num_seqs"},
		"util above 1":       {func(c *Config) { c.GPUMemoryUtilization = 1.5 }, "GPU memory utilization must be less than 1.0"},
		"util zero":          {func(c *Config) { c.GPUMemoryUtilization = 0 }, "GPU memory utilization"},
		"odd block size":     {func(c *Config) { c.BlockSize = 10 }, "block_size"},
		"too long":           {func(c *Config) { c.MaxModelLen = 65536 }, "greater than the derived max_model_len"},
		"unknown gpu":        {func(c *Config) { c.GPU = "rtx9090" }, "unknown GPU"},
		"bad calibration":    {func(c *Config) { c.Calibration = &Calibration{A: -1} }, "calibration"},
		"zero seqs":          {func(c *Config) { c.MaxNumSeqs = 0 }, "max_num_seqs"},
		"zero max model len": {func(c *Config) { c.MaxModelLen = 0 }, "max_model_len"},
	}
	for name, c := range cases {
		cfg := defaultConfig(64, 4096)
		c.mod(&cfg)
		_, err := NewPlan(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	// Chunked prefill lifts the first rule.
	cfg := defaultConfig(16, 256)
	if _, err := NewPlan(cfg); err != nil {
		t.Errorf("chunked prefill with budget < max_model_len: %v", err)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 72352: "72,352", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestEveryKnownPairServesDefaults: vLLM's default flags (256 seqs, 2048
// tokens) at max_model_len 512 start on every known GPU with every known
// model whose weights leave room in the budget, more memory gives more KV
// cache, and a model too big for the card fails with an out-of-memory error.
func TestEveryKnownPairServesDefaults(t *testing.T) {
	for _, m := range ModelNames() {
		prev := 0
		for _, g := range GPUNames() { // ordered by memory
			cfg := defaultConfig(256, 2048)
			cfg.GPU, cfg.ModelSpec = g, m
			spec, _ := LookupModel(m)
			gs, _ := LookupGPU(g)
			if gs.FreeBytes() < int64(0.9*float64(gs.MemBytes())) {
				continue // a card whose desktop holds memory: util 0.9 is refused (TestFreeMemoryRefusal)
			}
			p, err := NewPlan(cfg)
			w := float64(spec.WeightBytes())
			if w > float64(gs.FreeBytes()) {
				if err == nil || !strings.Contains(err.Error(), "out of memory") {
					t.Errorf("%s (%.1f GiB) on %s: %v, want an out-of-memory error", m, w/GiB, g, err)
				}
				continue
			}
			if w > 0.6*0.9*float64(gs.MemBytes()) {
				continue // may or may not leave KV room: the plan decides
			}
			if err != nil {
				t.Errorf("%s on %s: %v", m, g, err)
				continue
			}
			if p.KVTokens < prev && !strings.Contains(g, "3050-4gb") {
				t.Errorf("%s on %s: %d KV tokens, fewer than a smaller card's %d", m, g, p.KVTokens, prev)
			}
			prev = p.KVTokens
			sm, err := NewStepModel(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := sm.Seconds(0, 1, 300); d <= 0 || d > 0.1 {
				t.Errorf("%s on %s: batch-1 decode %v s", m, g, d)
			}
		}
	}
}

// TestPlanNeedsWholeBlocksForMaxModelLen: vLLM sizes the memory one
// max_model_len sequence needs in whole blocks (cdiv(max_model_len,
// block_size) pages), so a pool that holds max_model_len tokens' bytes but
// one block too few must fail at start-up, not accept a configuration
// whose longest request the scheduler then refuses.
func TestPlanNeedsWholeBlocksForMaxModelLen(t *testing.T) {
	cfg := defaultConfig(16, 2048)
	cfg.MaxModelLen = 500 // 32 blocks of 16; 31 blocks hold 496 tokens
	base, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := LookupModel(cfg.ModelSpec)
	g, _ := LookupGPU(cfg.GPU)
	// Choose the utilisation that leaves KV memory for 500 tokens + a bit:
	// more than max_model_len's bytes, fewer than 32 whole blocks.
	target := 500*m.KVBytesPerToken() + 1000
	cfg.GPUMemoryUtilization = float64(base.WeightBytes+base.ActivationBytes+base.OverheadBytes+target) / float64(g.MemBytes())
	p, err := NewPlan(cfg)
	if p.KVBytes < 500*m.KVBytesPerToken() || p.NumBlocks >= 32 {
		t.Fatalf("test set-up: KV bytes %d, blocks %d", p.KVBytes, p.NumBlocks)
	}
	if err == nil {
		t.Fatalf("plan with %d blocks (%d tokens) accepted for max_model_len 500", p.NumBlocks, p.KVTokens)
	}
	if !strings.Contains(err.Error(), "larger than the available KV cache memory") {
		t.Fatalf("error %v", err)
	}
}

// TestMaxConcurrencyCountsWholeBlocks: vLLM's "Maximum concurrency" is
// num_blocks / cdiv(max_model_len, block_size): a 500-token request takes
// 32 blocks of 16, as a 512-token one does.
func TestMaxConcurrencyCountsWholeBlocks(t *testing.T) {
	cfg := defaultConfig(64, 2048)
	cfg.MaxModelLen = 500
	p, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(p.NumBlocks) / 32; p.MaxConcurrency != want {
		t.Fatalf("max concurrency %v, want %v (%d blocks / 32 per request)", p.MaxConcurrency, want, p.NumBlocks)
	}
}
