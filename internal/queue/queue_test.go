package queue

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/testsupport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// acquire takes a place in storage of its own and returns its Release.
func acquire(d *Dispatcher, ctx context.Context) (release func(), waited time.Duration, err error) {
	p := new(Place)
	if waited, err = d.AcquirePlace(ctx, p); err != nil {
		return nil, waited, err
	}
	return p.Release, waited, nil
}

func TestMemoryFIFOAndBound(t *testing.T) {
	q := NewMemory(2)
	a, b, c := NewTicket(), NewTicket(), NewTicket()
	if err := q.Push(a); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(b); err != nil {
		t.Fatal(err)
	}
	if err := q.Push(c); !errors.Is(err, ErrFull) {
		t.Fatalf("third push: got %v, want ErrFull", err)
	}
	if !q.Remove(a) || q.Remove(a) {
		t.Fatal("Remove should succeed once")
	}
	if err := q.Push(c); err != nil {
		t.Fatalf("push after remove: %v", err)
	}
	if got := q.Pop(); got != b {
		t.Fatal("want b first")
	}
	if got := q.Pop(); got != c {
		t.Fatal("want c second")
	}
	if q.Pop() != nil || q.Len() != 0 {
		t.Fatal("want empty")
	}
}

func TestDispatcherLimitsAndOrder(t *testing.T) {
	d := NewDispatcher(NewMemory(10), 1, nil)
	rel, _, err := acquire(d, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := acquire(d, context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			r()
		}()
		// Wait until it is queued so the arrival order is known.
		testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == i+1 })
	}
	if _, in := d.Stats(); in != 1 {
		t.Fatalf("in flight = %d, want 1", in)
	}
	rel()
	rel() // a second call must be harmless
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("order %v is not FIFO", order)
		}
	}
	if depth, in := d.Stats(); depth != 0 || in != 0 {
		t.Fatalf("after all: depth %d in flight %d", depth, in)
	}
}

func TestDispatcherFull(t *testing.T) {
	d := NewDispatcher(NewMemory(1), 1, nil)
	rel, _, _ := acquire(d, context.Background())
	defer rel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, _, err := acquire(d, ctx); done <- err }()
	testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == 1 })
	if _, _, err := acquire(d, context.Background()); !errors.Is(err, ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: got %v", err)
	}
}

func TestDispatcherCancelFreesPlace(t *testing.T) {
	d := NewDispatcher(NewMemory(1), 1, nil)
	rel, _, _ := acquire(d, context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, err := acquire(d, ctx); done <- err }()
	testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == 1 })
	cancel()
	<-done
	if depth, _ := d.Stats(); depth != 0 {
		t.Fatalf("depth %d after cancel, want 0", depth)
	}
	// The freed place in line is usable, and the slot passes to the new waiter.
	got := make(chan func(), 1)
	go func() {
		r, _, err := acquire(d, context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == 1 })
	rel()
	r := <-got
	if _, in := d.Stats(); in != 1 {
		t.Fatalf("in flight %d, want 1", in)
	}
	r()
	if _, in := d.Stats(); in != 0 {
		t.Fatalf("in flight %d, want 0", in)
	}
}

// TestDispatcherStress checks the invariant under contention with random
// cancellations: never more than max in flight, and everything returns.
func TestDispatcherStress(t *testing.T) {
	const max = 3
	var cur, peak int // written under the dispatcher lock
	d := NewDispatcher(NewMemory(1000), max, func(_, in int) {
		cur = in // called under the dispatcher lock
		if cur > peak {
			peak = cur
		}
	})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*100*time.Microsecond)
			defer cancel()
			if i%2 == 0 {
				ctx = context.Background()
			}
			r, _, err := acquire(d, ctx)
			if err != nil {
				return
			}
			time.Sleep(50 * time.Microsecond)
			r()
		}()
	}
	wg.Wait()
	if peak > max {
		t.Fatalf("peak in flight %d > %d", peak, max)
	}
	if depth, in := d.Stats(); depth != 0 || in != 0 {
		t.Fatalf("leftover depth %d in flight %d", depth, in)
	}
}

func TestDispatcherSetMaxInFlight(t *testing.T) {
	d := NewDispatcher(NewMemory(10), 2, nil)
	r1, _, _ := acquire(d, context.Background())
	r2, _, _ := acquire(d, context.Background())
	got := make(chan func(), 3)
	for range 3 {
		go func() {
			r, _, err := acquire(d, context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
	}
	testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == 3 })
	// Raising the limit grants the oldest waiters at once.
	d.SetMaxInFlight(4)
	r3, r4 := <-got, <-got
	if depth, in := d.Stats(); depth != 1 || in != 4 || d.MaxInFlight() != 4 {
		t.Fatalf("after raise: depth %d in flight %d max %d", depth, in, d.MaxInFlight())
	}
	// Lowering it cuts nothing; finishing requests are not replaced until
	// the count is under the new limit.
	d.SetMaxInFlight(2)
	r1()
	r2()
	if depth, in := d.Stats(); depth != 1 || in != 2 {
		t.Fatalf("after lower and two releases: depth %d in flight %d, want 1 and 2", depth, in)
	}
	r3()
	r5 := <-got
	if depth, in := d.Stats(); depth != 0 || in != 2 {
		t.Fatalf("depth %d in flight %d, want 0 and 2", depth, in)
	}
	r4()
	r5()
	if _, in := d.Stats(); in != 0 {
		t.Fatalf("in flight %d", in)
	}
	d.SetMaxInFlight(0)
	if d.MaxInFlight() != 1 {
		t.Fatalf("limit %d, want at least 1", d.MaxInFlight())
	}
}

// TestDispatcherPlaces checks places held in the caller's storage: Granted
// lists the grant times of places in flight (set ones only), a place
// handed to a waiter joins the list, and Release is idempotent.
func TestDispatcherPlaces(t *testing.T) {
	d := NewDispatcher(NewMemory(4), 2, nil)
	var a, b, c Place
	if _, err := d.AcquirePlace(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AcquirePlace(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(100, 0)
	a.SetGranted(t0)
	if got := d.Granted(nil); len(got) != 1 || !got[0].Equal(t0) {
		t.Fatalf("Granted = %v, want [%v] (b has not set its time)", got, t0)
	}
	done := make(chan error, 1)
	go func() { _, err := d.AcquirePlace(context.Background(), &c); done <- err }()
	testsupport.WaitFor(t, 0, func() bool { depth, _ := d.Stats(); return depth == 1 })
	a.Release()
	a.Release() // harmless
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t1 := time.Unix(200, 0)
	c.SetGranted(t1)
	b.SetGranted(t1)
	if got := d.Granted(nil); len(got) != 2 || !got[0].Equal(t1) || !got[1].Equal(t1) {
		t.Fatalf("Granted = %v, want c's and b's", got)
	}
	if depth, in := d.Stats(); depth != 0 || in != 2 {
		t.Fatalf("depth %d in flight %d, want 0 and 2", depth, in)
	}
	b.Release()
	c.Release()
	if got := d.Granted(nil); len(got) != 0 {
		t.Fatalf("Granted after release = %v", got)
	}
	if depth, in := d.Stats(); depth != 0 || in != 0 {
		t.Fatalf("leftover depth %d in flight %d", depth, in)
	}
	// A released place can be used again.
	if _, err := d.AcquirePlace(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	if _, in := d.Stats(); in != 1 {
		t.Fatalf("in flight %d after reuse, want 1", in)
	}
	a.Release()
	var never Place
	never.Release() // a place never acquired: nothing happens
}
