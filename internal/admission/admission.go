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
	"slices"
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
		return fmt.Sprintf("rejected at arrival: predicted latency %.2f s (queue wait + service time, from the last completions) would not meet the deadline of %.2f s; retry later",
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
	// Headroom is the fraction of the budget a prediction may use (0:
	// 0.9). The prediction is a central estimate (the mean wait at the
	// measured rate plus the p95 service time) while the target is a p95,
	// so it must leave room for the spread of the wait.
	Headroom float64
	// MaxRetryAfter clamps the Retry-After (default 60 s).
	MaxRetryAfter time.Duration
	Meter         *Meter
}

// Load is the dispatcher's state at a request's arrival.
type Load struct {
	Depth, InFlight, MaxInFlight int
	// Granted holds when each request in flight got its place (nil: not
	// known; the prediction then uses the completion rate alone).
	Granted []time.Time
}

// waits reports whether a request arriving now would queue.
func (l Load) waits() bool { return l.Depth > 0 || l.InFlight >= l.MaxInFlight }

// Predict is a new request's expected end-to-end time, and whether there
// were measurements to predict from. It replays the dispatcher with the
// measured service times: every place frees when its request is expected
// to end (its grant + the recent median service time, or now if overdue),
// the requests ahead take the places in FIFO order, and the new request's
// own service is the recent p95. Without grant times it falls back to
// the drain rate: (depth + 1) ÷ completions per second. Both come from the
// last Window of completions; with none, nothing is predicted (the bounded
// queue and the ladder still act).
func (p *Policy) Predict(now time.Time, l Load) (time.Duration, bool) {
	snap := p.Meter.Snapshot(now)
	if snap.Completions == 0 {
		return 0, false
	}
	if !l.waits() {
		return snap.ServiceP95, true
	}
	if len(l.Granted) == 0 || l.MaxInFlight <= 0 {
		if snap.Rate <= 0 {
			return 0, false
		}
		return time.Duration(float64(l.Depth+1)/snap.Rate*float64(time.Second)) + snap.ServiceP95, true
	}
	return startAt(now, l, snap.ServiceP50).Sub(now) + snap.ServiceP95, true
}

// startAt is when a request that arrives now behind l.Depth others gets a
// place, if each place frees after a service time of svc.
func startAt(now time.Time, l Load, svc time.Duration) time.Time {
	free := make([]time.Time, 0, max(l.MaxInFlight, len(l.Granted)))
	for _, g := range l.Granted {
		free = append(free, later(g.Add(svc), now))
	}
	for len(free) < l.MaxInFlight {
		free = append(free, now)
	}
	slices.SortFunc(free, func(a, b time.Time) int { return a.Compare(b) })
	// A lowered limit leaves more requests in flight than places: the
	// extra ones free nothing.
	free = free[len(free)-l.MaxInFlight:]
	h := timeHeap(free)
	for range l.Depth {
		t := h[0]
		h[0] = t.Add(svc)
		h.down()
	}
	return h[0]
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// timeHeap is a min-heap of times (sorted input is a valid heap).
type timeHeap []time.Time

func (h timeHeap) down() {
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].Before(h[m]) {
			m = l
		}
		if r < len(h) && h[r].Before(h[m]) {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Check admits or refuses a request at arrival. deadline is the client's
// own (0: none, the SLO applies); tier 4 of the ladder sheds whatever
// would wait.
func (p *Policy) Check(now time.Time, l Load, deadline time.Duration, shed bool) error {
	if shed && l.waits() {
		return &Rejection{Reason: ReasonShed}
	}
	if !l.waits() {
		// A free place: no wait to predict. A service time beyond the
		// budget is the worker's state, for the ladder; refusing here
		// would only leave the place idle (the first A/B lost all its
		// goodput that way).
		return nil
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
	h := p.Headroom
	if h <= 0 || h > 1 {
		h = 0.9
	}
	pred, ok := p.Predict(now, l)
	if ok && pred > time.Duration(h*float64(budget)) {
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
