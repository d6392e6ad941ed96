package bench

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/testsupport"
)

func TestMain(m *testing.M) {
	// perf_test.go re-executes this binary as its endpoint process.
	if spec := os.Getenv(perfServeEnv); spec != "" {
		servePerf(spec)
	}
	goleak.VerifyTestMain(m)
}

// scenario returns the standard scenario with n output tokens.
func scenario(t testing.TB, out int) Scenario {
	t.Helper()
	sc, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	sc.OutputTokens = out
	return sc
}

func testSLO(p95 float64) slo.Spec {
	s, _ := slo.Default()
	s.SLO.P95E2ESeconds = p95
	return s
}

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// near checks got (seconds) lies in [want−below, want+above].
func near(t *testing.T, name string, got float64, want, below, above time.Duration) {
	t.Helper()
	lo, hi := (want - below).Seconds(), (want + above).Seconds()
	if got < lo || got > hi {
		t.Errorf("%s = %.2f ms, want %.2f ms (in [%.2f, %.2f] ms)", name, got*1e3, want.Seconds()*1e3, lo*1e3, hi*1e3)
	} else {
		t.Logf("%s = %.2f ms (server: %.2f ms)", name, got*1e3, want.Seconds()*1e3)
	}
}

// The measured TTFT, TPOT, ITL and end-to-end latency match a server with
// known timings. Lower bounds are tight (a measurement cannot be shorter
// than what the server did, minus the histogram's 0.1 % precision); upper
// bounds allow a few ms for loopback, scheduling and the race detector.
func TestTimingsMatchKnownServer(t *testing.T) {
	const ttft, per, out = 40 * time.Millisecond, 4 * time.Millisecond, 25
	srv := &testServer{TTFT: ttft, PerToken: per}
	url := srv.start(t)
	res := run(t, Config{
		URL: url, Scenario: scenario(t, out), Rate: 20, Duration: 2 * time.Second,
		SLO: testSLO(5), Seed: 7,
	})
	if res.Model != "test-model" {
		t.Errorf("model %q, want the one /v1/models lists", res.Model)
	}
	if res.Completed != 40 || res.Failed != 0 {
		t.Fatalf("completed %d failed %d (%v), want 40 and 0", res.Completed, res.Failed, res.ErrorsTotal)
	}
	e2e := ttft + (out-1)*per
	// The medians' upper bounds allow for loopback and scheduling; the
	// tails' only rule out nonsense, since a busy machine (CI runs the
	// race-enabled suite on two cores) delays a few requests by tens of ms.
	slack, tailSlack := 20*time.Millisecond, 100*time.Millisecond
	near(t, "ttft p50", res.TTFTP50, ttft, time.Millisecond, slack)
	near(t, "ttft p95", res.TTFTP95, ttft, time.Millisecond, tailSlack)
	near(t, "tpot p50", res.TPOTP50, per, 100*time.Microsecond, time.Millisecond)
	near(t, "itl p50", res.ITLP50, per, time.Millisecond, 2*time.Millisecond)
	near(t, "e2e p50", res.E2EP50, e2e, time.Millisecond, slack)
	near(t, "e2e p95", res.E2EP95, e2e, time.Millisecond, tailSlack)
	if res.OutputTokens != 40*out || res.InputTokens != 40*200 {
		t.Errorf("tokens in/out %d/%d, want %d/%d from usage", res.InputTokens, res.OutputTokens, 40*200, 40*out)
	}
	if !res.SLOMet || res.GoodputFrac != 1 {
		t.Errorf("slo_met %v goodput fraction %v, want true and 1", res.SLOMet, res.GoodputFrac)
	}
	if math.Abs(res.ScheduledRate-20) > 0.01 {
		t.Errorf("scheduled rate %.3f, want 20", res.ScheduledRate)
	}
}

// A server that handles one request at a time makes later requests wait;
// counted from the scheduled send time, e2e grows by the backlog. Requests
// arrive every 50 ms and each takes 100 ms, so request k (0-based) ends at
// (k+1)·100 ms and its e2e is 100 + 50k ms. The same must hold when the
// client itself holds requests back (--max-concurrency 1): the wait for a
// slot is the client's queue, and it is not hidden.
func TestStallGrowsLatencyFromScheduledTime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		serial bool
		conc   int
	}{
		{"server serializes", true, 0},
		{"client max concurrency 1", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &testServer{TTFT: 100 * time.Millisecond, Serial: tc.serial}
			url := srv.start(t)
			res := run(t, Config{
				URL: url, Scenario: scenario(t, 1), Rate: 20, Duration: time.Second,
				MaxConcurrency: tc.conc, SLO: testSLO(0.5),
			})
			if res.Completed != 20 {
				t.Fatalf("completed %d, want 20 (%v)", res.Completed, res.ErrorsTotal)
			}
			// k = 19: 1050 ms; mean over k = 0..19: 575 ms. The lower
			// bounds are what decides: timed from the actual send, the
			// client-side case would read 100 ms. Each hand-over between
			// requests costs the server a little and adds up along the
			// queue, more so on a busy machine, so the upper bounds only
			// rule out nonsense and do not depend on machine speed.
			near(t, "e2e max", res.E2EMax, 1050*time.Millisecond, 5*time.Millisecond, time.Second)
			near(t, "e2e mean", res.E2EMean, 575*time.Millisecond, 5*time.Millisecond, 600*time.Millisecond)
			near(t, "e2e p50", res.E2EP50, 575*time.Millisecond, 30*time.Millisecond, 600*time.Millisecond)
			if res.SLOMet {
				t.Error("slo_met with p95 ≈ 1 s against a 0.5 s objective")
			}
			// A dispatcher that waited for the server would lag by
			// hundreds of ms; scheduling noise on a busy machine by tens.
			if res.SendLagP99 > 0.2 {
				t.Errorf("send lag p99 %.1f ms: the dispatcher waited for the server", res.SendLagP99*1e3)
			}
		})
	}
}

func TestErrorsAreClassified(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	for _, tc := range []struct {
		name  string
		srv   *testServer
		url   string
		class string
	}{
		{"500", &testServer{Mode: "status", Status: 500}, "", "http_500"},
		{"429", &testServer{Mode: "status", Status: 429}, "", "http_429"},
		{"503", &testServer{Mode: "status", Status: 503}, "", "http_503"},
		{"error event", &testServer{Mode: "stream_error"}, "", ClassStreamError},
		{"no [DONE]", &testServer{Mode: "truncate"}, "", ClassIncompleteStream},
		{"connection dropped", &testServer{Mode: "abort"}, "", ClassIncompleteStream},
		{"short stream", &testServer{Mode: "short"}, "", ClassShortStream},
		{"client timeout", &testServer{Mode: "hang"}, "", ClassTimeout},
		{"200 JSON instead of a stream", &testServer{Mode: "json_ok"}, "", ClassBadResponse},
		{"200 JSON error body", &testServer{Mode: "json_error"}, "", ClassStreamError},
		{"200 HTML body", &testServer{Mode: "html"}, "", ClassBadResponse},
		{"connection refused", nil, closed(), ClassConnection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.srv != nil {
				url = tc.srv.start(t)
			}
			// Only the hanging server needs a short timeout; the others
			// answer at once, and a short one would turn a late answer on
			// a busy machine into a timeout.
			timeout := 5 * time.Second
			if tc.class == ClassTimeout {
				timeout = 200 * time.Millisecond
			}
			res := run(t, Config{
				URL: url, Model: "m", Scenario: scenario(t, 4), Rate: 10, Duration: 500 * time.Millisecond,
				Timeout: timeout, SLO: testSLO(5),
			})
			if res.Requests != 5 || res.Failed != 5 || res.Errors[tc.class] != 5 || len(res.Errors) != 1 {
				t.Fatalf("requests %d failed %d errors %v, want 5 failures all %s", res.Requests, res.Failed, res.Errors, tc.class)
			}
			if res.ErrorRate != 1 || res.SLOMet || res.Completed != 0 {
				t.Errorf("error rate %v slo_met %v completed %d", res.ErrorRate, res.SLOMet, res.Completed)
			}
		})
	}
}

// Warm-up and cool-down requests count in the totals but not in the
// steady-state figures.
func TestSteadyWindowExcludesWarmupAndCooldown(t *testing.T) {
	srv := &testServer{TTFT: time.Millisecond}
	url := srv.start(t)
	res := run(t, Config{
		URL: url, Scenario: scenario(t, 2), Rate: 20, Duration: 2 * time.Second,
		Warmup: 500 * time.Millisecond, Cooldown: 500 * time.Millisecond, SLO: testSLO(5),
	})
	if res.SentTotal != 40 || res.CompletedTotal != 40 {
		t.Errorf("sent %d completed %d in all, want 40", res.SentTotal, res.CompletedTotal)
	}
	if res.Requests != 20 || res.Completed != 20 {
		t.Errorf("steady requests %d completed %d, want 20 (1 s of 2 s at 20/s)", res.Requests, res.Completed)
	}
	if res.SteadyWindowS != 1 || math.Abs(res.RPS-20) > 1.01 {
		t.Errorf("steady window %v s, rps %.2f; want 1 s and 20±1", res.SteadyWindowS, res.RPS)
	}
}

func TestCancelStopsRunAndReturnsPartialResult(t *testing.T) {
	srv := &testServer{Mode: "hang"}
	url := srv.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 50, Duration: time.Minute,
		Warmup: 10 * time.Second, SLO: testSLO(5)})
	if err == nil || !res.Interrupted {
		t.Fatalf("err %v interrupted %v, want an interruption", err, res.Interrupted)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Run took %v after cancellation", time.Since(start))
	}
	if res.SteadyWindowS != 0 || res.RPS != 0 || res.DurationS > 1 {
		t.Errorf("stopped before the warm-up ended: window %v s, rps %v, duration %v s", res.SteadyWindowS, res.RPS, res.DurationS)
	}
	if res.CanceledTotal == 0 || res.FailedTotal != 0 {
		t.Errorf("canceled %d failed %d: canceled requests must not count as errors", res.CanceledTotal, res.FailedTotal)
	}
}

func TestRunFileRoundTrip(t *testing.T) {
	srv := &testServer{TTFT: time.Millisecond, PerToken: time.Millisecond}
	url := srv.start(t)
	cfg := Config{URL: url, Scenario: scenario(t, 3), Rate: 10, Duration: 300 * time.Millisecond, SLO: testSLO(5), Profile: "safe"}
	res := run(t, cfg)
	rf, err := NewRunFile(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p1, err := runfile.Save(dir, &rf)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := runfile.Save(dir, &rf)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Format("2006-01-02")
	if filepath.Base(p1) != day+"_run01_safe.json" || filepath.Base(p2) != day+"_run02_safe.json" {
		t.Errorf("run files %s, %s; want run01 and run02 of today", p1, p2)
	}
	got, err := runfile.Read(p2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rf) {
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(rf)
		t.Errorf("round trip differs:\n got %s\nwant %s", a, b)
	}
	if got.Results.Model != "test-model" || got.Workload.Model != "test-model" || got.Config.Model != "test-model" {
		t.Errorf("discovered model not recorded: %+v", got.Config)
	}
	// The shared field names are the contract with `llmlab sim run`.
	raw, err := os.ReadFile(p2)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	_ = json.Unmarshal(raw, &m)
	for _, k := range []string{"completed", "rps", "e2e_p50_s", "e2e_p95_s", "e2e_p99_s", "ttft_p50_s", "ttft_p95_s",
		"tpot_p50_s", "tpot_p95_s", "itl_p95_s", "error_rate", "slo_met"} {
		if _, ok := m["results"][k]; !ok {
			t.Errorf("results lacks shared field %q", k)
		}
	}
	if err := runfile.Write(filepath.Join(dir, "x", "out.json"), &rf); err != nil {
		t.Fatal(err)
	}
	if rf.ID != "out" {
		t.Errorf("ID %q after --out, want the file's stem", rf.ID)
	}
	var sb strings.Builder
	if err := runfile.WriteSummary(&sb, rf); err != nil || !strings.Contains(sb.String(), "SLO") {
		t.Errorf("summary: %v\n%s", err, sb.String())
	}
}

// A server of fixed capacity (2 slots × 100 ms = 20 req/s) with a 0.3 s
// objective: rates well under 20/s pass, well over fail, and the search
// stays within its step budget.
func TestFindMaxBracketsCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several 1 s steps")
	}
	srv := &testServer{TTFT: 100 * time.Millisecond, Slots: 2}
	url := srv.start(t)
	var seen int
	fm, err := FindMax(context.Background(), Config{
		URL: url, Scenario: scenario(t, 1), SLO: testSLO(0.3), Timeout: 5 * time.Second,
	}, FindMaxOptions{StartRate: 4, MaxSteps: 6, StepDuration: 1500 * time.Millisecond, OnStep: func(FindMaxStep) { seen++ }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range fm.Steps {
		t.Logf("step %d rate %.3g pass %v p95 %.3f", s.Step, s.Rate, s.Pass, s.Result.E2EP95)
	}
	if len(fm.Steps) > 6 || seen != len(fm.Steps) {
		t.Errorf("%d steps (%d reported), budget 6", len(fm.Steps), seen)
	}
	if fm.MaxRate < 12 || fm.MaxRate > 24 || fm.FailRate <= fm.MaxRate || fm.FailRate > 40 {
		t.Errorf("max %.3g fail %.3g, want max in [12, 24] below the failing rate", fm.MaxRate, fm.FailRate)
	}
	rf, err := NewFindMaxRunFile(Config{URL: url, Scenario: scenario(t, 1), SLO: testSLO(0.3)}, fm)
	if err != nil {
		t.Fatal(err)
	}
	if rf.Kind != KindFindMax || rf.Results == nil || rf.Config.Rate != fm.MaxRate || !rf.SLOMet {
		t.Errorf("find-max run file: kind %s rate %v slo_met %v", rf.Kind, rf.Config.Rate, rf.SLOMet)
	}
}

// The recorder keeps no per-request state: recording 300k more outcomes
// must not grow the heap (even 8 bytes a request would be 2.4 MB).
func TestRecorderMemoryIsBounded(t *testing.T) {
	rec := newRecorder(0, time.Hour, 5*time.Second)
	itls := make([]time.Duration, 20)
	for i := range itls {
		itls[i] = time.Duration(i) * time.Microsecond * 37
	}
	feed := func(n int) {
		for i := range n {
			at := time.Duration(i) * time.Millisecond
			o := outcome{sched: at, sent: at, end: at + time.Second, ttft: 100 * time.Millisecond, itls: itls, output: 20, prompt: 200}
			if i%100 == 0 {
				o.class = "http_500"
			}
			rec.started(o.sched, o.sent)
			rec.record(&o)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	feed(10_000)
	before := heap()
	feed(300_000)
	after := heap()
	if after > before+1<<20 {
		t.Errorf("heap grew from %d to %d bytes over 300k requests", before, after)
	}
	if rec.completed != 310_000-3_100 {
		t.Errorf("completed %d", rec.completed)
	}
}

func TestDiscoverModelError(t *testing.T) {
	srv := &testServer{}
	url := srv.start(t)
	tr := NewTransport()
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if m, err := DiscoverModel(context.Background(), c, url, nil); err != nil || m != "test-model" {
		t.Fatalf("got %q, %v", m, err)
	}
	if _, err := DiscoverModel(context.Background(), c, url+"/nothing", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("want a 404 error, got %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := Config{URL: "http://x", Model: "m", Scenario: scenario(t, 2), Rate: 1, Duration: time.Second}
	bad := []func(*Config){
		func(c *Config) { c.Rate = 0 },
		func(c *Config) { c.Ramp = 2 * time.Second },
		func(c *Config) { c.Warmup, c.Cooldown = 600*time.Millisecond, 400*time.Millisecond },
		func(c *Config) { c.Arrival = "uniform" },
		func(c *Config) { c.Scenario.Endpoint = "chat" }, // token prompt on chat
		func(c *Config) { c.Scenario.InputTokens = 0 },
		func(c *Config) { c.URL = "127.0.0.1:8080" }, // no scheme
		func(c *Config) { c.URL = "ftp://x" },
		func(c *Config) { c.URL = "http://" },
		func(c *Config) { c.LagThreshold = -time.Millisecond },
		func(c *Config) { c.Arrival, c.Burstiness = arrival.Gamma, math.Inf(1) },
		func(c *Config) { c.Rate = 0.5 }, // half a request expected: nothing to measure
	}
	if err := CheckConfig(base); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for i, f := range bad {
		c := base
		f(&c)
		if err := CheckConfig(c); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

// rps is the rate the server sustained for the steady requests: the
// arrival rate when it keeps up, even on a run not much longer than one
// request's latency, and its capacity when it does not.
func TestRPSIsServedRate(t *testing.T) {
	t.Run("keeps up, long latency", func(t *testing.T) {
		srv := &testServer{TTFT: 500 * time.Millisecond}
		url := srv.start(t)
		res := run(t, Config{URL: url, Scenario: scenario(t, 1), Rate: 20, Duration: time.Second, SLO: testSLO(5)})
		if res.Completed != 20 || math.Abs(res.RPS-20) > 2 {
			t.Errorf("completed %d rps %.2f, want 20 and 20±2", res.Completed, res.RPS)
		}
	})
	t.Run("keeps up, latency falls over the run", func(t *testing.T) {
		// As when a run ends and the batch drains: the last requests are
		// served faster than the first, which squeezes the span of the
		// ends. The cohort still arrived at 20/s; no more was sustained.
		srv := &testServer{TTFTOf: func(n int64) time.Duration { return time.Duration(19-min(n, 19)) * 15 * time.Millisecond }}
		url := srv.start(t)
		res := run(t, Config{URL: url, Scenario: scenario(t, 1), Rate: 20, Duration: time.Second, SLO: testSLO(5)})
		if res.Completed != 20 || res.RPS > 20.5 || res.RPS < 18 {
			t.Errorf("completed %d rps %.2f, want 20 and at most the arrival rate 20", res.Completed, res.RPS)
		}
	})
	t.Run("overloaded", func(t *testing.T) {
		// 2 slots × 100 ms: 20 req/s of capacity, offered 40.
		srv := &testServer{TTFT: 100 * time.Millisecond, Slots: 2}
		url := srv.start(t)
		res := run(t, Config{URL: url, Scenario: scenario(t, 1), Rate: 40, Duration: 2 * time.Second, SLO: testSLO(5)})
		if res.Completed != 80 || res.RPS < 17 || res.RPS > 21 {
			t.Errorf("completed %d rps %.2f, want 80 and the server's 20 req/s", res.Completed, res.RPS)
		}
		if res.GoodputRPS != res.RPS || res.E2EMax < 1.5 {
			t.Errorf("goodput %.2f (rps %.2f), e2e max %.2f s: the backlog must show", res.GoodputRPS, res.RPS, res.E2EMax)
		}
	})
}

// Without streaming there is no first-token time, so no TPOT: a request
// must not add a TPOT of zero ((e2e − ttft) with ttft = e2e).
func TestNonStreamedHasNoTPOT(t *testing.T) {
	srv := &testServer{Mode: "json_ok"}
	url := srv.start(t)
	sc := scenario(t, 4)
	sc.Stream = false
	res := run(t, Config{URL: url, Scenario: sc, Rate: 20, Duration: 500 * time.Millisecond, SLO: testSLO(5)})
	if res.Completed != 10 || res.OutputTokens != 40 {
		t.Fatalf("completed %d output tokens %d (%v), want 10 and 40", res.Completed, res.OutputTokens, res.ErrorsTotal)
	}
	if res.TTFTP50 != res.E2EP50 || res.TPOT() != (slo.Dist{}) || res.ITL() != (slo.Dist{}) {
		t.Errorf("ttft p50 %v e2e p50 %v, tpot %+v itl %+v; want ttft = e2e and no tpot or itl", res.TTFTP50, res.E2EP50, res.TPOT(), res.ITL())
	}
}

// A search cut short by Ctrl-C lists its last step as interrupted, not as
// a failure of the server at that rate.
func TestFindMaxSummaryMarksInterruptedStep(t *testing.T) {
	fm := FindMaxResult{MaxRate: 2, StepDurationS: 10, MaxSteps: 8, Steps: []FindMaxStep{
		{Step: 1, Rate: 2, Pass: true, Result: Result{SLOMet: true}},
		{Step: 2, Rate: 4, Result: Result{Interrupted: true}},
	}}
	rf, err := NewFindMaxRunFile(Config{URL: "http://x", Model: "m", Scenario: scenario(t, 2), SLO: testSLO(5)}, fm)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := runfile.WriteSummary(&sb, rf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(sb.String(), "\n")
	var step2 string
	for _, l := range lines {
		if strings.HasPrefix(l, "2 ") {
			step2 = l
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(step2), "interrupted") {
		t.Errorf("step 2 row %q, want it marked interrupted:\n%s", step2, sb.String())
	}
}

// A search that ends on an error still reports what its steps found: here
// every step fails and halving reaches a rate with no request to send.
func TestFindMaxErrorKeepsFindings(t *testing.T) {
	srv := &testServer{Mode: "status", Status: 500}
	url := srv.start(t)
	fm, err := FindMax(context.Background(), Config{URL: url, Model: "m", Scenario: scenario(t, 1), SLO: testSLO(5)},
		FindMaxOptions{StartRate: 4, MaxSteps: 6, StepDuration: 500 * time.Millisecond})
	if err == nil || len(fm.Steps) != 2 {
		t.Fatalf("err %v after %d steps, want an error after 2 (4 and 2 req/s fail, 1 req/s sends nothing)", err, len(fm.Steps))
	}
	if fm.MaxRate != 0 || fm.FailRate != 2 {
		t.Errorf("max %v fail %v, want 0 and 2", fm.MaxRate, fm.FailRate)
	}
}

// The progress line fits the terminal: "\r" only returns to the start of
// the last row, so a wrapped line would leave a trail of rows.
func TestProgressLineFitsWidth(t *testing.T) {
	srv := &testServer{TTFT: time.Millisecond}
	url := srv.start(t)
	var buf testsupport.SyncBuffer
	run(t, Config{URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 20, Duration: 600 * time.Millisecond,
		SLO: testSLO(5), Progress: &buf, ProgressInterval: 100 * time.Millisecond, ProgressWidth: 40})
	lines := strings.Split(buf.String(), "\r\033[K")
	if len(lines) < 4 {
		t.Fatalf("%d progress updates in %q", len(lines), buf.String())
	}
	for _, l := range lines {
		if len(l) > 39 {
			t.Errorf("progress line of %d columns on a 40-column terminal: %q", len(l), l)
		}
	}
}

// A closed loop of 3 clients against a server with a fixed 50 ms latency
// completes about 3 / 50 ms requests per second, sends no faster than the
// answers come (no send lag), and records itself as closed-loop. The
// bounds are loose: only the count per client's round trip matters.
func TestClosedLoopRun(t *testing.T) {
	srv := &testServer{TTFT: 50 * time.Millisecond}
	url := srv.start(t)
	cfg := Config{URL: url, Model: "m", Scenario: scenario(t, 2), Concurrency: 3, Duration: time.Second, SLO: testSLO(5)}
	res := run(t, cfg)
	// Each client makes at most one request per 50 ms: 20 in a second.
	if res.Completed == 0 || res.SentTotal > 3*20+3 || res.FailedTotal != 0 {
		t.Errorf("completed %d sent %d failed %d", res.Completed, res.SentTotal, res.FailedTotal)
	}
	if res.SendLagP99 > 0.001 || res.ScheduledRate != 0 || res.GeneratorBehind {
		t.Errorf("send lag p99 %v, scheduled rate %v, behind %v", res.SendLagP99, res.ScheduledRate, res.GeneratorBehind)
	}
	rf, err := NewRunFile(cfg, res)
	if err != nil || rf.Config.Concurrency != 3 || rf.Config.Rate != 0 || rf.Config.Arrival != "closed_loop" {
		t.Errorf("run file config %+v (%v)", rf.Config, err)
	}
}

// Config.Header (the place for credentials) reaches the server on the
// model look-up.
func TestHeaderIsSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"m","object":"model"}]}`))
	}))
	defer srv.Close()
	if _, err := DiscoverModel(context.Background(), srv.Client(), srv.URL, nil); err == nil {
		t.Fatal("look-up without the header passed")
	}
	if m, err := DiscoverModel(context.Background(), srv.Client(), srv.URL, http.Header{"Authorization": {"Bearer k"}}); err != nil || m != "m" {
		t.Errorf("with the header: %q, %v", m, err)
	}
}
