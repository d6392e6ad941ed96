// Package admission holds the gateway's overload policies, apart from the
// request path that applies them: SLO-aware admission (a Retry-After from
// the measured drain rate, early rejection of requests that would finish
// too late), the degradation ladder, and the guardrail of the
// micro-batching window. Every policy takes the time as an argument, so
// tests drive it with a fake clock; none starts a goroutine.
//
// The contract with the gateway: the gateway reports every finished
// request to a Meter (Done), asks the Policy at each arrival (Check) and on
// every refusal (RetryAfter), and feeds the Ladder and the Guard windowed
// signals once a tick. docs/admission.md explains the models.
package admission

import (
	"fmt"
	"math"
	"time"
)

// Reasons of a refusal: the label of llmlab_rejected_total and the value
// of the X-LLMLab-Reason header.
const (
	ReasonQueueFull = "queue_full" // no room left in the bounded queue
	ReasonDeadline  = "deadline"   // predicted to finish after the SLO or the client's deadline
	ReasonShed      = "shed"       // degradation tier 4: nothing waits
)

// Rejection is a refusal for load: the gateway answers 429.
type Rejection struct {
	Reason    string
	Predicted time.Duration // predicted end-to-end time (deadline)
	Budget    time.Duration // what it had to beat
}

func (r *Rejection) Error() string {
	switch r.Reason {
	case ReasonDeadline:
		return fmt.Sprintf("rejected at arrival: predicted latency %.2f s (queue wait + service time, from the last completions) exceeds the deadline of %.2f s; retry later",
			r.Predicted.Seconds(), r.Budget.Seconds())
	case ReasonShed:
		return "rejected at arrival: overloaded (degradation tier 4 sheds every request that would wait); retry later"
	}
	return "rejected: " + r.Reason
}

// Policy decides at arrival.
type Policy struct {
	// SLO is the end-to-end objective a request must be predicted to
	// meet (the p95 target of configs/slo.yaml) when it names no deadline.
	SLO time.Duration
	// Deadline turns deadline-aware early rejection on.
	Deadline bool
	// MaxRetryAfter clamps the Retry-After (default 60 s).
	MaxRetryAfter time.Duration
	Meter         *Meter
}

// Load is the dispatcher's state at a request's arrival.
type Load struct {
	Depth, InFlight, MaxInFlight int
}

// waits reports whether a request arriving now would queue.
func (l Load) waits() bool { return l.Depth > 0 || l.InFlight >= l.MaxInFlight }

// Predict is a new request's expected end-to-end time, and whether there
// were measurements to predict from. Wait: its place in line divided by the
// measured completion rate (requests leave the queue as fast as they
// finish); service: the recent p95 of the time from a place to the answer.
// Both come from the last Window of completions; with none, nothing is
// predicted (the bounded queue and the ladder still act).
func (p *Policy) Predict(now time.Time, l Load) (time.Duration, bool) {
	snap := p.Meter.Snapshot(now)
	if snap.Completions == 0 {
		return 0, false
	}
	var wait time.Duration
	if l.waits() {
		if snap.Rate <= 0 {
			return 0, false
		}
		wait = time.Duration(float64(l.Depth+1) / snap.Rate * float64(time.Second))
	}
	return wait + snap.ServiceP95, true
}

// Check admits or refuses a request at arrival. deadline is the client's
// own (0: none, the SLO applies); tier 4 of the ladder sheds whatever
// would wait.
func (p *Policy) Check(now time.Time, l Load, deadline time.Duration, shed bool) error {
	if shed && l.waits() {
		return &Rejection{Reason: ReasonShed}
	}
	budget := p.SLO
	if deadline > 0 {
		budget = deadline
	} else if !p.Deadline {
		return nil
	}
	if budget <= 0 {
		return nil
	}
	pred, ok := p.Predict(now, l)
	if ok && pred > budget {
		return &Rejection{Reason: ReasonDeadline, Predicted: pred, Budget: budget}
	}
	return nil
}

// RetryAfter is when a refused client should come back, in whole seconds:
// the time the queue needs to drain at the measured completion rate
// (depth ÷ completions per second), clamped to [1, MaxRetryAfter]. With no
// completions measured it returns fallback (rounded up, at least 1).
func (p *Policy) RetryAfter(now time.Time, depth int, fallback time.Duration) int {
	maxRA := p.MaxRetryAfter
	if maxRA <= 0 {
		maxRA = time.Minute
	}
	secs := fallback.Seconds()
	if snap := p.Meter.Snapshot(now); snap.Rate > 0 {
		secs = float64(max(depth, 1)) / snap.Rate
	}
	return int(min(max(math.Ceil(secs), 1), math.Ceil(maxRA.Seconds())))
}

// Reasons lists the refusal reasons, for metrics that start every series
// at 0.
func Reasons() []string { return []string{ReasonQueueFull, ReasonDeadline, ReasonShed} }
