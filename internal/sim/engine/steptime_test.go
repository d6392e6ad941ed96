package engine

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeStepTimes(t *testing.T) {
	sm, err := NewStepModel(defaultConfig(256, 8192))
	if err != nil {
		t.Fatal(err)
	}
	// Batch 1: the weights streamed once (0.988 GB / 192 GB/s = 5.15 ms)
	// plus the fixed per-step overhead.
	b1 := sm.Duration(0, 1, 300)
	if b1 < 5150*time.Microsecond || b1 > 7*time.Millisecond {
		t.Errorf("batch 1 decode = %v, want weight floor 5.15 ms + ≤ 2 ms", b1)
	}
	prev := b1
	for _, b := range []int{8, 32, 64, 128, 256} {
		d := sm.Duration(0, b, b*300)
		if d <= prev {
			t.Errorf("batch %d decode %v not above smaller batch's %v", b, d, prev)
		}
		prev = d
	}
	b64, b256 := sm.Duration(0, 64, 64*300), sm.Duration(0, 256, 256*300)
	if b64 > 2*b1 {
		t.Errorf("batch 64 = %v: decode at 64 should still be near the memory floor (%v)", b64, b1)
	}
	if b256 < 3*b1 {
		t.Errorf("batch 256 = %v: should be compute-bound, well above batch 1 (%v)", b256, b1)
	}
	// A 200-token prefill costs 200 × 2 × 358 M body FLOPs over ~40 % of
	// 24 TFLOP/s ≈ 15 ms, plus overhead.
	if p := sm.Duration(200, 0, 200); p < 12*time.Millisecond || p > 25*time.Millisecond {
		t.Errorf("200-token prefill = %v", p)
	}
	if sm.Duration(0, 0, 0) != 0 {
		t.Error("empty step has a duration")
	}
	// The linear form bounds the roofline from above.
	lin := sm.Linear()
	for _, s := range [][3]int{{0, 1, 300}, {0, 64, 19200}, {2048, 0, 2048}, {500, 100, 30000}} {
		l := lin.A + lin.B*float64(s[0]) + lin.C*float64(s[1]) + lin.D*float64(s[2])
		if r := sm.Seconds(s[0], s[1], s[2]); r > l+1e-12 {
			t.Errorf("roofline %v > linear %v at %v", r, l, s)
		}
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
	for name, body := range map[string]string{
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
