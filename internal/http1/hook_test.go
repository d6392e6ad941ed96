package http1_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
)

// hookContext is what internal/upstream asks of a request's context.
type hookContext interface {
	OnDone(f func()) bool
	StopOnDone() bool
}

// TestRequestContextHook checks the hook a request's context offers
// (internal/upstream registers its abort there instead of
// context.AfterFunc): it runs once when the client leaves, when the
// server's base context is cancelled, and when the request ends with it
// still registered; a stopped hook does not run and can be registered
// again; one registered on an ended context runs at once; a second
// registration is refused (the caller falls back to context.AfterFunc).
func TestRequestContextHook(t *testing.T) {
	type result struct {
		fired     bool
		cause     error
		refused   bool // a second OnDone while one is armed
		stopFirst bool // StopOnDone of the first registration
	}
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, rc *rawConn, cancelBase context.CancelFunc)
		want error
	}{
		{"client leaves", func(_ *testing.T, rc *rawConn, _ context.CancelFunc) { rc.c.Close() }, http1.ErrClientGone},
		{"base context cancelled", func(_ *testing.T, _ *rawConn, cancel context.CancelFunc) { cancel() }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := newSignal()
			results := make(chan result, 1)
			base, cancelBase := context.WithCancel(context.Background())
			defer cancelBase()
			ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h, ok := r.Context().(hookContext)
				if !ok {
					results <- result{}
					return
				}
				var res result
				// A first registration, stopped: it must never run.
				stopped := make(chan struct{}, 1)
				if !h.OnDone(func() { stopped <- struct{}{} }) {
					t.Error("first OnDone refused")
				}
				res.stopFirst = h.StopOnDone()
				fired := make(chan struct{}, 2)
				if !h.OnDone(func() { fired <- struct{}{} }) {
					t.Error("OnDone after a stop refused")
				}
				res.refused = !h.OnDone(func() { t.Error("a refused hook ran") })
				entered.fire()
				select {
				case <-fired:
					res.fired = true
				case <-time.After(2 * wait):
				}
				res.cause = context.Cause(r.Context())
				select {
				case <-stopped:
					t.Error("a stopped hook ran")
				default:
				}
				// On an ended context a hook runs at once, here.
				ran := false
				h.StopOnDone()
				if h.OnDone(func() { ran = true }) && !ran {
					t.Error("a hook registered after the end did not run at once")
				}
				results <- res
			}), func(s *http1.Server) {
				s.BaseContext = func(net.Listener) context.Context { return base }
			})
			rc := ts.dial(t)
			rc.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
			entered.wait(t, "the handler registering its hook")
			tc.end(t, rc, cancelBase)
			res := <-results
			if !res.fired || !res.refused || !res.stopFirst || !errors.Is(res.cause, tc.want) {
				t.Fatalf("got %+v, want the hook fired once with cause %v, a second OnDone refused and StopOnDone true", res, tc.want)
			}
		})
	}
}

// TestRequestContextHookAtEnd: a hook still registered when the handler
// returns runs then (the request's context ends with it), once.
func TestRequestContextHookAtEnd(t *testing.T) {
	fired := make(chan struct{}, 4)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := r.Context().(hookContext); ok {
			h.OnDone(func() { fired <- struct{}{} })
		}
		w.Write([]byte("ok"))
	}))
	rc := ts.dial(t)
	for range 2 {
		if got := rc.roundTrip("GET", "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"); got.StatusCode != 200 {
			t.Fatalf("status %d", got.StatusCode)
		}
		select {
		case <-fired:
		case <-time.After(wait):
			t.Fatal("the hook did not run at the request's end")
		}
	}
	select {
	case <-fired:
		t.Fatal("a hook ran twice")
	case <-time.After(50 * time.Millisecond):
	}
}
