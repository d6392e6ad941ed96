package queue

import "container/list"

// Memory is an in-process bounded FIFO. Remove is O(1), so a client that
// disconnects while queued frees its place at once.
type Memory struct {
	l   list.List
	max int
}

// NewMemory returns a queue holding at most max tickets (max <= 0: none).
func NewMemory(max int) *Memory {
	m := &Memory{max: max}
	m.l.Init()
	return m
}

// Push implements Queue.
func (m *Memory) Push(t *Ticket) error {
	if m.l.Len() >= m.max {
		return ErrFull
	}
	t.elem = m.l.PushBack(t)
	return nil
}

// Pop implements Queue.
func (m *Memory) Pop() *Ticket {
	e := m.l.Front()
	if e == nil {
		return nil
	}
	t := m.l.Remove(e).(*Ticket)
	t.elem = nil
	return t
}

// Remove implements Queue.
func (m *Memory) Remove(t *Ticket) bool {
	e, ok := t.elem.(*list.Element)
	if !ok || e == nil {
		return false
	}
	m.l.Remove(e)
	t.elem = nil
	return true
}

// Len implements Queue.
func (m *Memory) Len() int { return m.l.Len() }

// Cap implements Queue.
func (m *Memory) Cap() int { return m.max }
