package upstream

import (
	"bufio"
	"net"
	"syscall"
)

// A request's last buffered bytes are not written when the request is
// flushed but by the first read of its answer, in the same step as the
// wait: Go's netpoller is edge-triggered and a read first tries the
// socket, so writing the request and then reading its answer costs a read
// that finds nothing (EAGAIN) before every wait. Writing inside
// syscall.RawConn.Read, after the poller's readiness was reset and before
// waiting, makes the wait safe without that read: the answer cannot come
// before the request it answers, so its arrival is an edge the poller
// records. This is what nginx's event loop gets from epoll directly; it
// saves one system call per request (docs/results.md §13.5).
//
// What arrives before the request was written (a worker closing an idle
// connection) is missed by the reset, but not lost: writing to a closed
// connection brings a reset from the worker, which is an edge too. A
// request too large for one buffer is not held at all (heldWriter).

// heldWriter is the writer a request is buffered into: it passes writes
// through, except the one flush it is told to hold, whose bytes (the
// buffer's) wait in held for the first read of the answer. Only a request
// that is held whole is held: once part of it has gone out, the worker
// may answer before the rest does (an early refusal), and that answer's
// readiness would be reset and lost.
type heldWriter struct {
	c    *conn
	hold bool          // hold the next write
	sent bool          // part of this request went out already
	held []byte        // bytes held: they alias w's buffer
	w    *bufio.Writer // the pooled writer whose buffer held aliases
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if h.hold {
		h.hold, h.held = false, p
		return len(p), nil
	}
	h.sent = true
	return h.c.nc.Write(p)
}

// release gives the write buffer back once nothing aliases it.
func (h *heldWriter) release() {
	if h.w != nil {
		h.w.Reset(nil)
		h.c.t.writers.Put(h.w)
		h.w = nil
	}
	h.held = nil
}

// connReader is what a connection's bufio.Reader reads: the connection,
// after sending any held request bytes.
type connReader struct{ c *conn }

func (r *connReader) Read(p []byte) (int, error) {
	c := r.c
	if c.out.held == nil {
		return c.nc.Read(p)
	}
	defer c.out.release()
	held := c.out.held
	if c.raw != nil {
		n, rest, done, err := rawWriteRead(c.raw, &c.op, held, p)
		if done {
			return n, err
		}
		held = rest
	}
	// No raw connection, or the socket took only part of the request:
	// the rest goes the usual way, then the read.
	if _, err := c.nc.Write(held); err != nil {
		return 0, err
	}
	return c.nc.Read(p)
}

// rawConn returns nc's raw connection when it has one (TCP and Unix
// sockets do).
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
