package offline

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/slo"
)

var m0 = slo.Objective{P95E2ESeconds: 5, MaxErrorRate: 0.001}

func profile(seqs, tokens int) engine.Config {
	return engine.Config{
		GPU: engine.DefaultGPU, ModelSpec: engine.DefaultModelSpec, MaxModelLen: 512,
		GPUMemoryUtilization: 0.9, MaxNumSeqs: seqs, MaxNumBatchedTokens: tokens,
		EnableChunkedPrefill: true, BlockSize: 16,
	}
}

func opts(cfg engine.Config, rate float64, d time.Duration) Options {
	return Options{Engine: cfg, Rate: rate, Duration: d, InputLen: 200, OutputLen: 200, SLO: m0}
}

// TestIsolatedRequestTimeline checks the latencies of requests that never
// overlap against the step model directly: TTFT is the prefill step, every
// later token one decode step with a growing context.
func TestIsolatedRequestTimeline(t *testing.T) {
	cfg := profile(128, 8192)
	res, err := Run(opts(cfg, 0.1, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := engine.NewStepModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ttft := sm.Duration(200, 0, 200).Seconds() + sm.FrontendRequestSeconds() // the API server's cost first
	e2e := ttft
	for k := 1; k < 200; k++ {
		e2e += sm.Duration(0, 1, 200+k).Seconds()
	}
	if res.Requests != 6 || res.Completed != 6 || res.RequestsUnfinished != 0 || res.Failed != 0 {
		t.Fatalf("counts: %+v", res)
	}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %.9f, want %.9f", name, got, want)
		}
	}
	near("ttft_p95", res.TTFTP95, ttft)
	near("e2e_p50", res.E2EP50, e2e)
	near("e2e_p99", res.E2EP99, e2e)
	near("tpot_p50", res.TPOTP50, (e2e-ttft)/199)
	near("rps", res.RPS, 0.1)
	if !res.SLOMet || res.Preemptions != 0 || res.PeakRunning != 1 {
		t.Errorf("slo_met %v, preemptions %d, peak running %d", res.SLOMet, res.Preemptions, res.PeakRunning)
	}
	if res.Steps != 6*200 {
		t.Errorf("steps = %d, want 1200", res.Steps)
	}
}

func TestRunLightLoad(t *testing.T) {
	res, err := Run(opts(profile(128, 8192), 3, 2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 360 || res.Completed != 360 || res.ErrorRate != 0 || !res.SLOMet {
		t.Errorf("light load: requests %d completed %d errors %v slo %v", res.Requests, res.Completed, res.ErrorRate, res.SLOMet)
	}
	// Sustained rps of the steady cohort: its arrival rate, less the spread
	// of its finishing times (≤ 0.1 %).
	if res.RPS > 3 || res.RPS < 3*0.999 {
		t.Errorf("rps = %v, want 3 (within 0.1 %%, never above)", res.RPS)
	}
	if !(res.TTFTP50 > 0 && res.TTFTP50 <= res.TTFTP95 && res.E2EP50 <= res.E2EP95 && res.E2EP95 <= res.E2EP99 && res.E2EP99 <= res.E2EMax) {
		t.Errorf("percentiles out of order: %+v", res)
	}
	// Batching makes per-token time longer than the batch-1 floor but the
	// decode steps stay below the 25 ms/token a 5 s SLO allows.
	sm, _ := engine.NewStepModel(profile(128, 8192))
	if res.TPOTP50 < sm.Seconds(0, 1, 200) || res.TPOTP95 > 0.025 {
		t.Errorf("tpot p50 %v p95 %v", res.TPOTP50, res.TPOTP95)
	}
	if res.ITLP95 < res.ITLP50 {
		t.Errorf("itl p95 %v < p50 %v", res.ITLP95, res.ITLP50)
	}
	if res.KVTokens <= 0 || res.MaxConcurrency <= 0 || res.Config.MaxNumSeqs != 128 {
		t.Errorf("plan not reported: %+v", res)
	}
}

func TestDeterministic(t *testing.T) {
	for _, arrival := range []string{ArrivalConstant, ArrivalPoisson} {
		o := opts(profile(64, 4096), 15, time.Minute)
		o.Arrival, o.Seed = arrival, 7
		a, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Run(o)
		a.WallSeconds, b.WallSeconds = 0, 0
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs differ:\n%+v\n%+v", arrival, a, b)
		}
	}
	o := opts(profile(64, 4096), 15, time.Minute)
	o.Arrival = ArrivalPoisson
	o.Seed = 1
	a, _ := Run(o)
	o.Seed = 2
	b, _ := Run(o)
	if a.E2EP95 == b.E2EP95 && a.Requests == b.Requests {
		t.Error("different Poisson seeds gave the same run")
	}
	// A Poisson stream has about rate × duration arrivals.
	if a.Requests < 800 || a.Requests > 1000 {
		t.Errorf("poisson arrivals = %d, want ≈ 900", a.Requests)
	}
}

// TestOverloadEnds: far above capacity the run still ends, shortly after
// the drain cap, and requests still in flight count against the SLO.
func TestOverloadEnds(t *testing.T) {
	o := opts(profile(64, 4096), 200, time.Minute)
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.SLOMet {
		t.Error("200 RPS met the SLO on a 4 GB card")
	}
	if res.RequestsUnfinished == 0 || res.Completed+res.RequestsUnfinished != res.Requests {
		t.Errorf("requests %d = completed %d + unfinished %d?", res.Requests, res.Completed, res.RequestsUnfinished)
	}
	limit := o.Duration.Seconds() + DrainFactor*m0.P95E2ESeconds
	if res.VirtualSeconds < limit || res.VirtualSeconds > limit+1 {
		t.Errorf("virtual time %v, want just past the cap %v", res.VirtualSeconds, limit)
	}
	if res.E2EP95 < DrainFactor*m0.P95E2ESeconds {
		t.Errorf("e2e p95 %v below what unfinished requests had already waited", res.E2EP95)
	}
	if res.PeakRunning != 64 {
		t.Errorf("peak running %d, want max_num_seqs 64", res.PeakRunning)
	}
}

func TestPreemptionUnderTightKV(t *testing.T) {
	// The aggressive profile at util 0.48 keeps ~16k KV tokens for 192
	// seats: above capacity requests outgrow the pool and get preempted.
	cfg := profile(192, 12288)
	cfg.GPUMemoryUtilization = 0.48
	res, err := Run(opts(cfg, 30, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res.Preemptions == 0 || res.PeakKVUsage < 0.95 {
		t.Errorf("preemptions %d, peak KV usage %.2f", res.Preemptions, res.PeakKVUsage)
	}
}

func TestErrorsAndRejections(t *testing.T) {
	o := opts(profile(64, 4096), 5, 10*time.Second)
	o.InputLen = 400 // 400 + 200 > max_model_len 512: refused like vLLM's 400
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != res.Requests || res.ErrorRate != 1 || res.SLOMet || res.Completed != 0 {
		t.Errorf("over-long requests: %+v", res)
	}
	oom := profile(256, 16384)
	oom.GPUMemoryUtilization = 0.35 // 1.33 GiB: weights + activation peak leave nothing
	if _, err := Run(opts(oom, 1, time.Minute)); err == nil ||
		!strings.Contains(err.Error(), "No available memory for the cache blocks") {
		t.Errorf("OOM config: %v", err)
	}
	for name, o := range map[string]Options{
		"zero rate":   opts(profile(64, 4096), 0, time.Minute),
		"no duration": opts(profile(64, 4096), 1, 0),
		"bad arrival": func() Options { o := opts(profile(64, 4096), 1, time.Minute); o.Arrival = "bursty"; return o }(),
		"no slo":      func() Options { o := opts(profile(64, 4096), 1, time.Minute); o.SLO = slo.Objective{}; return o }(),
		// 6·10¹¹ arrivals would exhaust memory before the first step.
		"too many requests": opts(profile(64, 4096), 1e9, 10*time.Minute),
		"huge duration":     opts(profile(64, 4096), 1, 1<<62),
	} {
		if _, err := Run(o); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestFindMax(t *testing.T) {
	o := opts(profile(128, 8192), 4, 2*time.Minute)
	m, err := FindMax(o)
	if err != nil {
		t.Fatal(err)
	}
	if !m.SLOMet || m.MaxRPSUnderSLO <= 0 || m.Config.Rate != m.MaxRPSUnderSLO {
		t.Fatalf("max %v with result slo_met=%v rate %v", m.MaxRPSUnderSLO, m.SLOMet, m.Config.Rate)
	}
	if m.LowestFailingRate <= m.MaxRPSUnderSLO || (m.LowestFailingRate-m.MaxRPSUnderSLO) > 0.011*m.LowestFailingRate {
		t.Errorf("bracket [%v, %v] not within 1 %%", m.MaxRPSUnderSLO, m.LowestFailingRate)
	}
	// The search's verdicts agree with fresh runs on either side.
	above, _ := Run(opts(profile(128, 8192), m.LowestFailingRate, 2*time.Minute))
	if above.SLOMet {
		t.Errorf("rate %v above the maximum meets the SLO", m.LowestFailingRate)
	}
	// Every probe below the answer passed and every one at or above the
	// bracket's top failed (monotone on this engine).
	for _, p := range m.Probes {
		if p.Rate <= m.MaxRPSUnderSLO && !p.SLOMet || p.Rate >= m.LowestFailingRate && p.SLOMet {
			t.Errorf("probe %+v inconsistent with max %v", p, m.MaxRPSUnderSLO)
		}
	}
	if len(m.Probes) > maxProbes {
		t.Errorf("%d probes", len(m.Probes))
	}
	// Starting above the answer halves down to it.
	o.Rate = 200
	m2, err := FindMax(o)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(m2.MaxRPSUnderSLO-m.MaxRPSUnderSLO) > 0.02*m.MaxRPSUnderSLO {
		t.Errorf("from 200 RPS found %v, from 4 RPS %v", m2.MaxRPSUnderSLO, m.MaxRPSUnderSLO)
	}
}

func TestQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(500)
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(rng.IntN(20)) // many duplicates
		}
		sorted := slices.Clone(xs)
		slices.Sort(sorted)
		ps := []float64{0.01, 0.5, 0.95, 0.99, 1}
		got := quantiles(xs, ps...)
		for i, p := range ps {
			k := int(math.Ceil(p*float64(n))) - 1
			if got[i] != sorted[max(k, 0)] {
				t.Fatalf("n=%d p=%v: got %v, want %v", n, p, got[i], sorted[k])
			}
		}
	}
	if q := quantiles(nil, 0.5); q[0] != 0 {
		t.Errorf("empty: %v", q)
	}
	if q := quantiles([]float64{1, 2, 3, 4}, 0.5, 0.95); q[0] != 2 || q[1] != 4 {
		t.Errorf("nearest rank of 1..4: %v", q)
	}
}

// BenchmarkOffline measures simulated requests per wall-clock second on
// the M0 workload: 10 minutes at 10 RPS on the throughput profile.
func BenchmarkOffline(b *testing.B) {
	o := opts(profile(128, 8192), 10, 10*time.Minute)
	var r runner
	b.ResetTimer()
	requests := 0
	for i := 0; i < b.N; i++ {
		res, err := r.run(o)
		if err != nil {
			b.Fatal(err)
		}
		requests += int(res.Requests)
	}
	b.ReportMetric(float64(requests)/b.Elapsed().Seconds(), "sim_requests/s")
}

// TestSubNanosecondStepsStillCount: a calibration whose steps round to a
// zero time.Duration still runs them; their tokens must be recorded rather
// than the step being mistaken for one that scheduled nothing.
func TestSubNanosecondStepsStillCount(t *testing.T) {
	cfg := profile(64, 4096)
	cfg.Calibration = &engine.Calibration{A: 1e-10}
	res, err := Run(opts(cfg, 1, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 10 || res.Completed != 10 || res.RequestsUnfinished != 0 {
		t.Fatalf("requests %d, completed %d, unfinished %d", res.Requests, res.Completed, res.RequestsUnfinished)
	}
}

// The offline runner sends the load generator's very stream: its arrivals
// are arrival.Schedule's for the same spec, ramp and seed included.
func TestArrivalsAreTheSharedSchedule(t *testing.T) {
	o := opts(profile(64, 4096), 7, 20*time.Second)
	o.Arrival, o.Burstiness, o.Ramp, o.Seed = ArrivalGamma, 0.5, 4*time.Second, 9
	var r runner
	if err := r.arrivals(o.withDefaults()); err != nil {
		t.Fatal(err)
	}
	want, err := arrival.Schedule(arrival.Spec{Rate: 7, Duration: 20 * time.Second, Ramp: 4 * time.Second, Arrival: arrival.Gamma, Burstiness: 0.5, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.times) != len(want) {
		t.Fatalf("%d arrivals, schedule has %d", len(r.times), len(want))
	}
	for i, at := range want {
		if r.times[i] != at.Seconds() {
			t.Fatalf("arrival %d at %v, schedule says %v", i, r.times[i], at.Seconds())
		}
	}
}

// Only requests that arrive in the steady window are judged.
func TestSteadyWindow(t *testing.T) {
	o := opts(profile(64, 4096), 10, time.Minute)
	o.Warmup, o.Cooldown = 10*time.Second, 20*time.Second
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 300 || res.SentTotal != 600 || res.SteadyWindowS != 30 || math.Abs(res.ScheduledRate-10) > 1e-9 {
		t.Errorf("requests %d of %d sent, window %v s, scheduled rate %v; want 300 of 600 in 30 s at 10/s",
			res.Requests, res.SentTotal, res.SteadyWindowS, res.ScheduledRate)
	}
}

// A closed loop keeps exactly Concurrency requests in the engine, and its
// throughput is Concurrency ÷ mean latency (Little's law).
func TestClosedLoop(t *testing.T) {
	o := opts(profile(64, 4096), 0, time.Minute)
	o.Concurrency = 6
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.PeakRunning != 6 || res.Completed == 0 || res.Config.Arrival != arrival.ClosedLoop || res.Config.Rate != 0 {
		t.Fatalf("peak running %d, completed %d, config %+v", res.PeakRunning, res.Completed, res.Config)
	}
	if little := 6 / res.E2EMean; math.Abs(res.RPS-little) > 0.05*little {
		t.Errorf("rps %v, Little's law %v", res.RPS, little)
	}
	// Refused requests do not spin: each client stops after its refusal.
	o.InputLen = 400
	res, err = Run(o)
	if err != nil || res.SentTotal != 6 || res.Failed != 6 || res.Errors["http_400"] != 6 {
		t.Errorf("refused closed loop: %v, sent %d failed %d errors %v", err, res.SentTotal, res.Failed, res.Errors)
	}
}

// An engine that would not start is a typed error, not a string to match.
func TestStartupErrorIsTyped(t *testing.T) {
	// 256 × 16384 at util 0.35 leaves no KV cache on the default 4 GB card.
	oom := profile(256, 16384)
	oom.GPUMemoryUtilization = 0.35
	_, err := Run(opts(oom, 1, time.Minute))
	var se *engine.StartupError
	if !errors.As(err, &se) || se.Reason != engine.ReasonOutOfMemory {
		t.Errorf("OOM config: %v", err)
	}
	if _, err := FindMax(opts(oom, 1, time.Minute)); !engine.IsOutOfMemory(err) {
		t.Errorf("find-max on an OOM config: %v", err)
	}
}
