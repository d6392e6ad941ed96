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
// The arrivals are the load generator's: internal/arrival's schedule
// (constant, Poisson or gamma after a linear ramp, seeded), or a closed
// loop of Concurrency clients. Every request that arrives in the steady
// window [warmup, duration − cooldown) is judged, with the run file's
// definitions (internal/runfile), so an offline run and `llmlab bench`
// against the live sim report the same figures for the same stream.
// After the last arrival the engine keeps stepping until the requests
// finish, but at most until duration + DrainFactor × the SLO's p95 bound: a request still
// unfinished then is older than the bound whatever happens next, so it is
// an SLO miss either way, and an overloaded configuration still ends. Such
// requests are reported in requests_unfinished and enter the end-to-end
// (and, without a first token, TTFT) percentiles at their age at the cap, a
// lower bound of their latency. Requests the engine refuses (prompt plus
// output longer than max_model_len, as vLLM answers 400) are errors of
// class http_400.
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
	"strconv"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/slo"
)

// DrainFactor × the SLO p95 bound is how long past the end of the arrival
// window the engine keeps stepping to finish requests in flight.
const DrainFactor = 4

// maxRequests bounds the arrivals of one run (about 1 GB of state): ten
// minutes at 16,000 requests/s, far above what any modelled GPU serves.
const maxRequests = 10_000_000

// Arrival processes (internal/arrival's).
const (
	ArrivalConstant = arrival.Constant
	ArrivalPoisson  = arrival.Poisson
	ArrivalGamma    = arrival.Gamma
)

// classRejected is the error class of a request the engine refuses, named
// as the load generator names vLLM's answer to it.
const classRejected = "http_400"

// Options configures one offline run.
type Options struct {
	Engine     engine.Config
	Rate       float64       // requests per second (> 0; unused in a closed loop)
	Duration   time.Duration // length of the arrival window, ramp included
	Ramp       time.Duration // linear ramp from 0 to Rate (closed loop: clients start spread over it)
	Warmup     time.Duration // excluded from the figures, from the start
	Cooldown   time.Duration // excluded from the figures, before the end
	InputLen   int           // prompt tokens per request
	OutputLen  int           // output tokens per request (ignore_eos)
	Arrival    string        // constant (default), poisson or gamma
	Burstiness float64       // gamma shape (0: 1)
	Seed       int64         // the arrival schedule's seed
	// Concurrency, when > 0, makes the run closed-loop: that many clients
	// each send their next request when the previous one ends.
	Concurrency int
	SLO         slo.Objective
}

func (o Options) spec() arrival.Spec {
	return arrival.Spec{Rate: o.Rate, Duration: o.Duration, Ramp: o.Ramp, Arrival: o.Arrival, Burstiness: o.Burstiness, Seed: uint64(o.Seed)}
}

func (o Options) validate() error {
	switch {
	case o.Duration <= 0:
		return fmt.Errorf("duration must be > 0, got %v", o.Duration)
	case o.InputLen <= 0 || o.OutputLen <= 0:
		return fmt.Errorf("input and output lengths must be > 0, got %d and %d", o.InputLen, o.OutputLen)
	case o.SLO.P95E2ESeconds <= 0:
		return errors.New("SLO p95 bound must be > 0")
	case o.Warmup < 0 || o.Cooldown < 0:
		return errors.New("warmup and cooldown must be >= 0")
	case o.Warmup+o.Cooldown >= o.Duration:
		return fmt.Errorf("warmup (%v) + cooldown (%v) leave no steady window in duration %v", o.Warmup, o.Cooldown, o.Duration)
	case o.Concurrency < 0:
		return errors.New("concurrency must be >= 0")
	case o.Concurrency > 0:
		if o.Ramp < 0 || o.Ramp > o.Duration {
			return fmt.Errorf("ramp must be in [0, duration], got %v", o.Ramp)
		}
		return nil
	}
	if err := o.spec().Validate(); err != nil {
		return err
	}
	if n := o.spec().ExpectedCount(); n > maxRequests {
		// Every arrival's state is allocated up front: without a bound a
		// typo (--rate 1e9) exhausts memory instead of failing.
		return fmt.Errorf("rate %v × duration %v is %.0f requests, more than the %d one run simulates",
			o.Rate, o.Duration, n, maxRequests)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Arrival == "" {
		o.Arrival = ArrivalConstant
	}
	if o.Burstiness == 0 || o.Arrival != ArrivalGamma {
		o.Burstiness = 1
	}
	return o
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
	Concurrency          int     `json:"concurrency"`
	Arrival              string  `json:"arrival"`
	Burstiness           float64 `json:"burstiness"`
	DurationS            float64 `json:"duration_s"`
	RampS                float64 `json:"ramp_s"`
	WarmupS              float64 `json:"warmup_s"`
	CooldownS            float64 `json:"cooldown_s"`
	InputLen             int     `json:"input_len"`
	OutputLen            int     `json:"output_len"`
	Seed                 int64   `json:"seed"`
}

// Result is one offline run: the run file's results (internal/runfile:
// the same figures, under the same names and definitions, as `llmlab
// bench` measures) and the simulator's own view.
type Result struct {
	Config RunConfig     `json:"config"`
	SLO    slo.Objective `json:"slo"`

	runfile.Results

	KVTokens       int     `json:"kv_tokens"`
	KVBlocks       int     `json:"kv_blocks"`
	MaxConcurrency float64 `json:"max_concurrency"`
	StartupSeconds float64 `json:"startup_seconds"`
	// VirtualSeconds is the simulated time, drain included.
	VirtualSeconds float64 `json:"virtual_seconds"`
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
	steady  bool // arrived in the steady window: judged
}

// runner holds buffers reused across the runs of a search.
type runner struct {
	reqs   []reqState
	ids    []string
	times  []float64 // scheduled arrivals (closed loop: the clients' first sends)
	follow []float64 // closed loop: next sends, at the ends of previous requests
	itl    []float64
	e2e    []float64
	ttft   []float64
	tpot   []float64
}

// Run simulates one run. It fails if the options are invalid or the engine
// configuration does not start: then the error is an *engine.StartupError
// with vLLM's message (errors.As).
func Run(opts Options) (Result, error) {
	var r runner
	return r.run(opts)
}

// arrivals fills r.times with the scheduled arrivals in seconds: the
// schedule of internal/arrival, the very one `llmlab bench` sends by, or,
// in a closed loop, each client's first send.
func (r *runner) arrivals(opts Options) error {
	r.times, r.follow = r.times[:0], r.follow[:0]
	if opts.Concurrency > 0 {
		for i := range opts.Concurrency {
			r.times = append(r.times, arrival.ClosedLoopStart(i, opts.Concurrency, opts.Ramp).Seconds())
		}
		return nil
	}
	sched, err := arrival.Schedule(opts.spec())
	if err != nil {
		return err
	}
	for _, at := range sched {
		r.times = append(r.times, at.Seconds())
	}
	return nil
}

// queue hands out the arrivals in time order: the schedule, merged with
// the closed loop's follow-ups (appended in non-decreasing time, since the
// virtual clock only moves forward).
type queue struct {
	r            *runner
	next, nextFo int
}

func (q *queue) peek() (float64, bool) {
	r := q.r
	switch {
	case q.next < len(r.times) && q.nextFo < len(r.follow):
		return min(r.times[q.next], r.follow[q.nextFo]), true
	case q.next < len(r.times):
		return r.times[q.next], true
	case q.nextFo < len(r.follow):
		return r.follow[q.nextFo], true
	}
	return 0, false
}

func (q *queue) pop() float64 {
	r := q.r
	if q.nextFo < len(r.follow) && (q.next >= len(r.times) || r.follow[q.nextFo] < r.times[q.next]) {
		q.nextFo++
		return r.follow[q.nextFo-1]
	}
	q.next++
	return r.times[q.next-1]
}

func (r *runner) run(opts Options) (Result, error) {
	wallStart := time.Now()
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	plan, err := engine.NewPlan(opts.Engine)
	if err != nil {
		return Result{}, fmt.Errorf("engine start-up: %w", err)
	}
	sched := engine.NewScheduler(opts.Engine, plan)
	if err := r.arrivals(opts); err != nil {
		return Result{}, err
	}
	r.reqs = r.reqs[:0]
	r.itl = r.itl[:0]

	res := Result{
		Config: RunConfig{
			GPU: opts.Engine.GPU, ModelSpec: opts.Engine.ModelSpec, MaxModelLen: opts.Engine.MaxModelLen,
			GPUMemoryUtilization: opts.Engine.GPUMemoryUtilization, MaxNumSeqs: opts.Engine.MaxNumSeqs,
			MaxNumBatchedTokens: opts.Engine.MaxNumBatchedTokens, EnableChunkedPrefill: opts.Engine.EnableChunkedPrefill,
			BlockSize: opts.Engine.BlockSize, Calibrated: opts.Engine.Calibration != nil,
			Rate: opts.Rate, Concurrency: opts.Concurrency, Arrival: opts.Arrival, Burstiness: opts.Burstiness,
			DurationS: opts.Duration.Seconds(), RampS: opts.Ramp.Seconds(), WarmupS: opts.Warmup.Seconds(),
			CooldownS: opts.Cooldown.Seconds(), InputLen: opts.InputLen, OutputLen: opts.OutputLen, Seed: opts.Seed,
		},
		SLO:            opts.SLO,
		KVTokens:       plan.KVTokens,
		KVBlocks:       plan.NumBlocks,
		MaxConcurrency: plan.MaxConcurrency,
		StartupSeconds: plan.StartupSeconds,
	}
	if opts.Concurrency > 0 {
		res.Config.Rate, res.Config.Arrival, res.Config.Burstiness = 0, arrival.ClosedLoop, 0
	}

	d := opts.Duration.Seconds()
	from, to := opts.Warmup.Seconds(), d-opts.Cooldown.Seconds()
	deadline := d + DrainFactor*opts.SLO.P95E2ESeconds
	q := queue{r: r}
	now := 0.0
	// The API server's cost per request comes before the engine sees it.
	front := sched.StepModel().FrontendRequestSeconds()
	for {
		for t, ok := q.peek(); ok && t+front <= now; t, ok = q.peek() {
			at := q.pop()
			i := len(r.reqs)
			if i >= maxRequests {
				break // a closed loop on a near-zero step time: stop sending
			}
			r.reqs = append(r.reqs, reqState{arrival: at, first: -1, steady: at >= from && at < to})
			for len(r.ids) <= i {
				r.ids = append(r.ids, "offline-"+strconv.Itoa(len(r.ids)))
			}
			err := sched.Add(engine.Request{ID: r.ids[i], PromptTokens: opts.InputLen, OutputTokens: opts.OutputLen, Ref: i})
			if err != nil {
				// Refused as vLLM answers 400. A closed-loop client
				// would only be refused again: it stops.
				r.reqs[i].failed = true
			}
		}
		if !sched.HasWork() {
			t, ok := q.peek()
			if !ok || len(r.reqs) >= maxRequests {
				break
			}
			now = t + front // idle: jump to the next arrival
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
			t, ok := q.peek()
			if !ok {
				break
			}
			now = t + front
			continue
		}
		res.Steps++
		now += step.Duration.Seconds()
		for _, ev := range step.Tokens {
			st := &r.reqs[ev.Ref]
			if st.tokens == 0 {
				st.first = now
			} else if st.steady {
				r.itl = append(r.itl, now-st.last)
			}
			st.last = now
			st.tokens++
			if ev.Finished {
				st.done = true
				if opts.Concurrency > 0 && now < d {
					// The client sends again at once, but only after it
					// has read the end of this request: the engine has
					// started its next step by then (it does not wait
					// for arrivals), so the new request cannot join that
					// step. Just after now, it waits for the next one.
					r.follow = append(r.follow, math.Nextafter(now, math.Inf(1)))
				}
			}
		}
		stats := sched.Stats()
		res.PeakRunning = max(res.PeakRunning, stats.Running)
		res.PeakWaiting = max(res.PeakWaiting, stats.Waiting)
		res.PeakKVUsage = max(res.PeakKVUsage, stats.KVUsage())
	}
	res.VirtualSeconds, res.VirtualS = now, now
	res.Preemptions = int64(sched.Stats().Preemptions)
	r.summarise(&res, opts, now)
	res.WallSeconds = time.Since(wallStart).Seconds()
	return res, nil
}

// summarise computes the figures of the steady cohort, as the load
// generator defines them (docs/runfile.md), at virtual time end.
func (r *runner) summarise(res *Result, opts Options, end float64) {
	r.e2e, r.ttft, r.tpot = r.e2e[:0], r.ttft[:0], r.tpot[:0]
	d := opts.Duration.Seconds()
	from, to := opts.Warmup.Seconds(), d-opts.Cooldown.Seconds()
	window := to - from
	sloE2E := opts.SLO.P95E2ESeconds
	out := &res.Results
	out.Model = opts.Engine.ModelSpec
	out.Errors, out.ErrorsTotal = map[string]int64{}, map[string]int64{}
	out.Warnings = []string{}
	var (
		outTokens, good, scheduled int64
		firstEnd, lastEndSteady    = math.Inf(1), 0.0
		lastEnd                    float64
	)
	for i := range r.reqs {
		st := &r.reqs[i]
		out.SentTotal++
		switch {
		case st.failed:
			out.FailedTotal++
			out.ErrorsTotal[classRejected]++
		case st.done:
			out.CompletedTotal++
			lastEnd = max(lastEnd, st.last)
		}
		if !st.steady {
			continue
		}
		scheduled++
		out.Requests++
		if st.failed {
			out.Failed++
			out.Errors[classRejected]++
			continue
		}
		switch {
		case st.done:
			out.Completed++
			outTokens += int64(st.tokens)
			e := st.last - st.arrival
			if e <= sloE2E {
				good++
			}
			firstEnd, lastEndSteady = min(firstEnd, st.last), max(lastEndSteady, st.last)
			r.e2e = append(r.e2e, e)
			r.ttft = append(r.ttft, st.first-st.arrival)
			if st.tokens > 1 {
				r.tpot = append(r.tpot, (st.last-st.first)/float64(st.tokens-1))
			}
		default:
			// Unfinished at the cap: its age is a lower bound of its latency.
			out.RequestsUnfinished++
			age := end - st.arrival
			r.e2e = append(r.e2e, age)
			if st.first >= 0 {
				r.ttft = append(r.ttft, st.first-st.arrival)
			} else {
				r.ttft = append(r.ttft, age)
			}
		}
	}
	if out.Requests > 0 {
		out.ErrorRate = float64(out.Failed) / float64(out.Requests)
	}
	if window > 0 {
		out.ScheduledRate = float64(scheduled) / window
		out.AchievedRate = out.ScheduledRate // virtual time never falls behind
	}
	out.RPS = runfile.SustainedRPS(out.Completed, firstEnd, lastEndSteady, window)
	if lastEnd > 0 {
		out.RPSOverall = float64(out.CompletedTotal) / lastEnd
	}
	if out.Completed > 0 {
		out.GoodputFrac = float64(good) / float64(out.Completed)
		out.GoodputRPS = out.RPS * out.GoodputFrac
		out.OutputTokensMean = float64(outTokens) / float64(out.Completed)
		out.OutputTokenRate = out.OutputTokensMean * out.RPS
	}
	out.InputTokens = out.Completed * int64(opts.InputLen)
	out.OutputTokens = outTokens
	out.DurationS, out.SteadyStartS, out.SteadyEndS, out.SteadyWindowS = d, from, to, window
	out.WallS = lastEnd
	out.Latencies = slo.NewLatencies(summarize(r.e2e), summarize(r.ttft), summarize(r.tpot), summarize(r.itl))
	if out.RequestsUnfinished > 0 {
		out.Warnings = append(out.Warnings, fmt.Sprintf(
			"%d requests were unfinished when the drain cap (%.0f s after the last arrival) ended the run; their latencies count at their age then",
			out.RequestsUnfinished, DrainFactor*sloE2E))
	}
	if out.Completed == 0 {
		out.Warnings = append(out.Warnings, "no request of the steady window completed")
	}
	out.SLOMet = out.Completed > 0 && opts.SLO.Met(out.E2EP95, out.ErrorRate)
}

// CheckOptions applies the defaults and validates opts without running,
// so a command line can report usage errors (exit 2) apart from an engine
// that does not start.
func CheckOptions(opts Options) error { return opts.withDefaults().validate() }
