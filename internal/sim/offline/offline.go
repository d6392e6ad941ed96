// Package offline runs the simulated engine's scheduler in virtual time over
// an open-loop arrival process and reports what a load generator would have
// measured against the live server: latency percentiles, throughput,
// preemptions and whether the SLO was met. It uses the very scheduler and
// step-time model that `llmlab sim` serves with, but advances a virtual
// clock by each step's modelled duration instead of sleeping, so a
// 10-minute run takes milliseconds.
//
// # What is measured
//
// Every request that arrives in [0, duration) is judged. After the last
// arrival the engine keeps stepping until those requests finish, but at
// most until duration + DrainFactor × the SLO's p95 bound: a request still
// unfinished then is older than the bound whatever happens next, so it is
// an SLO miss either way, and an overloaded configuration still ends. Such
// requests are reported in requests_unfinished and enter the end-to-end
// (and, without a first token, TTFT) percentiles at their age at the cap, a
// lower bound of their latency. Requests the engine refuses (prompt plus
// output longer than max_model_len, as vLLM answers 400) are errors.
//
// Latencies follow the load generator's definitions: TTFT from arrival to
// the end of the step that produced the first token; E2E to the end of the
// step that produced the last; TPOT = (E2E − TTFT)/(output − 1) per
// request; ITL every gap between consecutive tokens of a request.
// Percentiles are exact (nearest rank) over all samples.
package offline

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/slo"
)

// DrainFactor × the SLO p95 bound is how long past the end of the arrival
// window the engine keeps stepping to finish requests in flight.
const DrainFactor = 4

// maxRequests bounds the arrivals of one run (about 1 GB of state): ten
// minutes at 16,000 requests/s, far above what any modelled GPU serves.
const maxRequests = 10_000_000

// Arrival processes.
const (
	ArrivalConstant = "constant"
	ArrivalPoisson  = "poisson"
)

// Options configures one offline run.
type Options struct {
	Engine    engine.Config
	Rate      float64       // requests per second (> 0)
	Duration  time.Duration // length of the arrival window
	InputLen  int           // prompt tokens per request
	OutputLen int           // output tokens per request (ignore_eos)
	Arrival   string        // ArrivalConstant (default) or ArrivalPoisson
	Seed      int64         // Poisson arrivals' seed
	SLO       slo.Objective
}

func (o Options) validate() error {
	switch {
	case !(o.Rate > 0) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("rate must be > 0, got %v", o.Rate)
	case o.Duration <= 0:
		return fmt.Errorf("duration must be > 0, got %v", o.Duration)
	case o.InputLen <= 0 || o.OutputLen <= 0:
		return fmt.Errorf("input and output lengths must be > 0, got %d and %d", o.InputLen, o.OutputLen)
	case o.Arrival != "" && o.Arrival != ArrivalConstant && o.Arrival != ArrivalPoisson:
		return fmt.Errorf("arrival must be %q or %q, got %q", ArrivalConstant, ArrivalPoisson, o.Arrival)
	case o.SLO.P95E2ESeconds <= 0:
		return errors.New("SLO p95 bound must be > 0")
	case o.Rate*o.Duration.Seconds() > maxRequests:
		// Every arrival's state is allocated up front: without a bound a
		// typo (--rate 1e9) exhausts memory instead of failing.
		return fmt.Errorf("rate %v × duration %v is %.0f requests, more than the %d one run simulates",
			o.Rate, o.Duration, o.Rate*o.Duration.Seconds(), maxRequests)
	}
	return nil
}

// RunConfig echoes the configuration of a run in the result.
type RunConfig struct {
	GPU                  string  `json:"gpu"`
	ModelSpec            string  `json:"model_spec"`
	MaxModelLen          int     `json:"max_model_len"`
	GPUMemoryUtilization float64 `json:"gpu_memory_utilization"`
	MaxNumSeqs           int     `json:"max_num_seqs"`
	MaxNumBatchedTokens  int     `json:"max_num_batched_tokens"`
	EnableChunkedPrefill bool    `json:"enable_chunked_prefill"`
	BlockSize            int     `json:"block_size"`
	Calibrated           bool    `json:"calibrated"`
	Rate                 float64 `json:"rate"`
	Arrival              string  `json:"arrival"`
	DurationS            float64 `json:"duration_s"`
	InputLen             int     `json:"input_len"`
	OutputLen            int     `json:"output_len"`
	Seed                 int64   `json:"seed"`
}

// Result is what `llmlab sim run` prints. Field names are shared with the
// load generator's results (internal/bench) so that both can be compared.
type Result struct {
	Config RunConfig     `json:"config"`
	SLO    slo.Objective `json:"slo"`

	Requests           int     `json:"requests"` // arrived in the window
	Completed          int     `json:"completed"`
	Failed             int     `json:"failed"`
	RequestsUnfinished int     `json:"requests_unfinished"`
	ErrorRate          float64 `json:"error_rate"`
	RPS                float64 `json:"rps"` // completed / duration
	OutputTokenRate    float64 `json:"output_throughput_tok_s"`

	// Latencies are named as in `llmlab bench`.
	slo.Latencies

	Preemptions int  `json:"preemptions"`
	SLOMet      bool `json:"slo_met"`

	KVTokens       int     `json:"kv_tokens"`
	KVBlocks       int     `json:"kv_blocks"`
	MaxConcurrency float64 `json:"max_concurrency"`
	StartupSeconds float64 `json:"startup_seconds"`
	PeakRunning    int     `json:"peak_running"`
	PeakWaiting    int     `json:"peak_waiting"`
	PeakKVUsage    float64 `json:"peak_kv_usage"`
	Steps          int     `json:"steps"`
	VirtualSeconds float64 `json:"virtual_seconds"` // simulated time including the drain
	WallSeconds    float64 `json:"wall_seconds"`
}

// reqState is one request's timeline, indexed by engine.Request.Ref.
type reqState struct {
	arrival float64
	first   float64 // time of the first token; < 0 before it
	last    float64 // time of the latest token
	tokens  int
	done    bool
	failed  bool
}

// runner holds buffers reused across the runs of a search.
type runner struct {
	reqs  []reqState
	ids   []string
	times []float64
	itl   []float64
	e2e   []float64
	ttft  []float64
	tpot  []float64
}

// Run simulates one run. It fails if the options are invalid or the engine
// configuration does not fit (the error is vLLM's).
func Run(opts Options) (Result, error) {
	var r runner
	return r.run(opts)
}

// arrivals fills r.times with the arrival times in [0, duration).
// Constant arrivals are spaced 1/rate apart from t = 0; Poisson arrivals
// have exponential gaps drawn from a PCG stream seeded by seed, so the
// same seed gives the same pattern, only scaled, at every rate.
func (r *runner) arrivals(opts Options) {
	r.times = r.times[:0]
	d := opts.Duration.Seconds()
	if opts.Arrival == ArrivalPoisson {
		rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x11a1ab))
		for t := rng.ExpFloat64() / opts.Rate; t < d; t += rng.ExpFloat64() / opts.Rate {
			r.times = append(r.times, t)
		}
		return
	}
	for i := 0; ; i++ {
		t := float64(i) / opts.Rate
		if t >= d {
			return
		}
		r.times = append(r.times, t)
	}
}

func (r *runner) run(opts Options) (Result, error) {
	wallStart := time.Now()
	if opts.Arrival == "" {
		opts.Arrival = ArrivalConstant
	}
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	plan, err := engine.NewPlan(opts.Engine)
	if err != nil {
		return Result{}, err
	}
	sched := engine.NewScheduler(opts.Engine, plan)
	r.arrivals(opts)
	n := len(r.times)
	for len(r.ids) < n {
		r.ids = append(r.ids, "offline-"+strconv.Itoa(len(r.ids)))
	}
	r.reqs = append(r.reqs[:0], make([]reqState, n)...)
	r.itl = r.itl[:0]

	res := Result{
		Config: RunConfig{
			GPU: opts.Engine.GPU, ModelSpec: opts.Engine.ModelSpec, MaxModelLen: opts.Engine.MaxModelLen,
			GPUMemoryUtilization: opts.Engine.GPUMemoryUtilization, MaxNumSeqs: opts.Engine.MaxNumSeqs,
			MaxNumBatchedTokens: opts.Engine.MaxNumBatchedTokens, EnableChunkedPrefill: opts.Engine.EnableChunkedPrefill,
			BlockSize: opts.Engine.BlockSize, Calibrated: opts.Engine.Calibration != nil,
			Rate: opts.Rate, Arrival: opts.Arrival, DurationS: opts.Duration.Seconds(),
			InputLen: opts.InputLen, OutputLen: opts.OutputLen, Seed: opts.Seed,
		},
		SLO:            opts.SLO,
		Requests:       n,
		KVTokens:       plan.KVTokens,
		KVBlocks:       plan.NumBlocks,
		MaxConcurrency: plan.MaxConcurrency,
		StartupSeconds: plan.StartupSeconds,
	}

	deadline := opts.Duration.Seconds() + DrainFactor*opts.SLO.P95E2ESeconds
	now, next := 0.0, 0
	// The API server's cost per request comes before the engine sees it.
	front := sched.StepModel().FrontendRequestSeconds()
	for {
		for next < n && r.times[next]+front <= now {
			st := &r.reqs[next]
			st.arrival, st.first = r.times[next], -1
			err := sched.Add(engine.Request{ID: r.ids[next], PromptTokens: opts.InputLen, OutputTokens: opts.OutputLen, Ref: next})
			if err != nil {
				st.failed = true
				res.Failed++
			}
			next++
		}
		if !sched.HasWork() {
			if next >= n {
				break
			}
			now = r.times[next] + front // idle: jump to the next arrival
			continue
		}
		if now >= deadline {
			break
		}
		step := sched.Step()
		if step.PrefillTokens == 0 && step.DecodeSeqs == 0 {
			// Work that cannot be scheduled (cannot happen with a plan
			// from NewPlan); wait for an arrival or give up. (Not
			// Duration == 0: a tiny calibration rounds real steps to 0 ns.)
			if next >= n {
				break
			}
			now = r.times[next] + front
			continue
		}
		res.Steps++
		now += step.Duration.Seconds()
		for _, ev := range step.Tokens {
			st := &r.reqs[ev.Ref]
			if st.tokens == 0 {
				st.first = now
			} else {
				r.itl = append(r.itl, now-st.last)
			}
			st.last = now
			st.tokens++
			if ev.Finished {
				st.done = true
				res.Completed++
			}
		}
		stats := sched.Stats()
		res.PeakRunning = max(res.PeakRunning, stats.Running)
		res.PeakWaiting = max(res.PeakWaiting, stats.Waiting)
		res.PeakKVUsage = max(res.PeakKVUsage, stats.KVUsage())
	}
	res.VirtualSeconds = now
	res.Preemptions = sched.Stats().Preemptions
	r.summarise(&res, opts, now)
	res.WallSeconds = time.Since(wallStart).Seconds()
	return res, nil
}

// summarise computes the percentiles and the SLO verdict at virtual time end.
func (r *runner) summarise(res *Result, opts Options, end float64) {
	r.e2e, r.ttft, r.tpot = r.e2e[:0], r.ttft[:0], r.tpot[:0]
	outTokens := 0
	for i := range r.reqs {
		st := &r.reqs[i]
		if st.failed {
			continue
		}
		outTokens += st.tokens
		switch {
		case st.done:
			e := st.last - st.arrival
			r.e2e = append(r.e2e, e)
			r.ttft = append(r.ttft, st.first-st.arrival)
			if st.tokens > 1 {
				r.tpot = append(r.tpot, (st.last-st.first)/float64(st.tokens-1))
			}
		default:
			// Unfinished at the cap: its age is a lower bound of its latency.
			res.RequestsUnfinished++
			age := end - st.arrival
			r.e2e = append(r.e2e, age)
			if st.first >= 0 {
				r.ttft = append(r.ttft, st.first-st.arrival)
			} else {
				r.ttft = append(r.ttft, age)
			}
		}
	}
	d := opts.Duration.Seconds()
	res.RPS = float64(res.Completed) / d
	res.OutputTokenRate = float64(outTokens) / d
	if res.Requests > 0 {
		res.ErrorRate = float64(res.Failed) / float64(res.Requests)
	}
	res.Latencies = slo.NewLatencies(summarize(r.e2e), summarize(r.ttft), summarize(r.tpot), summarize(r.itl))
	// A run in which nothing arrived proves nothing: it does not meet the SLO.
	res.SLOMet = res.Requests > 0 && opts.SLO.Met(res.E2EP95, res.ErrorRate)
}
