package testsupport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSyncBufferConcurrentWriters(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d", i%10)
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Errorf("%d bytes, want 800", n)
	}
}

func TestWaitFor(t *testing.T) {
	var flag atomic.Bool
	time.AfterFunc(10*time.Millisecond, func() { flag.Store(true) })
	WaitFor(t, 0, flag.Load)
}

func TestClosedLoopCountsCalls(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	ok, failed := ClosedLoop(context.Background(), 3, 50*time.Millisecond, func(context.Context) error {
		if calls.Add(1)%2 == 0 {
			return boom
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if ok == 0 || failed == 0 || ok+failed > calls.Load() {
		t.Errorf("ok %d failed %d of %d calls", ok, failed, calls.Load())
	}
}
