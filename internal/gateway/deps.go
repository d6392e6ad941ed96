package gateway

import (
	"context"
	"time"

	"github.com/llmlab/llmlab/internal/queue"
	"github.com/llmlab/llmlab/internal/supervisor"
)

// Admitter is what the request path needs from a dispatcher: a place
// among the requests in flight, waiting in a bounded FIFO when none is
// free. internal/queue's Dispatcher implements it; a shared (Redis) queue
// can later.
type Admitter interface {
	// AcquirePlace blocks until p holds a place (p.Release gives it
	// back), the queue is full (queue.ErrFull, at once), or ctx is done.
	// waited is the time spent in the queue.
	AcquirePlace(ctx context.Context, p *queue.Place) (waited time.Duration, err error)
	// Granted appends the grant times of the places in flight (those set
	// with Place.SetGranted).
	Granted(dst []time.Time) []time.Time
	// Stats is the queue depth and the number of places held.
	Stats() (depth, inFlight int)
	// MaxInFlight is the current limit; SetMaxInFlight changes it at run
	// time (the degradation ladder lowers it).
	MaxInFlight() int
	SetMaxInFlight(n int)
	// QueueCap is the queue's bound.
	QueueCap() int
}

// Backend is what the request path needs from the worker's supervisor: a
// lease on a READY worker, started if need be.
type Backend interface {
	EnsureReady(ctx context.Context) (*supervisor.Lease, error)
	Status() supervisor.Status
	State() supervisor.State
}

var (
	_ Backend  = (*supervisor.Supervisor)(nil)
	_ Admitter = (*queue.Dispatcher)(nil)
)
