//go:build unix

package upstream

import (
	"io"
	"os"
	"syscall"
)

// rawOp is one write-then-read step on a raw connection; a connection
// keeps one, with its step function made once, so the step allocates
// nothing per request.
type rawOp struct {
	out, p []byte
	n      int
	wrote  bool
	err    error
	fn     func(fd uintptr) bool // step, as a func value
}

// step is RawConn.Read's callback: the first call writes out (the poller's
// read readiness has just been reset, so the answer's arrival will be
// seen) and asks to wait without reading; later calls read.
func (o *rawOp) step(fd uintptr) bool {
	if !o.wrote {
		o.wrote = true
		for len(o.out) > 0 {
			k, err := syscall.Write(int(fd), o.out)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return true // the socket is full: the caller waits to write the rest
			}
			if err != nil {
				o.err = os.NewSyscallError("write", err)
				return true
			}
			o.out = o.out[k:]
		}
		return false // the answer cannot be there yet: wait, without a read
	}
	for {
		n, err := syscall.Read(int(fd), o.p)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // woken early: wait again
		case nil:
			o.n = max(n, 0)
		default:
			o.err = os.NewSyscallError("read", err)
		}
		return true
	}
}

// rawWriteRead writes out and then reads into p within one RawConn.Read
// (see wait.go). done is false when the socket took only part of out
// (rest is what is left, nothing was read); the caller writes the rest the
// usual way.
func rawWriteRead(raw syscall.RawConn, o *rawOp, out, p []byte) (n int, rest []byte, done bool, err error) {
	if o.fn == nil {
		o.fn = o.step
	}
	o.out, o.p, o.n, o.wrote, o.err = out, p, 0, false, nil
	rerr := raw.Read(o.fn)
	n, rest, err = o.n, o.out, o.err
	o.out, o.p = nil, nil
	switch {
	case rerr != nil:
		return 0, nil, true, rerr // closed (the context watch) or past a deadline
	case err != nil:
		return 0, nil, true, err
	case len(rest) > 0:
		return 0, rest, false, nil
	case n == 0 && len(p) > 0:
		return 0, nil, true, io.EOF // the worker closed the connection
	}
	return n, nil, true, nil
}
