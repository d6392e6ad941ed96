// Package queue holds the gateway's admission queue: a bounded FIFO of
// requests waiting for a place, behind an interface so that a shared (Redis)
// queue can replace the in-memory one, and a Dispatcher that limits how many
// requests are in flight to the worker at once.
package queue

import "errors"

// ErrFull is returned when the queue holds its maximum number of entries.
var ErrFull = errors.New("queue full")

// Ticket is one waiting request. Its Ready channel is closed when the
// dispatcher grants it a place.
type Ticket struct {
	ready chan struct{}
	// granted is written under the dispatcher's lock only.
	granted bool
	// elem is the queue's private bookkeeping (a list element for Memory).
	elem any
	// place is the dispatcher place the ticket waits for (nil for a
	// ticket not made by a Dispatcher).
	place *Place
}

// NewTicket returns a ticket that has not been granted.
func NewTicket() *Ticket { return &Ticket{ready: make(chan struct{})} }

// Ready is closed once the ticket holds a place.
func (t *Ticket) Ready() <-chan struct{} { return t.ready }

// Queue is a bounded FIFO of tickets. Implementations need not be safe for
// concurrent use: the Dispatcher serialises every call under its own lock,
// which is what keeps "remove on cancel" and "grant" from racing.
type Queue interface {
	// Push appends t, or returns ErrFull.
	Push(t *Ticket) error
	// Pop removes and returns the oldest ticket, or nil when empty.
	Pop() *Ticket
	// Remove takes t out wherever it is; it reports whether t was queued.
	Remove(t *Ticket) bool
	// Len is the number of queued tickets.
	Len() int
	// Cap is the maximum number of queued tickets.
	Cap() int
}
