package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/runfile"
)

// simRun runs `llmlab sim run` and returns its exit code, stdout+stderr.
func simRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := start(t, append([]string{"sim", "run"}, args...)...)
	code := p.wait(t, 60*time.Second)
	return code, p.out.String()
}

// runSplit runs llmlab with args to the end and returns its exit code,
// stdout and stderr apart (--json promises stdout holds the JSON alone).
func runSplit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("llmlab %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// simRunJSON runs `llmlab sim run --json ARGS` and decodes its run file.
func simRunJSON(t *testing.T, args ...string) (int, runfile.RunFile, string) {
	t.Helper()
	code, stdout, stderr := runSplit(t, append([]string{"sim", "run", "--json"}, args...)...)
	var rf runfile.RunFile
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("exit %d; stdout is not one JSON object: %v\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value on stdout:\n%s", stdout)
	}
	return code, rf, stderr
}

func TestSimRunShort(t *testing.T) {
	code, rf, stderr := simRunJSON(t, "--rate", "5", "--duration", "30s", "--ramp", "0s", "--input-len", "200", "--output-len", "200",
		"--max-num-seqs", "128", "--max-num-batched-tokens", "8192")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	r := rf.Results
	if rf.Kind != runfile.KindSimRun || rf.Source != runfile.SourceOffline || rf.Sim == nil || r == nil {
		t.Fatalf("run file header: kind %q source %q sim %v", rf.Kind, rf.Source, rf.Sim)
	}
	if r.Requests != 150 || r.Completed != 150 || r.RPS > 5 || r.RPS < 4.95 {
		t.Errorf("requests %d completed %d rps %v, want 150/150/5 (within 1 %%, never above)", r.Requests, r.Completed, r.RPS)
	}
	if !rf.SLOMet || r.ErrorRate != 0 || r.RequestsUnfinished != 0 {
		t.Errorf("light load: slo_met %v, error_rate %v, unfinished %v", rf.SLOMet, r.ErrorRate, r.RequestsUnfinished)
	}
	// 200 tokens at ~20 ms per step on the calibrated card: about 4 s end to end.
	if r.E2EP50 <= 0.5 || r.E2EP95 > 5 || r.E2EP50 > r.E2EP95 || r.E2EP95 > r.E2EP99 {
		t.Errorf("e2e p50 %v p95 %v p99 %v", r.E2EP50, r.E2EP95, r.E2EP99)
	}
	if r.TTFTP50 <= 0 || r.TTFTP95 < r.TTFTP50 || r.TPOTP50 <= 0 || r.TPOTP95 < r.TPOTP50 || r.ITLP95 <= 0 {
		t.Errorf("token latencies: %+v", r)
	}
	if rf.Sim.KVTokens <= 0 || rf.Sim.MaxConcurrency <= 0 || rf.Sim.MaxNumSeqs != 128 || rf.Sim.MaxNumBatchedTokens != 8192 {
		t.Errorf("plan/config: %+v", rf.Sim)
	}
	if rf.Workload.InputTokens != 200 || rf.Config.Rate != 5 || rf.SLO.P95E2ESeconds <= 0 {
		t.Errorf("config %+v workload %+v slo %+v", rf.Config, rf.Workload, rf.SLO)
	}
	// Without --json: the human summary, as bench prints it.
	code, out := simRun(t, "--rate", "5", "--duration", "30s", "--max-num-seqs", "128", "--max-num-batched-tokens", "8192")
	if code != 0 || !strings.Contains(out, "llmlab sim run (offline") || !strings.Contains(out, "): MET") {
		t.Errorf("summary: exit %d\n%s", code, out)
	}
}

// A closed loop keeps N requests in the engine: the peak running count is
// N, and the completed rate follows from the latency (Little's law).
func TestSimRunClosedLoop(t *testing.T) {
	code, rf, stderr := simRunJSON(t, "--concurrency", "8", "--duration", "1m", "--max-num-seqs", "128", "--max-num-batched-tokens", "8192")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	r := rf.Results
	if rf.Config.Concurrency != 8 || rf.Config.Arrival != "closed_loop" || r.PeakRunning != 8 {
		t.Errorf("concurrency %d arrival %q peak running %d", rf.Config.Concurrency, rf.Config.Arrival, r.PeakRunning)
	}
	if little := 8 / r.E2EMean; math.Abs(r.RPS-little) > 0.1*little {
		t.Errorf("rps %v, Little's law says %v (8 / mean e2e %v)", r.RPS, little, r.E2EMean)
	}
	if code, out := simRun(t, "--concurrency", "8", "--rate", "3"); code != 2 {
		t.Errorf("--concurrency with --rate: exit %d, want 2\n%s", code, out)
	}
}

// Exit codes: 3 when nothing completed, 4 with --fail-on-slo when the SLO
// was missed, 0 without it.
func TestSimRunExitCodes(t *testing.T) {
	// Over-long prompts: every request is refused (vLLM's 400).
	code, rf, stderr := simRunJSON(t, "--rate", "2", "--duration", "10s", "--input-len", "400", "--output-len", "200")
	if code != 3 || rf.Results == nil || rf.Results.Errors["http_400"] == 0 || !strings.Contains(stderr, "no request") {
		t.Errorf("all refused: exit %d, want 3; errors %v\n%s", code, rf.Results, stderr)
	}
	over := []string{"--rate", "60", "--duration", "30s", "--max-num-seqs", "64", "--max-num-batched-tokens", "4096"}
	if code, out := simRun(t, over...); code != 0 || !strings.Contains(out, "NOT MET") {
		t.Errorf("overload without --fail-on-slo: exit %d, want 0\n%s", code, out)
	}
	if code, out := simRun(t, append(over, "--fail-on-slo")...); code != 4 || !strings.Contains(out, "fail-on-slo") {
		t.Errorf("overload with --fail-on-slo: exit %d, want 4\n%s", code, out)
	}
	if code, out := simRun(t, "--rate", "2", "--duration", "30s", "--fail-on-slo"); code != 0 {
		t.Errorf("light load with --fail-on-slo: exit %d, want 0\n%s", code, out)
	}
	if code, out := simRun(t, "-h"); code != 0 || !strings.Contains(out, "Exit codes:") {
		t.Errorf("-h: exit %d\n%s", code, out)
	}
}

func TestSimRunOOM(t *testing.T) {
	code, out := simRun(t, "--rate", "1", "--duration", "10s", "--max-num-seqs", "256", "--max-num-batched-tokens", "16384", "--gpu-memory-utilization", "0.35")
	if code == 0 {
		t.Fatalf("OOM configuration exited 0:\n%s", out)
	}
	if !strings.Contains(out, "No available memory for the cache blocks") {
		t.Errorf("no vLLM error text:\n%s", out)
	}
	if strings.Contains(out, "{") {
		t.Errorf("a result was printed for a configuration that does not start:\n%s", out)
	}
}

func TestSimRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"--rate", "x"}, {"stray"}} {
		if code, out := simRun(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2:\n%s", args, code, out)
		}
	}
	// vLLM's config validation: no chunked prefill and a budget below max_model_len.
	code, out := simRun(t, "--no-enable-chunked-prefill", "--max-num-batched-tokens", "256", "--max-num-seqs", "16")
	if code == 0 || !strings.Contains(out, "is smaller than max_model_len") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	code, out = simRun(t, "--enable-chunked-prefill=false", "--max-num-batched-tokens", "256", "--max-num-seqs", "16")
	if code == 0 || !strings.Contains(out, "is smaller than max_model_len") {
		t.Errorf("--enable-chunked-prefill=false: exit %d:\n%s", code, out)
	}
}

func TestSimRunFindMax(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fm.json")
	code, rf, stderr := simRunJSON(t, "--find-max", "--rate", "4", "--duration", "1m", "--arrival", "poisson", "--seed", "3",
		"--max-num-seqs", "64", "--max-num-batched-tokens", "4096", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	fm := rf.FindMax
	if rf.Kind != runfile.KindSimRunFindMax || fm == nil || fm.MaxRate <= 0 || !rf.SLOMet || rf.Config.Rate != fm.MaxRate ||
		fm.FailRate <= fm.MaxRate || len(fm.Steps) < 3 {
		t.Fatalf("find-max record: kind %q %+v slo_met %v rate %v", rf.Kind, fm, rf.SLOMet, rf.Config.Rate)
	}
	saved, err := runfile.Read(out)
	if err != nil || saved.FindMax == nil || saved.FindMax.MaxRate != fm.MaxRate {
		t.Errorf("--out file: %v %+v", err, saved.FindMax)
	}
	// Confirm with a plain run at that rate.
	code, rf2, stderr := simRunJSON(t, "--rate", jsonNumber(fm.MaxRate), "--duration", "1m", "--arrival", "poisson", "--seed", "3",
		"--max-num-seqs", "64", "--max-num-batched-tokens", "4096")
	if code != 0 || !rf2.SLOMet {
		t.Errorf("rerun at the max rate: exit %d slo_met %v\n%s", code, rf2.SLOMet, stderr)
	}
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestSimPlan(t *testing.T) {
	p := start(t, "sim", "plan", "--max-num-seqs", "128", "--max-num-batched-tokens", "8192")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.out.String())
	}
	var rep struct {
		Plan struct {
			KVTokens       int     `json:"kv_tokens"`
			NumBlocks      int     `json:"num_blocks"`
			MaxConcurrency float64 `json:"max_concurrency"`
		} `json:"plan"`
		Log    []string           `json:"log"`
		Decode map[string]float64 `json:"decode_step_s_ctx300"`
	}
	if err := json.Unmarshal([]byte(p.out.String()), &rep); err != nil {
		t.Fatalf("%v\n%s", err, p.out.String())
	}
	if rep.Plan.KVTokens != 16*rep.Plan.NumBlocks || rep.Plan.KVTokens <= 0 || rep.Plan.MaxConcurrency != float64(rep.Plan.KVTokens)/512 {
		t.Errorf("plan %+v", rep.Plan)
	}
	if !strings.Contains(strings.Join(rep.Log, "\n"), "GPU KV cache size: ") {
		t.Errorf("log lines %q", rep.Log)
	}
	if !(rep.Decode["1"] > 0.005 && rep.Decode["1"] < rep.Decode["64"] && rep.Decode["64"] < rep.Decode["256"]) {
		t.Errorf("decode step times %v", rep.Decode)
	}
	p = start(t, "sim", "plan", "--max-num-seqs", "256", "--max-num-batched-tokens", "16384", "--gpu-memory-utilization", "0.35")
	if code := p.wait(t, 30*time.Second); code != 1 || !strings.Contains(p.out.String(), "No available memory for the cache blocks") {
		t.Errorf("OOM plan: exit %d\n%s", code, p.out.String())
	}
}
