package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultCardIsItsCalibration: the built-in terms of the default card
// are what `llmlab sim calibrate` fits from the published RTX 3050 data in
// configs/calibration, and that fit reproduces the data: KV tokens within
// 5 %, decode ITL within 10 % (the boost band holds the CPU terms), the
// short-prompt TTFT within 5 %, serve
// throughput within 17 % (docs/calibration.md lists every point).
func TestDefaultCardIsItsCalibration(t *testing.T) {
	for _, c := range []struct {
		file, gpu string
	}{
		{"rtx3050-4gb-laptop.yaml", "rtx3050-4gb-laptop"},
		{"rtx3050-4gb-laptop-boost.yaml", "rtx3050-4gb-laptop-boost"},
	} {
		ms, err := LoadMeasurements(filepath.Join("..", "..", "..", "configs", "calibration", c.file))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Fit(ms)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		g, _ := LookupGPU(c.gpu)
		got, want := res.Calibration.Terms, g.Terms
		for name, pair := range map[string][2]*float64{
			"bandwidth_efficiency": {got.BandwidthEfficiency, want.BandwidthEfficiency},
			"compute_efficiency":   {got.ComputeEfficiency, want.ComputeEfficiency},
			"step_overhead_s":      {got.StepOverheadS, want.StepOverheadS},
			"per_seq_s":            {got.PerSeqS, want.PerSeqS},
			"frontend_request_s":   {got.FrontendRequestS, want.FrontendRequestS},
			"non_torch":            {got.NonTorchIncreaseGiB, want.NonTorchIncreaseGiB},
		} {
			if math.Abs(*pair[0]-*pair[1]) > 0.001*math.Abs(*pair[1]) {
				t.Errorf("%s: %s fitted %v, specs/gpus.yaml has %v: re-run the calibration and update the table", c.file, name, *pair[0], *pair[1])
			}
		}
		for _, r := range res.Rows {
			limit := 5.0
			switch {
			case r.Kind == "decode":
				limit = 10
			case r.Kind == "serve":
				limit = 17
			case r.Kind == "prefill" && strings.Contains(r.Point, "prompt 471"):
			case r.Kind == "prefill":
				continue // long prompts: the sim has no quadratic attention term (documented)
			}
			if math.Abs(r.ErrPct) > limit {
				t.Errorf("%s %s %s: measured %v, sim %v (%+.1f%%)", c.file, r.Kind, r.Point, r.Measured, r.Fitted, r.ErrPct)
			}
		}
	}
}

func TestFitErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "m.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadMeasurements(write("gpu: t4\n")); err == nil {
		t.Error("no points accepted")
	}
	if _, err := LoadMeasurements(write("gpu: t4\ndecod: []\n")); err == nil {
		t.Error("unknown key accepted")
	}
	// One decode point cannot fix three terms.
	ms, err := LoadMeasurements(write("gpu: t4\ndecode:\n  - {model: qwen2.5-0.5b, batch: 1, context: 100, itl_ms: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Fit(ms); err == nil || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("under-determined fit: %v", err)
	}
	// Faster than the spec sheet allows is refused.
	ms, _ = LoadMeasurements(write("gpu: t4\nfixed: {step_overhead_s: true, per_seq_s: true}\ndecode:\n  - {model: qwen2.5-0.5b, batch: 1, context: 100, itl_ms: 0.5}\n"))
	if _, err := Fit(ms); err == nil || !strings.Contains(err.Error(), "spec sheet") {
		t.Errorf("impossible point: %v", err)
	}
}

// TestClosedLoopScales: more clients give more throughput and longer
// per-token times, never fewer requests than asked.
func TestClosedLoopScales(t *testing.T) {
	cfg := defaultConfig(64, 4096)
	one, err := ClosedLoop(cfg, 1, 200, 200, 10)
	if err != nil {
		t.Fatal(err)
	}
	eight, err := ClosedLoop(cfg, 8, 200, 200, 40)
	if err != nil {
		t.Fatal(err)
	}
	if one.Requests != 10 || eight.Requests != 40 {
		t.Fatalf("requests %d, %d", one.Requests, eight.Requests)
	}
	if eight.OutputTokS <= 2*one.OutputTokS || eight.MeanTPOTS <= one.MeanTPOTS {
		t.Errorf("1 client %+v, 8 clients %+v", one, eight)
	}
	sm, _ := NewStepModel(cfg)
	if one.MedianTTFTS < sm.FrontendRequestSeconds() {
		t.Errorf("TTFT %v below the frontend cost %v", one.MedianTTFTS, sm.FrontendRequestSeconds())
	}
}

// TestMeasurementsFromLogAndBenchLatency: a pasted vLLM start-up log fills
// a start-up point, and `vllm bench latency` averages become decode points.
func TestMeasurementsFromLogAndBenchLatency(t *testing.T) {
	dir := t.TempDir()
	// The bench-latency averages are what the default card's model says,
	// so the fit must give the default bandwidth back.
	g, _ := LookupGPU(DefaultGPU)
	m, _ := LookupModel(DefaultModelSpec)
	sm, _ := NewStepModel(Config{GPUSpec: &g, Model: &m, MaxModelLen: 512})
	latency := func(b int) float64 {
		s := sm.Seconds(b*128, 0, b*128)
		for k := 1; k < 128; k++ {
			s += sm.Seconds(0, b, b*(128+64))
		}
		return s
	}
	body := fmt.Sprintf(`gpu: rtx3050-4gb-laptop-wsl
fixed: {step_overhead_s: true, per_seq_s: true}
startup:
  - model: qwen2.5-3b
    quantization: awq
    gpu_memory_utilization: 0.78
    max_num_seqs: 8
    max_num_batched_tokens: 2048
    log: |
      INFO [gpu_model_runner.py] Model loading took 1.9542 GiB and 3.96 seconds
      INFO [kv_cache_utils.py] GPU KV cache size: 28,432 tokens
      ValueError: Free memory on device (3.21/4.0 GiB) on startup is less than desired GPU memory utilization (0.9, 3.6 GiB).
decode:
  - {model: qwen2.5-0.5b, batch: 1, input_len: 128, output_len: 128, avg_latency_s: %v}
  - {model: qwen2.5-0.5b, batch: 8, input_len: 128, output_len: 128, avg_latency_s: %v}
`, latency(1), latency(8))
	path := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := LoadMeasurements(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := ms.Startup[0]; p.WeightGiB != 1.9542 || p.KVTokens != 28432 || p.MemoryTotalGiB != 4.0 {
		t.Fatalf("from the log: %+v", p)
	}
	res, err := Fit(ms)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *res.Calibration.BandwidthEfficiency, *g.BandwidthEfficiency; math.Abs(got-want) > 0.01*want {
		t.Errorf("bandwidth efficiency from bench latency %v, want %v", got, want)
	}
	// A log without the KV line is refused with what is missing.
	_ = os.WriteFile(path, []byte("gpu: t4\nstartup:\n  - {model: qwen2.5-0.5b, gpu_memory_utilization: 0.9, max_num_seqs: 8, max_num_batched_tokens: 2048, log: 'Model loading took 1 GiB'}\n"), 0o644)
	if _, err := LoadMeasurements(path); err == nil || !strings.Contains(err.Error(), "kv_tokens") {
		t.Errorf("incomplete log: %v", err)
	}
}

// TestExampleGPUSpecLoads: the example in configs/gpus loads and restates
// the built-in card's spec-sheet figures.
func TestExampleGPUSpecLoads(t *testing.T) {
	g, err := LoadGPUSpec(filepath.Join("..", "..", "..", "configs", "gpus", "example-rtx3060-12gb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := LookupGPU("rtx3060-12gb")
	if g.MemoryTotalGiB != b.MemoryTotalGiB || g.BandwidthGBs != b.BandwidthGBs || g.FP16TFLOPS != b.FP16TFLOPS ||
		*g.PerSeqS != *b.PerSeqS {
		t.Errorf("example %+v differs from the built-in %+v", g, b)
	}
	cfg := defaultConfig(256, 2048)
	cfg.GPUSpec = &g
	if _, err := NewPlan(cfg); err != nil {
		t.Error(err)
	}
}
