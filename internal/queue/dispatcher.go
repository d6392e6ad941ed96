package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Dispatcher admits requests to the worker: at most maxInFlight hold a place
// at once; the rest wait in FIFO order in a bounded Queue. Places are handed
// over directly from a finishing request to the oldest waiter, so a newcomer
// can never overtake the queue.
//
// A request takes one lock to get its place and one to give it back; the
// counts that admission reads on every request (Stats, MaxInFlight) are
// published as atomics, so reading them takes none. The gateway's CPU
// profile at 40k requests/s had a tenth of its own time in lock traffic on
// shared state (docs/results.md §13.5).
type Dispatcher struct {
	mu          sync.Mutex
	q           Queue
	maxInFlight int
	inFlight    int
	held        *Place // places in flight, an intrusive list (for Granted)
	// onChange, if set, is called under mu with
	// the new queue depth and in-flight count after every change, for metrics.
	onChange func(depth, inFlight int)

	// Copies of len(q), inFlight and maxInFlight, written under mu.
	depthNow, inFlightNow, maxNow atomic.Int64
}

// Place is one request's hold on a dispatcher. Its storage is the
// caller's (a request embeds it, so holding a place allocates nothing);
// the zero value is ready for AcquirePlace, and a Place may be used again once
// released.
type Place struct {
	d          *Dispatcher
	held       bool // in d's list (d.mu)
	prev, next *Place
	t          Ticket // used while waiting in the queue
	granted    atomic.Int64
}

// SetGranted records when the holder could start (for admission's
// prediction, which reads it through Granted); until then the place is
// not counted there.
func (p *Place) SetGranted(t time.Time) { p.granted.Store(t.UnixNano()) }

// NewDispatcher returns a dispatcher over q allowing maxInFlight (>= 1)
// requests at once. onChange may be nil.
func NewDispatcher(q Queue, maxInFlight int, onChange func(depth, inFlight int)) *Dispatcher {
	if maxInFlight < 1 {
		maxInFlight = 1
	}
	d := &Dispatcher{q: q, maxInFlight: maxInFlight, onChange: onChange}
	d.maxNow.Store(int64(maxInFlight))
	return d
}

// AcquirePlace blocks until p holds a place (until p.Release), the queue
// is full (ErrFull, at once), or ctx is done; it returns how long the
// caller waited. p is the caller's storage. A queued caller whose ctx
// ends is removed and its place in line freed.
func (d *Dispatcher) AcquirePlace(ctx context.Context, p *Place) (waited time.Duration, err error) {
	p.d = d
	p.granted.Store(0)
	d.mu.Lock()
	if d.inFlight < d.maxInFlight && d.q.Len() == 0 {
		d.inFlight++
		d.holdLocked(p)
		d.changedLocked()
		d.mu.Unlock()
		return 0, nil
	}
	p.t = Ticket{ready: make(chan struct{}), place: p}
	t := &p.t
	if err := d.q.Push(t); err != nil {
		d.mu.Unlock()
		return 0, err
	}
	d.changedLocked()
	d.mu.Unlock()

	start := time.Now()
	select {
	case <-t.Ready():
		return time.Since(start), nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	if t.granted {
		// Granted while we were giving up: hand the place on.
		d.releaseLocked(p)
	} else {
		d.q.Remove(t)
	}
	d.changedLocked()
	d.mu.Unlock()
	return time.Since(start), fmt.Errorf("waiting in queue: %w", context.Cause(ctx))
}

// Release gives the place back (to the oldest waiter, if any). Calls
// after the first, and on a place never acquired, do nothing.
func (p *Place) Release() {
	d := p.d
	if d == nil {
		return
	}
	d.mu.Lock()
	if p.held {
		d.releaseLocked(p)
		d.changedLocked()
	}
	d.mu.Unlock()
}

func (d *Dispatcher) holdLocked(p *Place) {
	p.held, p.prev, p.next = true, nil, d.held
	if d.held != nil {
		d.held.prev = p
	}
	d.held = p
}

func (d *Dispatcher) unholdLocked(p *Place) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		d.held = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.held, p.prev, p.next = false, nil, nil
}

// releaseLocked takes p's place and gives it to the oldest waiter, if any.
func (d *Dispatcher) releaseLocked(p *Place) {
	d.unholdLocked(p)
	if d.inFlight > d.maxInFlight {
		d.inFlight-- // the limit was lowered: this place is not passed on
		return
	}
	if d.grantLocked() {
		return // the place passes on; inFlight is unchanged
	}
	d.inFlight--
}

// grantLocked gives a place to the oldest waiter, if there is one.
func (d *Dispatcher) grantLocked() bool {
	t := d.q.Pop()
	if t == nil {
		return false
	}
	t.granted = true
	if t.place != nil {
		d.holdLocked(t.place)
	}
	close(t.ready)
	return true
}

func (d *Dispatcher) changedLocked() {
	depth := d.q.Len()
	d.depthNow.Store(int64(depth))
	d.inFlightNow.Store(int64(d.inFlight))
	if d.onChange != nil {
		d.onChange(depth, d.inFlight)
	}
}

// Stats returns the queue depth and the number of requests holding a place.
func (d *Dispatcher) Stats() (depth, inFlight int) {
	return int(d.depthNow.Load()), int(d.inFlightNow.Load())
}

// MaxInFlight is the current limit.
func (d *Dispatcher) MaxInFlight() int { return int(d.maxNow.Load()) }

// Granted appends to dst when each place in flight was granted (those
// whose holder called SetGranted), in no particular order.
func (d *Dispatcher) Granted(dst []time.Time) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := d.held; p != nil; p = p.next {
		if ns := p.granted.Load(); ns != 0 {
			dst = append(dst, time.Unix(0, ns))
		}
	}
	return dst
}

// SetMaxInFlight changes the limit at run time (n < 1 counts as 1). A
// higher limit grants places to the oldest waiters at once; a lower one
// takes effect as requests finish (none is cut).
func (d *Dispatcher) SetMaxInFlight(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxInFlight = max(n, 1)
	d.maxNow.Store(int64(d.maxInFlight))
	for d.inFlight < d.maxInFlight && d.grantLocked() {
		d.inFlight++
	}
	d.changedLocked()
}

// QueueCap is the queue's bound.
func (d *Dispatcher) QueueCap() int { return d.q.Cap() }
