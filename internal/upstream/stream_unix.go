//go:build unix

package upstream

import (
	"os"
	"syscall"
)

// rawStreaming: Stream reads the socket itself here.
const rawStreaming = true

// shutdown shuts a socket down both ways (see conn.abort).
func shutdown(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) }

// streamOp is a streamed body's read loop, run as RawConn.Read's callback;
// a connection keeps one, with its step function made once.
type streamOp struct {
	buf     []byte
	f       *framing
	deliver func([]byte) error
	idle    func() error
	dirty   bool // delivered since idle last ran
	done    bool
	extra   int
	err     error
	fn      func(fd uintptr) bool
}

// step reads until the socket is drained, feeding what it reads to the
// framing, and then asks to wait: after EAGAIN, or without another read
// after a read shorter than the buffer (see stream.go). It returns true to
// end the loop: the body's end, an error, or the worker's close.
func (o *streamOp) step(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), o.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return o.pause() // else wait
		case err != nil:
			o.err = os.NewSyscallError("read", err)
			return true
		case n <= 0:
			return true // the worker closed the connection: done tells whether the body had ended
		}
		o.done, o.extra, o.err = o.f.feed(o.buf[:n], o.deliver)
		if o.done || o.err != nil {
			return true
		}
		// What one read brought is a batch: idle runs after each (a
		// relay's flush, and the write deadline it renews, then cover at
		// most one buffer), and a full buffer is read on after it.
		o.dirty = true
		if o.pause() {
			return true
		}
		if n < len(o.buf) {
			return false // drained: wait, without another read
		}
	}
}

// pause runs idle, when something was delivered since it last ran; true
// means idle failed.
func (o *streamOp) pause() bool {
	if o.dirty {
		o.dirty = false
		if err := o.idle(); err != nil {
			o.err = &callerError{err}
			return true
		}
	}
	return false
}

// rawStream runs the read loop in one RawConn.Read. idle runs before the
// first wait too, even with nothing delivered: a relay's response head is
// still unflushed when no event came with the worker's.
func rawStream(raw syscall.RawConn, o *streamOp, buf []byte, f *framing, deliver func([]byte) error, idle func() error) (done bool, extra int, err error) {
	if o.fn == nil {
		o.fn = o.step
	}
	o.buf, o.f, o.deliver, o.idle = buf, f, deliver, idle
	o.dirty, o.done, o.extra, o.err = true, false, 0, nil
	rerr := raw.Read(o.fn)
	done, extra, err = o.done, o.extra, o.err
	o.buf, o.f, o.deliver, o.idle, o.err = nil, nil, nil, nil, nil
	if err == nil && !done {
		err = rerr // closed (the context watch), the probe's deadline, or nil: the worker closed
	}
	return done, extra, err
}
