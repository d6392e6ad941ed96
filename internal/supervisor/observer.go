package supervisor

import (
	"net"
	"time"
)

// Transition is one change of the worker's state, as the state machine
// recorded it.
type Transition struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	At    time.Time `json:"at"`
	Cause string    `json:"cause"`
	// ColdStartSeconds is the start-up's duration on a transition to
	// READY from STARTING (0 otherwise).
	ColdStartSeconds float64 `json:"cold_start_seconds,omitempty"`
	// Error is the worker's failure on a transition to FAILED.
	Error string `json:"error,omitempty"`
}

// Observer learns of every transition: metrics, the gateway's status page
// and the demo timeline all listen here instead of the supervisor knowing
// each of them. WorkerTransition runs under the supervisor's lock, in
// transition order; it must be quick and must not call the supervisor.
type Observer interface {
	WorkerTransition(Transition)
}

// recentTransitions is how many transitions Transitions remembers.
const recentTransitions = 32

// transitionRing keeps the latest transitions, oldest first when read.
type transitionRing struct {
	buf  [recentTransitions]Transition
	next int
	n    int
}

func (r *transitionRing) add(t Transition) {
	r.buf[r.next] = t
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

func (r *transitionRing) list() []Transition {
	out := make([]Transition, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.next-r.n+i+len(r.buf))%len(r.buf)])
	}
	return out
}

// recordLocked remembers a transition and tells the observer.
func (s *Supervisor) recordLocked(from, to State, cause string) {
	t := Transition{From: from.String(), To: to.String(), At: s.since, Cause: cause}
	if to == Ready && from == Starting {
		t.ColdStartSeconds = s.coldStart.Seconds()
	}
	if to == Failed && s.lastErr != nil {
		t.Error = s.lastErr.Error()
	}
	s.recent.add(t)
	if o := s.cfg.Observer; o != nil {
		o.WorkerTransition(t)
	}
}

// Transitions returns the latest transitions (at most 32), oldest first.
func (s *Supervisor) Transitions() []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.list()
}

// reachable is the address to reach a worker bound to host: a worker on
// every interface (0.0.0.0, ::, so that a scraper in another container
// reaches it) is reached on loopback.
func reachable(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return host
}
