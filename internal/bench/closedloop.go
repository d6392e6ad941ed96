package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
)

// closedLoop runs Concurrency clients, each sending its next request as
// soon as the previous one ended, until Duration; client i starts at
// arrival.ClosedLoopStart. A request's "scheduled" time is its actual send,
// so there is no send lag and latencies count from the send. It returns
// the offset at which sending stopped (Duration unless ctx ended first).
func (r *runner) closedLoop(ctx context.Context) time.Duration {
	n := r.cfg.Concurrency
	var next atomic.Int64 // request index, for the prompt bodies
	var clients sync.WaitGroup
	for c := range n {
		clients.Add(1)
		go func() {
			defer clients.Done()
			w := &worker{itls: make([]time.Duration, 0, r.cfg.Scenario.OutputTokens+2), buf: make([]byte, 4096)}
			t := time.NewTimer(arrival.ClosedLoopStart(c, n, r.cfg.Ramp))
			defer t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for ctx.Err() == nil {
				at := r.since()
				if at >= r.cfg.Duration {
					return
				}
				r.one(ctx, w, job{i: int(next.Add(1) - 1), sched: at})
			}
		}()
	}
	clients.Wait()
	if ctx.Err() != nil {
		return min(r.since(), r.cfg.Duration)
	}
	return r.cfg.Duration
}
