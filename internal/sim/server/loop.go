package server

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/sim/engine"
)

// errShutdown is returned to requests that arrive after the engine loop
// has stopped.
var errShutdown = errors.New("the engine is shutting down")

// errShutdownMsg is what a request in flight is told when the server stops.
const errShutdownMsg = "The server is shutting down; the request was aborted."

// Sequence states, as seen by the handler that owns a sequence.
const (
	stateRunning  int32 = iota
	stateFinished       // all output tokens produced
	stateAborted        // dropped by the server (shutdown)
)

// seq is one request's life in the engine loop. The loop writes produced and
// state (produced first, so a reader that sees stateFinished also sees the
// final count) and then pokes notify; the handler reads them after each
// poke. One notify slot instead of one channel element per token means the
// loop never blocks on a slow client, memory does not grow with max_tokens,
// and a client that falls behind catches up in one wake-up.
type seq struct {
	id           string
	promptTokens int
	outputTokens int
	maxTokens    int
	finishReason string
	arrival      time.Time
	promptIDs    []int32 // for the engine's prefix cache

	produced atomic.Int32
	state    atomic.Int32
	// cancelled is set by the handler before it sends an abort, so that the
	// loop also drops a sequence whose abort it happens to receive before
	// the sequence itself (the two travel on different channels).
	cancelled atomic.Bool
	// errMsg says why the sequence was aborted; written before state
	// becomes stateAborted, so it is safe to read after seeing that.
	errMsg string
	notify chan struct{} // capacity 1

	// Owned by the loop goroutine.
	lastTokenAt  time.Time
	scheduledAt  time.Time // start of the step that produced token 0
	firstTokenAt time.Time
}

func newSeq(id string, prompt, output, maxTokens int, reason string, arrival time.Time) *seq {
	return &seq{
		id: id, promptTokens: prompt, outputTokens: output, maxTokens: maxTokens,
		finishReason: reason, arrival: arrival, notify: make(chan struct{}, 1),
	}
}

func (s *seq) poke() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// stepObserver receives each step's wall-clock start (its scheduled start:
// the previous step's modelled end, or the time it was run after idling),
// its modelled end (start + modelled GPU time) and its actual end (when its
// tokens were handed out); the benchmark uses it to measure timing error.
// Nil in production.
type stepObserver func(start, modelledEnd, end time.Time, tokens int)

// loop is the engine loop: a single goroutine that owns the scheduler. It
// takes new requests and aborts from channels, runs a step, waits in wall
// time until the step's modelled end, then hands out the step's tokens.
type loop struct {
	sched   *engine.Scheduler
	m       *metrics
	addCh   chan *seq
	abortCh chan *seq
	done    chan struct{} // closed when run returns
	seqs    map[string]*seq
	ready   []*seq // reused by deliver
	observe stepObserver

	// front is the API server's modelled cost per request (HTTP,
	// tokenisation) before the engine sees it (engine.StepModel).
	front time.Duration
}

// maxCatchUp bounds how far behind its modelled schedule the loop may run
// steps back to back to catch up; a longer stall (a GC pause, a starved
// CPU) restarts the schedule from now rather than compressing the steps
// that follow.
const maxCatchUp = 20 * time.Millisecond

func newLoop(sched *engine.Scheduler, m *metrics, observe stepObserver) *loop {
	return &loop{
		sched:   sched,
		m:       m,
		addCh:   make(chan *seq, 64),
		abortCh: make(chan *seq, 64),
		done:    make(chan struct{}),
		seqs:    make(map[string]*seq),
		observe: observe,
		front:   sched.StepModel().FrontendRequest(),
	}
}

// submit hands s to the engine loop. It blocks until the loop takes it, ctx
// ends, or the loop has stopped.
func (l *loop) submit(ctx context.Context, s *seq) error {
	if !sleepCtx(ctx, l.front) { // the frontend's work comes first
		return context.Cause(ctx)
	}
	select {
	case l.addCh <- s:
		return nil
	case <-l.done:
		return errShutdown
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// abort drops s from the engine, freeing its KV blocks. It blocks until the
// loop takes the abort or has stopped; it never waits for a step to end
// (the channel is buffered and the loop also reads it while it waits out a
// step).
func (l *loop) abort(s *seq) {
	if s.state.Load() != stateRunning {
		return
	}
	s.cancelled.Store(true)
	select {
	case l.abortCh <- s:
	case <-l.done:
	}
}

// run is the loop goroutine. It returns when ctx is done, after marking
// every sequence in flight as aborted.
func (l *loop) run(ctx context.Context) {
	defer close(l.done)
	defer l.abortAll()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var deadline time.Time // modelled end of the previous step
	for {
		if !l.sched.HasWork() {
			l.updateGauges()
			// The modelled GPU goes idle: the next step starts when work
			// arrives, not at the last step's end.
			deadline = time.Time{}
			// Idle: block on the channels (no busy loop).
			if !l.awaitEvent(ctx) {
				return
			}
			continue
		}
		// Take everything that has arrived so this step can admit it.
	drain:
		for {
			select {
			case s := <-l.addCh:
				l.add(s)
			case s := <-l.abortCh:
				l.drop(s)
			default:
				break drain
			}
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		// Steps run back to back on the modelled GPU: the next starts at
		// the previous one's modelled end, so time spent handing out tokens
		// is taken from the next sleep instead of adding up (no drift).
		start := deadline
		if start.IsZero() || now.Sub(start) > maxCatchUp || start.After(now) {
			start = now
		}
		step := l.sched.Step()
		if step.PrefillTokens == 0 && step.DecodeSeqs == 0 {
			// Nothing could be scheduled (work is blocked until something
			// changes): wait for a request or an abort rather than spin.
			deadline = time.Time{}
			l.updateGauges()
			if !l.awaitEvent(ctx) {
				return
			}
			continue
		}
		deadline = start.Add(step.Duration)
		if !l.waitUntil(ctx, timer, deadline) {
			return
		}
		end := time.Now()
		l.m.stepLag.Observe(end.Sub(deadline).Seconds())
		if l.observe != nil {
			l.observe(start, deadline, end, len(step.Tokens))
		}
		l.deliver(step, start, end)
	}
}

// fineWindow is the final stretch before a step's modelled end that the
// loop sleeps with fineSleep instead of a timer (see sleep_linux.go).
const fineWindow = 2 * time.Millisecond

// waitUntil sleeps until deadline, on a timer for the bulk, taking requests
// and aborts while it waits so that handlers never block for a whole step,
// then with fineSleep for the last fineWindow. It returns false when ctx
// ends first.
func (l *loop) waitUntil(ctx context.Context, timer *time.Timer, deadline time.Time) bool {
	for {
		d := time.Until(deadline)
		if d <= 0 {
			return true
		}
		if d <= fineWindow {
			fineSleep(d)
			return true
		}
		timer.Reset(d - fineWindow)
		select {
		case <-timer.C:
		case s := <-l.addCh:
			timer.Stop()
			l.add(s)
		case s := <-l.abortCh:
			timer.Stop()
			l.drop(s)
		case <-ctx.Done():
			timer.Stop()
			return false
		}
	}
}

func (l *loop) add(s *seq) {
	if s.cancelled.Load() {
		return // its client went away before the loop took it
	}
	err := l.sched.Add(engine.Request{ID: s.id, PromptTokens: s.promptTokens, OutputTokens: s.outputTokens, Tokens: s.promptIDs})
	if err != nil {
		// The handler validated the request against the same limits, so
		// this is a bug; end the request rather than leave it hanging.
		s.errMsg = "The engine could not schedule the request: " + err.Error()
		s.state.Store(stateAborted)
		s.poke()
		return
	}
	l.seqs[s.id] = s
}

// drop aborts s in the scheduler (a client went away) and frees its blocks
// now, so /metrics shows the freed KV cache at once.
func (l *loop) drop(s *seq) {
	if _, ok := l.seqs[s.id]; !ok {
		return
	}
	delete(l.seqs, s.id)
	l.sched.Abort(s.id)
	l.updateGauges()
}

// deliver hands the step's tokens to their requests and records metrics.
// Metrics are updated before any handler is woken, so a client that has
// its answer and then scrapes /metrics sees its request counted.
func (l *loop) deliver(step engine.Step, start, end time.Time) {
	l.m.preemptions.Add(float64(len(step.Preempted)))
	l.m.prefixQueries.Add(float64(step.PrefixCacheQueries))
	l.m.prefixHits.Add(float64(step.PrefixCacheHits))
	l.m.iterationTokens.Observe(float64(step.PrefillTokens + step.DecodeSeqs))
	ready := l.ready[:0]
	for _, ev := range step.Tokens {
		s, ok := l.seqs[ev.ID]
		if !ok {
			continue // aborted while the step ran
		}
		if ev.Index < int(s.produced.Load()) {
			continue // never hand out a token twice
		}
		if ev.Index == 0 {
			l.m.firstToken(s, start, end)
		} else {
			itl := end.Sub(s.lastTokenAt).Seconds()
			l.m.itl.Observe(itl)
			l.m.tpot.Observe(itl)
		}
		s.lastTokenAt = end
		s.produced.Store(int32(ev.Index + 1))
		if ev.Finished || ev.Index+1 >= s.outputTokens {
			delete(l.seqs, s.id)
			l.m.finished(s, ev.Index+1, end)
			s.state.Store(stateFinished)
		}
		ready = append(ready, s)
	}
	l.m.genTokens.Add(float64(len(ready)))
	l.updateGauges()
	for i, s := range ready {
		s.poke()
		ready[i] = nil
	}
	l.ready = ready
}

func (l *loop) updateGauges() {
	st := l.sched.Stats()
	l.m.running.Set(float64(st.Running))
	l.m.waiting.Set(float64(st.Waiting))
	l.m.kvUsage.Set(st.KVUsage())
	l.m.gpuCacheUsage.Set(st.KVUsage())
}

// abortAll ends every request still in flight when the loop stops, so that
// streams end with an error event instead of hanging.
func (l *loop) abortAll() {
	for id, s := range l.seqs {
		l.sched.Abort(id)
		delete(l.seqs, id)
		s.errMsg = errShutdownMsg
		s.state.Store(stateAborted)
		s.poke()
	}
	l.updateGauges()
}

// awaitEvent blocks until a request or an abort arrives and applies it; it
// returns false when ctx is done.
func (l *loop) awaitEvent(ctx context.Context) bool {
	select {
	case s := <-l.addCh:
		l.add(s)
	case s := <-l.abortCh:
		l.drop(s)
	case <-ctx.Done():
		return false
	}
	return true
}
