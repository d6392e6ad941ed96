package gateway

import (
	"context"
	"time"
)

// lazyDeadline is context.WithDeadlineCause(parent, deadline, cause) made
// only when something first asks for it. Most admissions find a free place
// and a READY worker at once and never look at the context they are given;
// for them it saves the cancel context, its timer and its registration with
// the parent on every request. The deadline is fixed when lazyDeadline is
// made, so one made late expires at the same moment. Not for concurrent
// use: admit uses it from one goroutine.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time
	cause    error
	ctx      context.Context
	cancel   context.CancelFunc
}

func (l *lazyDeadline) get() context.Context {
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithDeadlineCause(l.parent, l.deadline, l.cause)
	}
	return l.ctx
}

// stop releases the timer, if one was made.
func (l *lazyDeadline) stop() {
	if l.cancel != nil {
		l.cancel()
	}
}

func (l *lazyDeadline) Deadline() (time.Time, bool) { return l.get().Deadline() }
func (l *lazyDeadline) Done() <-chan struct{}       { return l.get().Done() }
func (l *lazyDeadline) Err() error                  { return l.get().Err() }
func (l *lazyDeadline) Value(key any) any           { return l.get().Value(key) }
