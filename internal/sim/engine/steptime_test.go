package engine

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeStepTimes(t *testing.T) {
	cfg := defaultConfig(256, 8192)
	sm, err := NewStepModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := LookupGPU(DefaultGPU)
	m, _ := LookupModel(DefaultModelSpec)
	terms := g.Terms
	// Batch 1: the weights streamed once at the effective bandwidth, plus
	// the per-step and per-sequence costs and the KV and sampler reads.
	floor := float64(m.WeightBytes())/(g.BandwidthGBs*1e9**terms.BandwidthEfficiency) + *terms.StepOverheadS + *terms.PerSeqS
	b1 := sm.Seconds(0, 1, 300)
	if b1 < floor || b1 > floor*1.05 {
		t.Errorf("batch 1 decode = %v s, want just above %v s", b1, floor)
	}
	prev := b1
	for _, b := range []int{8, 32, 64, 128, 256} {
		d := sm.Seconds(0, b, b*300)
		if d <= prev {
			t.Errorf("batch %d decode %v not above smaller batch's %v", b, d, prev)
		}
		prev = d
	}
	// Each added sequence costs at least the fitted per-sequence term.
	if d := sm.Seconds(0, 65, 65*300) - sm.Seconds(0, 64, 64*300); d < *terms.PerSeqS {
		t.Errorf("65th sequence adds %v s, less than per_seq_s %v", d, *terms.PerSeqS)
	}
	// A 200-token prefill is compute-bound: 200 × 2 × 358 M body FLOPs at
	// the sustained rate, plus the step overhead.
	flops := 200 * 2 * float64(m.Params-m.EmbedParams) / (g.FP16TFLOPS * 1e12 * *terms.ComputeEfficiency)
	if p := sm.Seconds(200, 0, 200); math.Abs(p-flops-*terms.StepOverheadS) > 1e-9 {
		t.Errorf("200-token prefill = %v s, want %v", p, flops+*terms.StepOverheadS)
	}
	if sm.Duration(0, 0, 0) != 0 {
		t.Error("empty step has a duration")
	}
	if sm.FrontendRequestSeconds() != *terms.FrontendRequestS {
		t.Errorf("frontend %v, want %v", sm.FrontendRequestSeconds(), *terms.FrontendRequestS)
	}
	// The linear form bounds the roofline from above.
	lin := sm.Linear()
	for _, s := range [][3]int{{0, 1, 300}, {0, 64, 19200}, {2048, 0, 2048}, {500, 100, 30000}} {
		l := lin.A + lin.B*float64(s[0]) + lin.C*float64(s[1]) + lin.D*float64(s[2])
		if r := sm.Seconds(s[0], s[1], s[2]); r > l+1e-12 {
			t.Errorf("roofline %v > linear %v at %v", r, l, s)
		}
	}
	// Boost clocks are faster at every batch size.
	cfg.GPU = "rtx3050-4gb-laptop-boost"
	boost, _ := NewStepModel(cfg)
	for _, b := range []int{1, 8, 64, 256} {
		if boost.Seconds(0, b, 300*b) >= sm.Seconds(0, b, 300*b) {
			t.Errorf("batch %d: boost %v not below sustained %v", b, boost.Seconds(0, b, 300*b), sm.Seconds(0, b, 300*b))
		}
	}
}

// TestCalibrationTermsOverride: a calibration's terms replace the card's.
func TestCalibrationTermsOverride(t *testing.T) {
	cfg := defaultConfig(64, 4096)
	base, _ := NewStepModel(cfg)
	one, zero := 1.0, 0.0
	cfg.Calibration = &Calibration{Terms: Terms{BandwidthEfficiency: &one, FrontendRequestS: &zero}}
	sm, err := NewStepModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sm.Seconds(0, 1, 300) >= base.Seconds(0, 1, 300) || sm.FrontendRequestSeconds() != 0 {
		t.Errorf("terms not applied: %v vs %v, frontend %v", sm.Seconds(0, 1, 300), base.Seconds(0, 1, 300), sm.FrontendRequestSeconds())
	}
}

func TestCalibrationOverrides(t *testing.T) {
	cfg := defaultConfig(64, 4096)
	cfg.Calibration = &Calibration{A: 0.01, B: 1e-4, C: 2e-4, D: 1e-7}
	sm, err := NewStepModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.01 + 1e-4*10 + 2e-4*3 + 1e-7*1000
	if got := sm.Seconds(10, 3, 1000); math.Abs(got-want) > 1e-12 {
		t.Errorf("calibrated step = %v, want %v", got, want)
	}
}

func TestLoadCalibration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadCalibration(write("c.json", `{"a_s":0.006,"b_s_per_prefill_token":1e-4,"c_s_per_decode_seq":1e-4,"d_s_per_context_token":6.4e-8}`))
	if err != nil || c.A != 0.006 || c.D != 6.4e-8 {
		t.Errorf("json: %+v, %v", c, err)
	}
	c, err = LoadCalibration(write("c.yaml", "a_s: 0.005\nb_s_per_prefill_token: 0.0001\nc_s_per_decode_seq: 0.0002\nd_s_per_context_token: 0\n"))
	if err != nil || c.A != 0.005 || c.C != 0.0002 {
		t.Errorf("yaml: %+v, %v", c, err)
	}
	c, err = LoadCalibration(write("terms.yaml", "bandwidth_efficiency: 0.5\nfrontend_request_s: 0.1\n"))
	if err != nil || *c.BandwidthEfficiency != 0.5 || *c.FrontendRequestS != 0.1 {
		t.Errorf("terms: %+v, %v", c, err)
	}
	for name, body := range map[string]string{
		"eff.yaml":   "compute_efficiency: 1.5\n",
		"typo.yaml":  "a_s: 0.005\nb_per_token: 1\n",
		"typo.json":  `{"a": 1}`,
		"neg.yaml":   "a_s: -1\n",
		"zero.yaml":  "a_s: 0\n",
		"broken.yml": "a_s: [",
	} {
		if _, err := LoadCalibration(write(name, body)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := LoadCalibration(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "read calibration") {
		t.Errorf("missing file: %v", err)
	}
}
