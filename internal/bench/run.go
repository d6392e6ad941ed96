// Package bench is llmlab's load generator. Open loop (the default):
// requests leave on a precomputed schedule (internal/arrival: constant,
// Poisson or gamma arrivals after a linear ramp) whatever the server does, and every latency is counted from the
// request's scheduled send time, so a slow server or a slow generator cannot
// hide queueing delay (no coordinated omission). Streaming responses give
// TTFT, TPOT and inter-token latency; everything is aggregated into
// fixed-size HDR histograms, so memory does not grow with the run's length.
//
// Closed loop (Config.Concurrency): a fixed number of clients each send
// their next request when the previous one ends.
//
// Run does one run, FindMax searches for the highest rate meeting the SLO
// (internal/search), and RunFile is the JSON record of either
// (internal/runfile, docs/runfile.md). The files: config.go (Config and
// its checks), run.go (the send loops), exchange.go (one request and its
// SSE stream), recorder.go and result.go (statistics), progress.go (the
// live line), findmax.go, record.go (run-file records), summary.go.
package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
)

// runner is the state of one Run.
type runner struct {
	cfg    Config
	client *http.Client
	url    string
	bodies *bodyBuilder
	rec    *recorder
	sem    chan struct{} // --max-concurrency slots; nil: no cap
	pool   chan struct{} // connection slots, Config.MaxConns of them
	start  time.Time
	wg     sync.WaitGroup
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

// Run sends the configured load and returns the figures. It blocks until
// every request sent has ended (at most Timeout after the last scheduled
// send) or ctx is canceled; on cancellation it still returns the figures
// gathered so far, marked Interrupted, together with an error wrapping
// ctx.Err().
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	client := cfg.Client
	if client == nil {
		tr := NewPoolTransport(cfg.MaxConns)
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	if cfg.Model == "" {
		m, err := DiscoverModel(ctx, client, cfg.URL, cfg.Header)
		if err != nil {
			return Result{}, err
		}
		cfg.Model = m
	}
	bodies, err := newBodyBuilder(cfg.Scenario, cfg.Model, cfg.Seed)
	if err != nil {
		return Result{}, err
	}
	var sched []time.Duration
	if cfg.Concurrency == 0 {
		if sched, err = arrival.Schedule(cfg.scheduleSpec()); err != nil {
			return Result{}, err
		}
	}
	steadyFrom, steadyTo := cfg.Warmup, cfg.Duration-cfg.Cooldown
	sloE2E := time.Duration(cfg.SLO.SLO.P95E2ESeconds * float64(time.Second))
	cfg.Requests.window(steadyFrom, steadyTo)
	r := &runner{
		cfg: cfg, client: client, url: cfg.URL + cfg.Scenario.Path(), bodies: bodies,
		rec: newRecorder(steadyFrom, steadyTo, sloE2E),
	}
	if cfg.MaxConcurrency > 0 {
		r.sem = make(chan struct{}, cfg.MaxConcurrency)
	}
	r.pool = make(chan struct{}, cfg.MaxConns)

	progDone := make(chan struct{})
	progStopped := make(chan struct{})
	r.start = time.Now()
	if cfg.Progress != nil {
		go func() {
			defer close(progStopped)
			r.progressLoop(progDone)
		}()
	} else {
		close(progStopped)
	}

	var stoppedAt time.Duration
	if cfg.Concurrency > 0 {
		stoppedAt = r.closedLoop(ctx)
	} else {
		stoppedAt = r.dispatch(ctx, sched)
	}
	r.wg.Wait()
	close(progDone)
	<-progStopped

	res := r.result(sched, stoppedAt)
	if err := ctx.Err(); err != nil {
		res.Interrupted = true
		res.SLOMet = false
		return res, fmt.Errorf("bench interrupted: %w", err)
	}
	return res, nil
}

// job is one request handed to a worker.
type job struct {
	i     int
	sched time.Duration
}

// worker is a goroutine that sends requests one after another, with
// scratch space reused between them. Reusing goroutines (as vegeta does)
// spares each request a fresh stack that net/http would grow again, and the
// buffers spare the garbage collector.
type worker struct {
	itls []time.Duration
	buf  []byte
}

// dispatch hands each request to an idle worker at its scheduled time, or
// starts a new worker when none is idle, so it never waits for a response
// and a slow server cannot slow the arrivals. Workers live until the end of
// the run; there are as many as requests were ever in flight at once. It
// returns the offset at which it stopped (Duration unless ctx ended first).
func (r *runner) dispatch(ctx context.Context, sched []time.Duration) time.Duration {
	jobs := make(chan job)
	defer close(jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i, at := range sched {
		if d := at - r.since(); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return r.since()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return r.since()
		}
		j := job{i: i, sched: at}
		if now := r.since(); now-at > r.cfg.MaxSendLag {
			// Too late to be a measurement of this schedule: dropped here,
			// at the cost of a counter, so a generator past its ceiling
			// catches up instead of piling up goroutines.
			r.drop(j, now, ClassGenLag)
			continue
		}
		select {
		case jobs <- j:
		default:
			r.wg.Add(1)
			go r.work(ctx, j, jobs)
		}
	}
	return r.cfg.Duration
}

func (r *runner) work(ctx context.Context, first job, jobs <-chan job) {
	defer r.wg.Done()
	// +2: a chat stream opens with a role-only chunk, and servers may add one.
	w := &worker{itls: make([]time.Duration, 0, r.cfg.Scenario.OutputTokens+2), buf: make([]byte, 4096)}
	r.one(ctx, w, first)
	for j := range jobs {
		r.one(ctx, w, j)
	}
}

// drop records a request the generator did not send, with a generator
// error class.
func (r *runner) drop(j job, now time.Duration, class string) {
	r.rec.started(j.sched, now)
	r.rec.record(&outcome{sched: j.sched, sent: now, end: now, class: class})
}

// one sends a request and records its outcome.
func (r *runner) one(ctx context.Context, w *worker, j job) {
	o := outcome{sched: j.sched, sent: r.since()}
	// A closed loop has no schedule to be late for (sched is the send).
	if r.cfg.Concurrency == 0 && o.sent-j.sched > r.cfg.MaxSendLag {
		r.drop(j, o.sent, ClassGenLag)
		return
	}
	defer r.cfg.Requests.add(j.i, &o)
	r.rec.started(j.sched, o.sent)
	// The deadline runs from the scheduled time: it bounds the requests
	// alive at once to about Rate × Timeout whatever the server does.
	reqCtx, cancel := context.WithDeadline(ctx, r.start.Add(j.sched+r.cfg.Timeout))
	defer cancel()
	if r.sem != nil {
		select {
		case r.sem <- struct{}{}:
			defer func() { <-r.sem }()
		case <-reqCtx.Done():
			o.end = r.since()
			r.fail(ctx, &o, ClassTimeout)
			r.rec.record(&o)
			return
		}
	}
	if !r.takeConn(ctx, reqCtx, &o) {
		r.rec.record(&o)
		return
	}
	defer func() { <-r.pool }()
	o.itls = w.itls[:0]
	r.exchange(ctx, reqCtx, w, j.i, &o)
	r.rec.record(&o)
}

// takeConn takes a connection slot, waiting at most MaxSendLag from the
// scheduled time (or from the end of a --max-concurrency wait, which is
// the user's own cap). Without one by then the pool is too small for the
// load: a generator error, and the request is not sent.
func (r *runner) takeConn(runCtx, reqCtx context.Context, o *outcome) bool {
	select {
	case r.pool <- struct{}{}:
		return true
	default:
	}
	from := o.sched
	if r.sem != nil {
		from = max(from, r.since())
	}
	t := time.NewTimer(max(from+r.cfg.MaxSendLag-r.since(), 0))
	defer t.Stop()
	select {
	case r.pool <- struct{}{}:
		return true
	case <-t.C:
	case <-reqCtx.Done():
	}
	o.end = r.since()
	if runCtx.Err() != nil {
		o.canceled = true
	} else {
		o.class = ClassGenPool
	}
	return false
}
