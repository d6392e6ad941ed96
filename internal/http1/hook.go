package http1

import (
	"context"
	"sync/atomic"
)

// reqContext is a request's context: its cancelCtx, as net/http's (Err,
// Done, Value and context.Cause behave as usual), plus one hook the server
// runs when the request's context ends. internal/upstream registers its
// abort there: context.AfterFunc cost that exchange four allocations and
// three lock round trips per request (docs/results.md §13.5).
type reqContext struct {
	context.Context
	state atomic.Int32 // hookIdle, hookSetting, hookArmed, hookFired
	f     func()
}

const (
	hookIdle int32 = iota
	hookSetting
	hookArmed
	hookFired
)

// OnDone registers f to run once the request's context is done: the
// client left, the server is aborting, or the request ended. f runs in the
// goroutine that ended the context, so it must not block; if the context
// is already done it runs at once. OnDone reports false, registering
// nothing, when a function is already registered or has run: the caller
// then uses context.AfterFunc.
func (rc *reqContext) OnDone(f func()) bool {
	if !rc.state.CompareAndSwap(hookIdle, hookSetting) {
		return false
	}
	rc.f = f
	rc.state.Store(hookArmed)
	if rc.Err() != nil {
		rc.fire() // ended before f was armed: whoever ended it has fired already
	}
	return true
}

// StopOnDone unregisters the function, reporting whether that stopped it
// from running (false: it has run or is running, or none is registered),
// as context.AfterFunc's stop does. A stopped hook can be registered
// again.
func (rc *reqContext) StopOnDone() bool {
	return rc.state.CompareAndSwap(hookArmed, hookIdle)
}

// fire runs the registered function, once. Callers end the context first,
// so that f sees it done.
func (rc *reqContext) fire() {
	if rc.state.CompareAndSwap(hookArmed, hookFired) {
		rc.f()
	}
}
