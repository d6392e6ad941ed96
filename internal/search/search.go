// Package search is the lab's one find-max search: the highest arrival
// rate whose run meets the SLO. The live load generator (llmlab bench
// --find-max), the offline simulator (llmlab sim run --find-max) and the
// tuner all call Run with their own Prober, so a live and an offline
// maximum come from the same sequence of rates.
//
// The search grows the rate by Growth from Start until a step fails (or
// shrinks it while the first steps fail), then bisects between the highest
// pass and the lowest failure until (fail − pass)/pass ≤ Precision, all
// within MaxSteps probes. It assumes that meeting the SLO is monotone in
// the rate; every probe is returned, so a reader can see the boundary.
package search

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Prober runs one probe at a rate (requests/s) and says whether it met the
// SLO. step counts probes from 1 (a prober may derive a seed from it). An
// error ends the search; a prober interrupted by ctx returns the figures it
// has together with an error wrapping ctx.Err().
type Prober[R any] interface {
	Probe(ctx context.Context, step int, rate float64) (result R, pass bool, err error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc[R any] func(ctx context.Context, step int, rate float64) (R, bool, error)

// Probe calls f.
func (f ProberFunc[R]) Probe(ctx context.Context, step int, rate float64) (R, bool, error) {
	return f(ctx, step, rate)
}

// Options bound the search.
type Options struct {
	// Start is the first probe's rate (default 1).
	Start float64
	// Growth multiplies (or divides) the rate until the boundary is
	// bracketed (default 2).
	Growth float64
	// Precision ends the bisection once (fail − pass)/pass ≤ Precision
	// (default 0.05).
	Precision float64
	// MaxSteps is the most probes (default 8).
	MaxSteps int
	// Min is the lowest rate probed (default: none); when it fails too the
	// search ends with no passing rate.
	Min float64
	// Max is the highest rate probed (default: none); when it passes the
	// search ends with it as a lower bound.
	Max float64
}

func (o Options) withDefaults() Options {
	if !(o.Start > 0) {
		o.Start = 1
	}
	if !(o.Growth > 1) {
		o.Growth = 2
	}
	if !(o.Precision > 0) {
		o.Precision = 0.05
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 8
	}
	if o.Max > 0 {
		o.Start = min(o.Start, o.Max)
	}
	o.Start = max(o.Start, o.Min)
	return o
}

// Step is one probe.
type Step[R any] struct {
	Step   int
	Rate   float64
	Pass   bool
	Result R
	// Interrupted is set on a probe cut short by ctx: it neither passed
	// nor failed, and the search did not use it.
	Interrupted bool
}

// Result is the outcome of a search.
type Result[R any] struct {
	// MaxRate is the highest rate that passed (0: none did).
	MaxRate float64
	// FailRate is the lowest rate that failed (0: none did, so MaxRate is
	// only a lower bound).
	FailRate float64
	Steps    []Step[R]
}

// Best returns the passing probe with the highest rate.
func (r *Result[R]) Best() (Step[R], bool) {
	var b Step[R]
	ok := false
	for _, s := range r.Steps {
		if s.Pass && (!ok || s.Rate > b.Rate) {
			b, ok = s, true
		}
	}
	return b, ok
}

// Run searches with p. onStep, when non-nil, is called after each probe
// (for a progress line). On an error, including cancellation, it returns
// the probes made so far (an interrupted probe marked so) with the error.
func Run[R any](ctx context.Context, opts Options, p Prober[R], onStep func(Step[R])) (out Result[R], err error) {
	opts = opts.withDefaults()
	pass, fail := 0.0, math.Inf(1)
	finish := func() {
		out.MaxRate = pass
		if !math.IsInf(fail, 1) {
			out.FailRate = fail
		}
	}
	defer finish() // on every return, into the named result
	rate := opts.Start
	for step := 1; step <= opts.MaxSteps; step++ {
		res, ok, err := p.Probe(ctx, step, rate)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				s := Step[R]{Step: step, Rate: rate, Result: res, Interrupted: true}
				out.Steps = append(out.Steps, s)
				if onStep != nil {
					onStep(s)
				}
				return out, fmt.Errorf("find-max: %w", err)
			}
			return out, fmt.Errorf("find-max step %d at %.3g req/s: %w", step, rate, err)
		}
		s := Step[R]{Step: step, Rate: rate, Pass: ok, Result: res}
		out.Steps = append(out.Steps, s)
		if onStep != nil {
			onStep(s)
		}
		if ok {
			pass = math.Max(pass, rate)
		} else {
			fail = math.Min(fail, rate)
		}
		next, more := nextRate(opts, rate, pass, fail)
		if !more {
			return out, nil
		}
		rate = next
	}
	return out, nil
}

// nextRate picks the next probe, or says the search is done.
func nextRate(o Options, rate, pass, fail float64) (float64, bool) {
	switch {
	case math.IsInf(fail, 1): // every probe passed: grow
		if o.Max > 0 && rate >= o.Max {
			return 0, false
		}
		next := rate * o.Growth
		if o.Max > 0 {
			next = min(next, o.Max)
		}
		return next, true
	case pass == 0: // every probe failed: shrink
		if rate <= o.Min {
			return 0, false
		}
		return max(rate/o.Growth, o.Min), true
	default:
		if (fail-pass)/pass <= o.Precision {
			return 0, false
		}
		return (pass + fail) / 2, true
	}
}
