package queue

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Dispatcher admits requests to the worker: at most maxInFlight hold a place
// at once; the rest wait in FIFO order in a bounded Queue. Places are handed
// over directly from a finishing request to the oldest waiter, so a newcomer
// can never overtake the queue.
type Dispatcher struct {
	mu          sync.Mutex
	q           Queue
	maxInFlight int
	inFlight    int
	// onChange, if set, is called under mu with
	// the new queue depth and in-flight count after every change, for metrics.
	onChange func(depth, inFlight int)
}

// NewDispatcher returns a dispatcher over q allowing maxInFlight (>= 1)
// requests at once. onChange may be nil.
func NewDispatcher(q Queue, maxInFlight int, onChange func(depth, inFlight int)) *Dispatcher {
	if maxInFlight < 1 {
		maxInFlight = 1
	}
	return &Dispatcher{q: q, maxInFlight: maxInFlight, onChange: onChange}
}

// Acquire blocks until the caller holds a place, the queue is full
// (ErrFull, at once), or ctx is done (ctx's error; a queued caller is removed
// and its place in line freed). On success it returns how long the caller
// waited and a release function that must be called exactly once.
func (d *Dispatcher) Acquire(ctx context.Context) (release func(), waited time.Duration, err error) {
	d.mu.Lock()
	if d.inFlight < d.maxInFlight && d.q.Len() == 0 {
		d.inFlight++
		d.changedLocked()
		d.mu.Unlock()
		return d.releaseOnce(), 0, nil
	}
	t := NewTicket()
	if err := d.q.Push(t); err != nil {
		d.mu.Unlock()
		return nil, 0, err
	}
	d.changedLocked()
	d.mu.Unlock()

	start := time.Now()
	select {
	case <-t.Ready():
		return d.releaseOnce(), time.Since(start), nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	if t.granted {
		// Granted while we were giving up: hand the place on.
		d.releaseLocked()
	} else {
		d.q.Remove(t)
	}
	d.changedLocked()
	d.mu.Unlock()
	return nil, time.Since(start), fmt.Errorf("waiting in queue: %w", context.Cause(ctx))
}

func (d *Dispatcher) releaseOnce() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.releaseLocked()
			d.changedLocked()
			d.mu.Unlock()
		})
	}
}

// releaseLocked gives the caller's place to the oldest waiter, if any.
func (d *Dispatcher) releaseLocked() {
	if d.inFlight > d.maxInFlight {
		d.inFlight-- // the limit was lowered: this place is not passed on
		return
	}
	if t := d.q.Pop(); t != nil {
		t.granted = true
		close(t.ready)
		return // the place passes on; inFlight is unchanged
	}
	d.inFlight--
}

func (d *Dispatcher) changedLocked() {
	if d.onChange != nil {
		d.onChange(d.q.Len(), d.inFlight)
	}
}

// Stats returns the queue depth and the number of requests holding a place.
func (d *Dispatcher) Stats() (depth, inFlight int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.q.Len(), d.inFlight
}

// MaxInFlight is the current limit.
func (d *Dispatcher) MaxInFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxInFlight
}

// SetMaxInFlight changes the limit at run time (n < 1 counts as 1). A
// higher limit grants places to the oldest waiters at once; a lower one
// takes effect as requests finish (none is cut).
func (d *Dispatcher) SetMaxInFlight(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxInFlight = max(n, 1)
	for d.inFlight < d.maxInFlight {
		t := d.q.Pop()
		if t == nil {
			break
		}
		t.granted = true
		close(t.ready)
		d.inFlight++
	}
	d.changedLocked()
}

// QueueCap is the queue's bound.
func (d *Dispatcher) QueueCap() int { return d.q.Cap() }
