package tune

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaultGridIsThePlans(t *testing.T) {
	pts, err := DefaultGrid().Points(0.9)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 16 {
		t.Fatalf("%d points, want 16", len(pts))
	}
	// Row-major by max_num_seqs, batched tokens ascending within a row.
	if pts[0] != (runfile.EngineArgs{MaxModelLen: 512, MaxNumSeqs: 64, MaxNumBatchedTokens: 4096, GPUMemoryUtilization: 0.9}) ||
		pts[3].MaxNumBatchedTokens != 16384 || pts[4].MaxNumSeqs != 128 || pts[15].MaxNumSeqs != 256 {
		t.Errorf("order: %v", pts)
	}
}

func TestGridFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "g.yaml")
	os.WriteFile(good, []byte("max_num_seqs: [128, 64, 64]\nmax_num_batched_tokens: [8192]\n"), 0o644)
	g, err := LoadGrid(good)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := g.Points(0.8)
	if err != nil || len(pts) != 2 || pts[0].MaxNumSeqs != 64 || pts[0].MaxModelLen != 512 || pts[0].GPUMemoryUtilization != 0.8 {
		t.Errorf("points %v, %v; want 64 then 128 at len 512, util 0.8 (duplicates dropped)", pts, err)
	}
	bad := filepath.Join(dir, "b.yaml")
	os.WriteFile(bad, []byte("max_num_seq: [1]\n"), 0o644)
	if _, err := LoadGrid(bad); err == nil {
		t.Error("a misspelt key was accepted")
	}
	if _, err := (Grid{MaxModelLen: []int{512}, MaxNumSeqs: []int{0}, MaxNumBatchedTokens: []int{1}}).Points(0.9); err == nil {
		t.Error("a zero value was accepted")
	}
}

func TestIsOOMLine(t *testing.T) {
	for line, want := range map[string]bool{
		"ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.":                                                 true,
		"ValueError: To serve at least one request with the models's max seq len (512), (0.01 GiB KV cache is needed, which is larger than the available KV cache memory (0.00 GiB).": true,
		"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB":                                                                                                     true,
		"OSError: [Errno 98] Address already in use":                                   false,
		"ValueError: max_num_batched_tokens (256) is smaller than max_model_len (512)": false,
	} {
		if got := IsOOMLine(line); got != want {
			t.Errorf("IsOOMLine(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestWorkerCommandIsServes(t *testing.T) {
	p, err := profile.Load("throughput")
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := WorkerCommand(p, "/bin/llmlab", 0, []string{"--gpu-spec", "g.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cmd("127.0.0.1", 9), " ")
	for _, want := range []string{"/bin/llmlab sim --model Qwen/Qwen2.5-0.5B-Instruct", "--max-num-seqs 128", "--max-num-batched-tokens 8192",
		"--startup-seconds 0", "--gpu-spec g.yaml", "--host 127.0.0.1 --port 9"} {
		if !strings.Contains(got, want) {
			t.Errorf("argv %q lacks %q", got, want)
		}
	}
	p.Engine = profile.EngineVLLM
	cmd, _ = WorkerCommand(p, "", -1, nil)
	if got := strings.Join(cmd("h", 1), " "); !strings.HasPrefix(got, "vllm serve Qwen/Qwen2.5-0.5B-Instruct") {
		t.Errorf("vllm argv %q", got)
	}
	p.Engine = profile.EngineExternal
	if _, err := WorkerCommand(p, "", -1, nil); err == nil {
		t.Error("external engine accepted")
	}
}

func TestScrapeDepth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP vllm:num_requests_running x
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting_by_reason 99
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
`)
	}))
	defer srv.Close()
	r, w, ok := scrapeDepth(context.Background(), srv.Client(), srv.URL)
	// Only the two gauges count, not a longer name sharing their prefix.
	if !ok || r != 12 || w != 3 {
		t.Errorf("running %d waiting %d ok %v; want 12, 3, true", r, w, ok)
	}
	s := startSampler(context.Background(), srv.Client(), srv.URL, 5*time.Millisecond)
	testsupport.WaitFor(t, 30*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.peakIn > 0
	})
	in, _ := s.stop()
	if in < 15 {
		t.Errorf("peak in engine %d, want ≥ 15", in)
	}
}

func newTestTuner(t *testing.T, points []runfile.EngineArgs, set runfile.TuneConfig, pred func(runfile.EngineArgs) (Prediction, error)) (*Tuner, *runfile.TuneFile) {
	p, _ := profile.Load("throughput")
	tf := NewFile(p, points, set, runfile.SLORecord{P95E2ESeconds: 5})
	saves := 0
	tu := New(Options{Profile: p, Predict: pred}, tf, func() error { saves++; return nil }, time.Second)
	return tu, tf
}

func TestPredictSelectsTopKAndMargin(t *testing.T) {
	pts, _ := Grid{MaxModelLen: []int{512}, MaxNumSeqs: []int{64}, MaxNumBatchedTokens: []int{1, 2, 3, 4, 5}}.Points(0.9)
	rates := map[int]Prediction{1: {MaxRate: 5, Starts: true}, 2: {MaxRate: 10, Starts: true, E2EP95: 4}, 3: {MaxRate: 9.6, Starts: true},
		4: {MaxRate: 10, Starts: true, E2EP95: 3}, 5: {Starts: false}}
	pred := func(a runfile.EngineArgs) (Prediction, error) { return rates[a.MaxNumBatchedTokens], nil }
	set := runfile.TuneConfig{Predict: true, TopK: 1, Margin: 0.05, ProbeDurationS: 10, MaxSteps: 4, Repeats: 1, RepeatDurationS: 10}
	tu, tf := newTestTuner(t, pts, set, pred)
	if err := tu.PredictAll(); err != nil {
		t.Fatal(err)
	}
	// Best: 4 (same rate as 2, lower p95); 2 and 3 within 5 %; 1 out; 5 does not start.
	if tf.Prediction.Best != 3 || tf.Prediction.Selected != 3 || tf.Prediction.Tied != 2 {
		t.Errorf("prediction %+v; want best index 3, 3 selected, 2 tied", tf.Prediction)
	}
	want := []string{runfile.PointNotSelected, runfile.PointPending, runfile.PointPending, runfile.PointPending, runfile.PointNotSelected}
	for i, p := range tf.Points {
		if p.Status != want[i] {
			t.Errorf("point %d: %s, want %s", i, p.Status, want[i])
		}
	}
	if !strings.Contains(tf.Points[4].Reason, "not to start") || tf.Prediction.SavedSeconds != 2*tu.PerPoint().Seconds() {
		t.Errorf("reason %q, saved %v", tf.Points[4].Reason, tf.Prediction.SavedSeconds)
	}
	// Margin 0: the top k alone.
	tu, tf = newTestTuner(t, pts, runfile.TuneConfig{Predict: true, TopK: 2}, pred)
	if err := tu.PredictAll(); err != nil || tf.Prediction.Selected != 2 || tf.Points[2].Status != runfile.PointNotSelected {
		t.Errorf("margin 0: %v, %+v, point 2 %s", err, tf.Prediction, tf.Points[2].Status)
	}
}

func TestSkipAfterOOMAndBlowup(t *testing.T) {
	pts, _ := Grid{MaxModelLen: []int{512}, MaxNumSeqs: []int{64, 128}, MaxNumBatchedTokens: []int{4096, 8192, 16384}}.Points(0.9)
	tu, tf := newTestTuner(t, pts, runfile.TuneConfig{BlowupFraction: 0.5}, nil)
	// Row 64: 4096 measured at 8, 8192 blows up (3 < 0.5 × 8).
	tf.Points[0].Status, tf.Points[0].MaxRate, tf.Points[0].MaxRPS = runfile.PointMeasured, 8, 8
	tf.Points[1].Status, tf.Points[1].MaxRate, tf.Points[1].MaxRPS = runfile.PointMeasured, 3, 3
	tu.markBlowup(0)
	tu.markBlowup(1)
	if tf.Points[0].EndsRow || !tf.Points[1].EndsRow {
		t.Fatalf("ends row: %v %v; want false true", tf.Points[0].EndsRow, tf.Points[1].EndsRow)
	}
	if why := tu.skipReason(2); !strings.Contains(why, "blew up") {
		t.Errorf("64/16384 after a blow-up: %q", why)
	}
	// Row 128: 4096 runs (another row), 8192 OOM → 16384 skipped.
	if why := tu.skipReason(3); why != "" {
		t.Errorf("128/4096: skipped (%s)", why)
	}
	tf.Points[4].Status = runfile.PointOOM
	if why := tu.skipReason(5); !strings.Contains(why, "ran out") {
		t.Errorf("128/16384 after 128/8192 OOM: %q", why)
	}
	tf.Points[4].Status = runfile.PointPending
	tf.Points[3].Status = runfile.PointOOM
	if why := tu.skipReason(4); !strings.Contains(why, "ran out") {
		t.Errorf("128/8192 after 128/4096 OOM: %q", why)
	}
	if why := tu.skipReason(2); strings.Contains(why, "ran out") {
		t.Errorf("64/16384 needs less memory than 128/4096 in seqs, yet: %q", why)
	}
	// The best point and the suggested queue_max follow the measured points.
	tf.Points[0].PeakInEngine = 31
	tu.finish()
	if tf.Best != 0 || tf.SuggestedQueueMax != 31 {
		t.Errorf("best %d, suggested %d; want 0 and 31", tf.Best, tf.SuggestedQueueMax)
	}
}
