package upstream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/llmlab/llmlab/internal/httpwire"
)

// A streamed answer (an event stream) read with Read costs, per event, a
// read that finds nothing before each wait: Go's poller resets a socket's
// readiness at the start of every read, so a read must try the socket
// before it may wait. nginx's event loop makes no such read. Stream reads
// a body inside one syscall.RawConn.Read instead, where readiness is reset
// once: after a read that returned less than its buffer (the socket was
// drained), it waits without another read, and any byte that arrives
// after that read is an edge the poller records (docs/results.md §13.7).
//
// One arrival is not recorded that way: the worker's FIN (or reset) when
// it came with the last data, in the same edge, which a read that returns
// data does not report. So the wait is bounded: every streamProbe Stream
// reads once more whatever the poller says. A worker that died mid-stream
// is then noticed within streamProbe, where a Read would notice it at
// once; a body framed by chunks or a length, as vLLM's are, needs no FIN
// to end.
const streamProbe = 250 * time.Millisecond

// streamBufferSize is the buffer a streamed body is read into: a busy
// batch of events in one read, held only while streaming.
const streamBufferSize = 16 << 10

// Streamer is a response body that can push itself to a relay: Stream
// calls deliver with each run of body bytes as it arrives (the bytes are
// reused once deliver returns) and idle after the bytes of each read were
// delivered, before it reads or waits for more (a relay flushes its
// client there, so a batch is at most one read's bytes). It returns nil at the body's end; deliver's or idle's
// error as it is, which ends the exchange as Close does; or the error
// that ended reading, as Read would return it. The exchange ends with
// Stream as it ends with a Read to EOF or a Close.
type Streamer interface {
	Stream(deliver func([]byte) error, idle func() error) error
}

// StreamBody streams body with its own Stream when it has one, else
// through Read (net/http's bodies, from the fallback transport).
func StreamBody(body io.ReadCloser, deliver func([]byte) error, idle func() error) error {
	if s, ok := body.(Streamer); ok {
		return s.Stream(deliver, idle)
	}
	return readLoop(body, make([]byte, streamBufferSize), deliver, idle)
}

// readLoop streams body through Read into buf, calling idle before every
// Read (any of which may wait). It closes body when it fails.
func readLoop(body io.ReadCloser, buf []byte, deliver func([]byte) error, idle func() error) error {
	for {
		if err := idle(); err != nil {
			body.Close()
			return err
		}
		n, err := body.Read(buf)
		if n > 0 {
			if derr := deliver(buf[:n]); derr != nil {
				body.Close()
				return derr
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			body.Close()
			return err
		}
	}
}

// framing is how a streamed body ends: its chunks' terminator, or a
// length.
type framing struct {
	chunks *httpwire.Dechunker // nil: sized
	n      int64               // a sized body's bytes still to come
}

// feed delivers the body bytes in p. done: the body ended, extra bytes of
// p past its end.
func (f *framing) feed(p []byte, deliver func([]byte) error) (done bool, extra int, err error) {
	if f.chunks == nil {
		k := int(min(int64(len(p)), f.n))
		f.n -= int64(k)
		if k > 0 {
			if err := deliver(p[:k]); err != nil {
				return false, 0, &callerError{err}
			}
		}
		return f.n == 0, len(p) - k, nil
	}
	for len(p) > 0 && !f.chunks.Done() {
		data, n, err := f.chunks.Next(p)
		if err != nil {
			return false, 0, err
		}
		p = p[n:]
		if len(data) > 0 {
			if err := deliver(data); err != nil {
				return false, 0, &callerError{err}
			}
		}
	}
	return f.chunks.Done(), len(p), nil
}

// callerError carries deliver's or idle's error through the read loop, so
// that it is returned as it is.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }

// Stream implements Streamer: the body's framing is decoded from the raw
// socket reads (stream_unix.go); a body that was already read from, one
// framed by the connection's end or read by net/http's reader, and
// sockets without a raw connection, are streamed through Read.
func (b *respBody) Stream(deliver func([]byte) error, idle func() error) error {
	c := b.c
	var f framing
	switch body := b.rc.(type) {
	case *chunkedBody:
		c.dechunk.Reset()
		f.chunks = &c.dechunk
	case *sizedBody:
		f.n = body.n
	default:
		return b.streamReads(deliver, idle)
	}
	if b.began || c.raw == nil || !rawStreaming || b.state.Load() != 0 {
		return b.streamReads(deliver, idle)
	}
	b.began = true
	// What came with the head first.
	if k := c.br.Buffered(); k > 0 {
		p, _ := c.br.Peek(k)
		done, extra, err := f.feed(p, deliver)
		_, _ = c.br.Discard(k)
		if err == nil && !done {
			if ierr := idle(); ierr != nil {
				err = &callerError{ierr}
			}
		}
		if err != nil || done {
			return b.streamEnd(done, extra, false, err)
		}
	}
	buf := c.t.streamBufs.Get().(*[]byte)
	defer c.t.streamBufs.Put(buf)
	if err := c.nc.SetReadDeadline(time.Now().Add(streamProbe)); err != nil {
		return b.streamEnd(false, 0, false, err)
	}
	for {
		done, extra, err := rawStream(c.raw, &c.stream, *buf, &f, deliver, idle)
		if errors.Is(err, os.ErrDeadlineExceeded) && b.state.Load() == 0 {
			// The probe: read again (the loop's first step reads).
			if err = c.nc.SetReadDeadline(time.Now().Add(streamProbe)); err == nil {
				continue
			}
		}
		return b.streamEnd(done, extra, true, err)
	}
}

// streamEnd ends a streamed exchange as Read and Close do: at the body's
// end the connection goes back to the pool (when nothing came past the
// body and it may be kept), else it is closed. armed: the probe's read
// deadline is set, and must be cleared for the connection's next use.
func (b *respBody) streamEnd(done bool, extra int, armed bool, err error) error {
	c := b.c
	if done && err == nil {
		if !b.state.CompareAndSwap(0, 1) {
			return errBodyClosed // Close ran meanwhile
		}
		keep := b.keep && extra == 0
		if armed && keep && c.nc.SetReadDeadline(time.Time{}) != nil {
			keep = false
		}
		c.release(b.stop, keep)
		return nil
	}
	if !b.state.CompareAndSwap(0, 2) {
		return errBodyClosed // Close ran meanwhile, and closed the connection
	}
	b.stop.stop()
	c.close(true) // Close cannot run any more: the buffers are ours
	var ce *callerError
	switch {
	case errors.As(err, &ce):
		return ce.err
	case err == nil:
		err = io.ErrUnexpectedEOF // the worker closed the connection before the body's end
	}
	if b.ctx.Err() != nil {
		return ctxError("read response body", b.ctx, err)
	}
	return fmt.Errorf("upstream: read response body: %w", err)
}

// streamReads streams the body through Read.
func (b *respBody) streamReads(deliver func([]byte) error, idle func() error) error {
	buf := b.c.t.streamBufs.Get().(*[]byte)
	defer b.c.t.streamBufs.Put(buf)
	return readLoop(b, *buf, deliver, idle)
}
