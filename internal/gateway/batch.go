package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// batcher is the micro-batching window: admitted requests wait until the
// window W has passed since the first of them arrived, or N of them are
// together, whichever comes first, and then go to the worker at once, so
// they can share the engine's next step. W = 0 turns it off (nothing
// waits, nothing is measured).
type batcher struct {
	w    atomic.Int64 // the window, ns (the guardrail moves it)
	max  int
	mu   sync.Mutex
	open *batch
	size prometheus.Histogram
	wait prometheus.Histogram
}

type batch struct {
	n     int
	ready chan struct{}
	timer *time.Timer
}

func newBatcher(w time.Duration, n int) *batcher {
	b := &batcher{
		max: max(n, 1),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmlab_batch_size", Help: "Requests released together by the micro-batching window.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64},
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llmlab_batch_wait_seconds", Help: "Time a request waited in the micro-batching window.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1},
		}),
	}
	b.w.Store(int64(w))
	return b
}

func (b *batcher) window() time.Duration { return time.Duration(b.w.Load()) }

func (b *batcher) setWindow(w time.Duration) { b.w.Store(int64(w)) }

// join waits for the caller's batch to be released (or ctx to end).
func (b *batcher) join(ctx context.Context) {
	w := b.window()
	if w <= 0 {
		return
	}
	t := time.Now()
	b.mu.Lock()
	bt := b.open
	if bt == nil {
		bt = &batch{ready: make(chan struct{})}
		bt.timer = time.AfterFunc(w, func() { b.release(bt) })
		b.open = bt
	}
	bt.n++
	if bt.n >= b.max {
		b.releaseLocked(bt)
	}
	b.mu.Unlock()
	select {
	case <-bt.ready:
	case <-ctx.Done():
	}
	b.wait.Observe(time.Since(t).Seconds())
}

func (b *batcher) release(bt *batch) {
	b.mu.Lock()
	b.releaseLocked(bt)
	b.mu.Unlock()
}

func (b *batcher) releaseLocked(bt *batch) {
	if b.open != bt {
		return // released already
	}
	b.open = nil
	bt.timer.Stop()
	b.size.Observe(float64(bt.n))
	close(bt.ready)
}
