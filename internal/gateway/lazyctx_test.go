package gateway

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLazyDeadline: unused, it costs no timer; used, it ends at the
// deadline fixed when it was made, with its cause, or with its parent.
func TestLazyDeadline(t *testing.T) {
	unused := &lazyDeadline{parent: context.Background(), deadline: time.Now().Add(time.Hour), cause: errColdStartTimeout}
	unused.stop()
	if unused.ctx != nil {
		t.Fatal("an unused lazyDeadline made its context")
	}

	l := &lazyDeadline{parent: context.Background(), deadline: time.Now().Add(20 * time.Millisecond), cause: errColdStartTimeout}
	defer l.stop()
	if d, ok := l.Deadline(); !ok || !d.Equal(l.deadline) {
		t.Fatalf("deadline %v %v, want %v", d, ok, l.deadline)
	}
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("never expired")
	}
	if !errors.Is(l.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(l), errColdStartTimeout) {
		t.Fatalf("err %v, cause %v", l.Err(), context.Cause(l))
	}

	parent, cancel := context.WithCancelCause(context.Background())
	p := &lazyDeadline{parent: parent, deadline: time.Now().Add(time.Hour), cause: errColdStartTimeout}
	defer p.stop()
	cancel(errShutdown)
	<-p.Done()
	if !errors.Is(context.Cause(p), errShutdown) {
		t.Fatalf("cause %v, want the parent's", context.Cause(p))
	}
}
