package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// simRunResult is the part of `llmlab sim run`'s JSON the tests read; the
// names are the ones the load generator shares.
type simRunResult struct {
	Completed          int      `json:"completed"`
	Requests           int      `json:"requests"`
	RPS                float64  `json:"rps"`
	E2EP50             float64  `json:"e2e_p50_s"`
	E2EP95             float64  `json:"e2e_p95_s"`
	E2EP99             float64  `json:"e2e_p99_s"`
	TTFTP50            float64  `json:"ttft_p50_s"`
	TTFTP95            float64  `json:"ttft_p95_s"`
	TPOTP50            float64  `json:"tpot_p50_s"`
	TPOTP95            float64  `json:"tpot_p95_s"`
	ITLP95             float64  `json:"itl_p95_s"`
	Preemptions        *int     `json:"preemptions"`
	ErrorRate          *float64 `json:"error_rate"`
	SLOMet             bool     `json:"slo_met"`
	KVTokens           int      `json:"kv_tokens"`
	MaxConcurrency     float64  `json:"max_concurrency"`
	RequestsUnfinished *int     `json:"requests_unfinished"`
	WallSeconds        float64  `json:"wall_seconds"`
	MaxRPSUnderSLO     float64  `json:"max_rps_under_slo"`
	Config             struct {
		MaxNumSeqs          int     `json:"max_num_seqs"`
		MaxNumBatchedTokens int     `json:"max_num_batched_tokens"`
		Rate                float64 `json:"rate"`
	} `json:"config"`
}

// simRun runs `llmlab sim run` and returns its exit code, stdout+stderr.
func simRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := start(t, append([]string{"sim", "run"}, args...)...)
	code := p.wait(t, 60*time.Second)
	return code, p.out.String()
}

func decodeSimRun(t *testing.T, out string) simRunResult {
	t.Helper()
	var r simRunResult
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value in the output:\n%s", out)
	}
	return r
}

func TestSimRunShort(t *testing.T) {
	code, out := simRun(t, "--rate", "5", "--duration", "30s", "--input-len", "200", "--output-len", "200",
		"--max-num-seqs", "128", "--max-num-batched-tokens", "8192")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	r := decodeSimRun(t, out)
	if r.Requests != 150 || r.Completed != 150 || r.RPS != 5 {
		t.Errorf("requests %d completed %d rps %v, want 150/150/5", r.Requests, r.Completed, r.RPS)
	}
	if r.Preemptions == nil || r.ErrorRate == nil || r.RequestsUnfinished == nil {
		t.Fatalf("required fields missing:\n%s", out)
	}
	if !r.SLOMet || *r.ErrorRate != 0 || *r.RequestsUnfinished != 0 {
		t.Errorf("light load: slo_met %v, error_rate %v, unfinished %v", r.SLOMet, *r.ErrorRate, *r.RequestsUnfinished)
	}
	// 200 tokens at a few ms per step: around a second end to end.
	if r.E2EP50 <= 0.5 || r.E2EP95 > 5 || r.E2EP50 > r.E2EP95 || r.E2EP95 > r.E2EP99 {
		t.Errorf("e2e p50 %v p95 %v p99 %v", r.E2EP50, r.E2EP95, r.E2EP99)
	}
	if r.TTFTP50 <= 0 || r.TTFTP95 < r.TTFTP50 || r.TPOTP50 <= 0 || r.TPOTP95 < r.TPOTP50 || r.ITLP95 <= 0 {
		t.Errorf("token latencies: %+v", r)
	}
	if r.KVTokens <= 0 || r.MaxConcurrency <= 0 || r.Config.MaxNumSeqs != 128 || r.Config.MaxNumBatchedTokens != 8192 {
		t.Errorf("plan/config: %+v", r)
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
	code, out := simRun(t, "--find-max", "--rate", "4", "--duration", "1m", "--arrival", "poisson", "--seed", "3",
		"--max-num-seqs", "64", "--max-num-batched-tokens", "4096")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	r := decodeSimRun(t, out)
	if r.MaxRPSUnderSLO <= 0 || !r.SLOMet || r.Config.Rate != r.MaxRPSUnderSLO {
		t.Errorf("max_rps_under_slo %v, slo_met %v at rate %v", r.MaxRPSUnderSLO, r.SLOMet, r.Config.Rate)
	}
	// Confirm with a plain run at that rate.
	code, out = simRun(t, "--rate", jsonNumber(r.MaxRPSUnderSLO), "--duration", "1m", "--arrival", "poisson", "--seed", "3",
		"--max-num-seqs", "64", "--max-num-batched-tokens", "4096")
	if code != 0 || !decodeSimRun(t, out).SLOMet {
		t.Errorf("rerun at the max rate: exit %d\n%s", code, out)
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
