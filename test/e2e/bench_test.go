package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
)

// startSim runs `llmlab sim` with no modelled load time and returns its URL.
func startSim(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	p := start(t, "sim", "--port", itoa(port), "--startup-seconds", "0")
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, p, url+"/health", 30*time.Second)
	return url
}

// llmlab bench against llmlab sim: a short run at a rate the simulated RTX
// 3050 serves easily must complete every request, meet the SLO, stream
// 200 tokens per request and save a run file that reads back.
func TestBenchAgainstSim(t *testing.T) {
	url := startSim(t)
	out := filepath.Join(t.TempDir(), "run.json")
	p := start(t, "bench", "--url", url, "--rate", "4", "--duration", "6s", "--ramp", "1s",
		"--profile", "e2e", "--out", out)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("bench exit %d:\n%s", code, p.out.String())
	}
	for _, want := range []string{"steady window", "ttft", "SLO (p95 e2e", "): MET", "run file: " + out} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, p.out.String())
		}
	}
	rf, err := runfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rf.Results
	if r == nil || r.Completed < 15 || r.ErrorRate != 0 || !rf.SLOMet {
		t.Fatalf("results %+v", r)
	}
	if r.OutputTokensMean != 200 || r.InputTokens != 200*r.Completed {
		t.Errorf("tokens: output mean %v (want 200), input %d (want 200 per request)", r.OutputTokensMean, r.InputTokens)
	}
	// The simulated 0.5B model decodes in milliseconds per token: TTFT and
	// TPOT must be positive and TPOT well below TTFT + e2e.
	if !(r.TTFTP50 > 0 && r.TPOTP50 > 0 && r.TPOTP50 < 0.1 && r.E2EP50 > r.TTFTP50+150*r.TPOTP50) {
		t.Errorf("implausible timings: ttft %v tpot %v e2e %v", r.TTFTP50, r.TPOTP50, r.E2EP50)
	}
	if rf.Profile != "e2e" || rf.Config.Model == "" || rf.Environment.GoVersion == "" {
		t.Errorf("run file header: profile %q model %q env %+v", rf.Profile, rf.Config.Model, rf.Environment)
	}

	// The chat endpoint (text prompt) with Poisson arrivals works too.
	out = filepath.Join(t.TempDir(), "chat.json")
	p = start(t, "bench", "--url", url, "--endpoint", "chat", "--arrival", "poisson", "--rate", "4",
		"--duration", "3s", "--output-len", "20", "--out", out)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("chat bench exit %d:\n%s", code, p.out.String())
	}
	rf, err = runfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if rf.Workload.Endpoint != "chat" || rf.Workload.Prompt != "text" || rf.Results.CompletedTotal == 0 ||
		rf.Results.FailedTotal != 0 || rf.Results.OutputTokensMean != 20 {
		t.Errorf("chat run: workload %+v results %+v", rf.Workload, rf.Results)
	}
}

// Ctrl-C ends a run early: what was measured is still summarised and
// saved, marked interrupted, and the exit status says it did not finish.
func TestBenchInterrupted(t *testing.T) {
	url := startSim(t)
	out := filepath.Join(t.TempDir(), "int.json")
	p := start(t, "bench", "--url", url, "--rate", "5", "--duration", "10m", "--ramp", "0s", "--out", out)
	time.Sleep(2 * time.Second)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.out.String())
	}
	rf, err := runfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rf.Results.Interrupted || rf.SLOMet || rf.Results.SentTotal < 5 || rf.Results.DurationS > 10 ||
		rf.Results.SteadyWindowS <= 0 || rf.Results.SteadyWindowS > 10 {
		t.Errorf("interrupted run: %+v", rf.Results)
	}
}

// --find-max with a small budget records each step and a maximum.
func TestBenchFindMaxAgainstSim(t *testing.T) {
	url := startSim(t)
	dir := t.TempDir()
	p := start(t, "bench", "--url", url, "--find-max", "--rate", "2", "--find-max-steps", "2",
		"--step-duration", "4s", "--runs-dir", dir, "--profile", "fm")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("bench exit %d:\n%s", code, p.out.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*_run01_fm.json"))
	if len(files) != 1 {
		t.Fatalf("run files %v, want one run01 file", files)
	}
	rf, err := runfile.Read(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if rf.Kind != bench.KindFindMax || rf.FindMax == nil || len(rf.FindMax.Steps) != 2 || rf.FindMax.MaxRate < 2 {
		t.Fatalf("find-max record: %+v", rf.FindMax)
	}
	if !strings.Contains(p.out.String(), "max rate:") {
		t.Errorf("no max rate in the summary:\n%s", p.out.String())
	}
}

func TestBenchUsageAndConnectionErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "0"},
		{"--arrival", "uniform"},
		{"--endpoint", "nope"},
		{"--warmup", "10s", "--duration", "5s"},
		{"extra-arg"},
		{"--duration", "0s"}, // not silently the 10-minute default
		{"--find-max", "--step-duration", "0s"},
		{"--find-max", "--find-max-steps", "0"},
		{"--find-max", "--duration", "30s"},     // each step lasts --step-duration
		{"--rate", "0.05", "--duration", "10s"}, // no request in the steady window
		{"--timeout", "0s"},                     // not silently the 60 s default
		{"--lag-threshold", "0s"},
		{"--max-send-lag", "0s"},
		{"--max-conns", "-1"},
		{"--burstiness", "0.5"}, // would be ignored: constant arrivals
		{"--arrival", "poisson", "--burstiness", "0.5"},
		{"--url", "127.0.0.1:8080"},
		{"--url", "ftp://127.0.0.1:8080", "--model", "m", "--duration", "1s"},
		{"--concurrency", "-1"},
		{"--concurrency", "4", "--rate", "3"},            // closed loop has no rate
		{"--concurrency", "4", "--find-max"},             // nor a rate to search
		{"--concurrency", "4", "--max-concurrency", "2"}, // open-loop cap
	} {
		p := start(t, append([]string{"bench", "--no-save"}, args...)...)
		if code := p.wait(t, 30*time.Second); code != 2 {
			t.Errorf("bench %v: exit %d, want 2 (usage)\n%s", args, code, p.out.String())
		}
	}
	// A scenario whose prompt file is missing is a usage error found before
	// the run, not a failure after the model look-up.
	sc := filepath.Join(t.TempDir(), "sc.yaml")
	if err := os.WriteFile(sc, []byte("name: x\ninput_tokens: 10\noutput_tokens: 10\nprompt: text\nprompt_file: /nonexistent/p.txt\nstream: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "bench", "--no-save", "--scenario", sc, "--model", "m", "--duration", "1s")
	if code := p.wait(t, 30*time.Second); code != 2 || !strings.Contains(p.out.String(), "prompt") {
		t.Errorf("missing prompt file: exit %d, want 2:\n%s", code, p.out.String())
	}
	// Nothing listens: the model look-up fails with a clear error, exit 1.
	port := freePort(t)
	p = start(t, "bench", "--no-save", "--url", fmt.Sprintf("http://127.0.0.1:%d", port), "--duration", "1s")
	if code := p.wait(t, 30*time.Second); code != 1 || !strings.Contains(p.out.String(), "discover model") {
		t.Errorf("exit %d, want 1 with a model discovery error:\n%s", code, p.out.String())
	}
	// With --model given, every request fails as a connection error and the
	// run still reports (and fails the SLO) rather than crashing; nothing
	// completed, so it exits 3.
	out := filepath.Join(t.TempDir(), "refused.json")
	p = start(t, "bench", "--out", out, "--model", "m", "--url", fmt.Sprintf("http://127.0.0.1:%d", port),
		"--duration", "1s", "--ramp", "0s", "--rate", "5")
	if code := p.wait(t, 30*time.Second); code != 3 || !strings.Contains(p.out.String(), "no request of the steady window completed") {
		t.Fatalf("exit %d, want 3:\n%s", code, p.out.String())
	}
	rf, err := runfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if rf.SLOMet || rf.Results.Errors[bench.ClassConnection] != 5 {
		t.Errorf("errors %v slo_met %v, want 5 connection errors", rf.Results.Errors, rf.SLOMet)
	}
	if _, err := os.Stat(out); err != nil {
		t.Error(err)
	}
	// A run file that cannot be written is an error (exit 1), but the
	// figures of the run are still printed, not lost with it.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p = start(t, "bench", "--out", filepath.Join(blocker, "run.json"), "--model", "m",
		"--url", fmt.Sprintf("http://127.0.0.1:%d", port), "--duration", "1s", "--ramp", "0s", "--rate", "5")
	if code := p.wait(t, 30*time.Second); code != 1 || !strings.Contains(p.out.String(), "SLO (p95") ||
		!strings.Contains(p.out.String(), "run file") {
		t.Errorf("exit %d, want 1 with the summary and the write error:\n%s", code, p.out.String())
	}
}

// --json prints the run file alone on stdout; --concurrency runs a closed
// loop; --fail-on-slo turns a missed SLO into exit 4.
func TestBenchJSONClosedLoopAndFailOnSLO(t *testing.T) {
	url := startSim(t)
	code, stdout, stderr := runSplit(t, "bench", "--url", url, "--concurrency", "4", "--duration", "4s", "--ramp", "0s",
		"--no-save", "--json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	var rf runfile.RunFile
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&rf); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON object (%v):\n%s", err, stdout)
	}
	if rf.Source != runfile.SourceLive || rf.Config.Concurrency != 4 || rf.Config.Arrival != "closed_loop" ||
		rf.Results == nil || rf.Results.Completed == 0 || rf.Results.SendLagP99 > 1e-3 {
		t.Errorf("closed-loop run file: %+v %+v", rf.Config, rf.Results)
	}
	// An SLO no server meets: the run succeeds but misses it.
	sloFile := filepath.Join(t.TempDir(), "slo.yaml")
	if err := os.WriteFile(sloFile, []byte("slo:\n  p95_e2e_seconds: 0.001\n  max_error_rate: 0.001\nmeasurement:\n  duration: 10m\nworkload:\n  input_tokens: 200\n  output_tokens: 200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"bench", "--url", url, "--rate", "4", "--duration", "3s", "--ramp", "0s", "--no-save", "--slo", sloFile}
	if code, _, stderr := runSplit(t, args...); code != 0 {
		t.Errorf("missed SLO without --fail-on-slo: exit %d, want 0\n%s", code, stderr)
	}
	if code, _, stderr := runSplit(t, append(args, "--fail-on-slo")...); code != 4 || !strings.Contains(stderr, "fail-on-slo") {
		t.Errorf("missed SLO with --fail-on-slo: exit %d, want 4\n%s", code, stderr)
	}
}

// A generator that falls behind (here: it may never be late, so it sends
// nothing) makes the run invalid: exit 5, the summary says so, and the run
// file counts generator errors apart from the server's errors.
func TestBenchInvalidRunExit5(t *testing.T) {
	url := startSim(t)
	out := filepath.Join(t.TempDir(), "invalid.json")
	p := start(t, "bench", "--url", url, "--out", out, "--rate", "5", "--duration", "2s", "--ramp", "0s",
		"--max-send-lag", "1ns", "--fail-on-slo")
	if code := p.wait(t, 30*time.Second); code != 5 || !strings.Contains(p.out.String(), "INVALID RUN") {
		t.Fatalf("exit %d, want 5 with INVALID RUN:\n%s", code, p.out.String())
	}
	rf, err := runfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rf.Results
	if !r.Invalid || r.SLOMet || r.GeneratorErrors[bench.ClassGenLag] != 10 || r.Failed != 0 || r.ErrorRate != 0 {
		t.Errorf("invalid %v slo_met %v generator errors %v failed %d error rate %v",
			r.Invalid, r.SLOMet, r.GeneratorErrors, r.Failed, r.ErrorRate)
	}
	// 5 req/s × the 60 s timeout.
	if rf.Config.MaxConns != 300 || rf.Config.MaxSendLagS != 1e-9 {
		t.Errorf("config max_conns %d max_send_lag_s %v", rf.Config.MaxConns, rf.Config.MaxSendLagS)
	}
}
