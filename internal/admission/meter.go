package admission

import (
	"slices"
	"sync"
	"time"
)

// Meter keeps the last completions of a sliding window: when each ended,
// how long it waited for a place and how long it was served. It is safe for
// concurrent use; Done costs a lock and a ring write, Snapshot recomputes
// its figures at most every Refresh.
type Meter struct {
	mu      sync.Mutex
	window  time.Duration
	refresh time.Duration
	started time.Time
	ring    []sample
	next    int
	n       int
	snap    Snapshot
	snapAt  time.Time
	buf     []float64
}

type sample struct {
	at            time.Time
	wait, service time.Duration
}

// Snapshot is the window's figures.
type Snapshot struct {
	Completions int     // in the window
	Rate        float64 // completions per second over the window
	ServiceP95  time.Duration
	ServiceP50  time.Duration
	WaitP95     time.Duration // time in the queue
	E2EP95      time.Duration // wait + service
}

// NewMeter keeps up to capacity completions of the last window, measured
// from started (so the rate is not diluted before a full window has
// passed). Snapshots are cached for refresh.
func NewMeter(started time.Time, window, refresh time.Duration, capacity int) *Meter {
	return &Meter{window: window, refresh: refresh, started: started, ring: make([]sample, capacity)}
}

// Done records a completion at time at.
func (m *Meter) Done(at time.Time, wait, service time.Duration) {
	m.mu.Lock()
	m.ring[m.next] = sample{at, wait, service}
	m.next = (m.next + 1) % len(m.ring)
	m.n = min(m.n+1, len(m.ring))
	m.mu.Unlock()
}

// Snapshot returns the figures of the window ending at now.
func (m *Meter) Snapshot(now time.Time) Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.snapAt.IsZero() && now.Sub(m.snapAt) < m.refresh && !now.Before(m.snapAt) {
		return m.snap
	}
	from := now.Add(-m.window)
	span := m.window
	if d := now.Sub(m.started); d < span {
		span = max(d, time.Second) // not a rate from a few milliseconds
	}
	var s Snapshot
	svc := m.buf[:0]
	var waits, e2e []float64
	for i := range m.n {
		x := m.ring[i]
		if x.at.Before(from) || x.at.After(now) {
			continue
		}
		s.Completions++
		svc = append(svc, x.service.Seconds())
		waits = append(waits, x.wait.Seconds())
		e2e = append(e2e, (x.wait + x.service).Seconds())
	}
	m.buf = svc
	if s.Completions > 0 {
		s.Rate = float64(s.Completions) / span.Seconds()
		s.ServiceP95 = seconds(quantile(svc, 0.95))
		s.ServiceP50 = seconds(quantile(svc, 0.50))
		s.WaitP95 = seconds(quantile(waits, 0.95))
		s.E2EP95 = seconds(quantile(e2e, 0.95))
	}
	m.snap, m.snapAt = s, now
	return s
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// quantile sorts xs and returns its q-quantile (nearest rank).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(q*float64(len(xs))+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
