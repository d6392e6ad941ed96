package engine

import (
	"fmt"
	"math"
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
	if w := float64(q25.WeightBytes()) / 1e9; w < 0.98 || w > 1.0 {
		t.Errorf("qwen2.5-0.5b weights = %.3f GB, want ≈ 0.99", w)
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

// TestM4Grid pins which points of the M4 grid fit on the default 4 GB card:
// the profiles fit, the largest corner does not, and the KV pool shrinks as
// either knob grows.
func TestM4Grid(t *testing.T) {
	fails := map[[2]int]bool{{192, 16384}: true, {256, 12288}: true, {256, 16384}: true}
	prevBySeqs := map[int]int{}
	for _, seqs := range []int{64, 128, 192, 256} {
		prevKV := math.MaxInt
		for _, tokens := range []int{4096, 8192, 12288, 16384} {
			cfg := defaultConfig(seqs, tokens)
			p, err := NewPlan(cfg)
			name := fmt.Sprintf("seqs=%d tokens=%d", seqs, tokens)
			if fails[[2]int{seqs, tokens}] {
				if err == nil {
					t.Errorf("%s: fits with %d KV tokens, want OOM", name, p.KVTokens)
				} else if !strings.Contains(err.Error(), "No available memory for the cache blocks") {
					t.Errorf("%s: error %q is not vLLM's", name, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if p.KVTokens >= prevKV {
				t.Errorf("%s: KV tokens %d did not shrink with the token budget (was %d)", name, p.KVTokens, prevKV)
			}
			prevKV = p.KVTokens
			if prev, ok := prevBySeqs[tokens]; ok && p.KVTokens >= prev {
				t.Errorf("%s: KV tokens %d did not shrink with max_num_seqs (was %d)", name, p.KVTokens, prev)
			}
			prevBySeqs[tokens] = p.KVTokens
		}
	}
}

func TestPlanProfiles(t *testing.T) {
	for _, c := range []struct {
		name           string
		seqs, tokens   int
		minKV, maxKV   int // sanity band for KV tokens
		minConcurrency float64
	}{
		{"safe", 64, 4096, 100_000, 160_000, 190},
		{"throughput", 128, 8192, 50_000, 100_000, 100},
		{"aggressive", 192, 12288, 8_000, 30_000, 16},
	} {
		cfg := defaultConfig(c.seqs, c.tokens)
		p, err := NewPlan(cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.KVTokens < c.minKV || p.KVTokens > c.maxKV {
			t.Errorf("%s: KV tokens %d outside [%d, %d]", c.name, p.KVTokens, c.minKV, c.maxKV)
		}
		if p.KVTokens != p.NumBlocks*16 {
			t.Errorf("%s: KV tokens %d != blocks %d × 16", c.name, p.KVTokens, p.NumBlocks)
		}
		if sum := p.WeightBytes + p.ActivationBytes + p.OverheadBytes + p.KVBytes; sum != p.BudgetBytes {
			t.Errorf("%s: parts sum to %d, budget %d", c.name, sum, p.BudgetBytes)
		}
		if int64(p.NumBlocks)*16*12288 > p.KVBytes {
			t.Errorf("%s: blocks overflow the KV bytes", c.name)
		}
		if p.MaxConcurrency < c.minConcurrency || p.MaxConcurrency != float64(p.KVTokens)/512 {
			t.Errorf("%s: max concurrency %.2f", c.name, p.MaxConcurrency)
		}
		if p.StartupSeconds < 25 || p.StartupSeconds > 45 {
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
	if big.StartupSeconds >= small.StartupSeconds {
		t.Errorf("H100 startup %.1f s not below the 3050's %.1f s", big.StartupSeconds, small.StartupSeconds)
	}
	if big.KVTokens < 100*small.KVTokens/10 {
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
// model, and more memory gives more KV cache.
func TestEveryKnownPairServesDefaults(t *testing.T) {
	for _, m := range ModelNames() {
		prev := 0
		for _, g := range GPUNames() { // ordered by memory
			cfg := defaultConfig(256, 2048)
			cfg.GPU, cfg.ModelSpec = g, m
			p, err := NewPlan(cfg)
			if err != nil {
				t.Errorf("%s on %s: %v", m, g, err)
				continue
			}
			if p.KVTokens < prev {
				t.Errorf("%s on %s: %d KV tokens, fewer than a smaller card's %d", m, g, p.KVTokens, prev)
			}
			prev = p.KVTokens
			sm, err := NewStepModel(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := sm.Seconds(0, 1, 300); d <= 0 || d > 0.01 {
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
	cfg.GPUMemoryUtilization = float64(base.WeightBytes+base.ActivationBytes+base.OverheadBytes+target) / float64(g.MemBytes)
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
