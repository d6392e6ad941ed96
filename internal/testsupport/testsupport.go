// Package testsupport holds the helpers several packages' tests need, so
// they are written once: a goroutine-safe output buffer, a condition poll
// and a closed-loop load driver. Only tests import it.
package testsupport

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a process's
// output, a logger shared by goroutines) and a reader.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond every millisecond until it holds, failing the test
// after timeout (5 s when 0). Meant for state that settles soon after an
// event, not for timing assertions.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// ClosedLoop runs conc clients, each calling do again as soon as it
// returns, until dur has passed or ctx ends; it returns how many calls
// succeeded (returned nil) and failed. It is the closed-loop driver of the
// packages' throughput tests (llmlab bench --concurrency is the real one).
func ClosedLoop(ctx context.Context, conc int, dur time.Duration, do func(ctx context.Context) error) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var nOK, nFail atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := do(ctx); err == nil {
					nOK.Add(1)
				} else if ctx.Err() == nil {
					nFail.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return nOK.Load(), nFail.Load()
}
