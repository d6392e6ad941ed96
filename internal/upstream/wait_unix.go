//go:build unix

package upstream

import (
	"io"
	"os"
	"syscall"
)

// rawWriteRead writes out and then reads into p within one RawConn.Read:
// the write happens after the poller's read readiness was reset, so the
// wait that follows needs no read first. done is false when the socket
// took only part of out (rest is what is left, nothing was read); the
// caller writes the rest the usual way.
func rawWriteRead(raw syscall.RawConn, out, p []byte) (n int, rest []byte, done bool, err error) {
	wrote := false
	var ioErr error
	rerr := raw.Read(func(fd uintptr) bool {
		if !wrote {
			wrote = true
			for len(out) > 0 {
				k, werr := syscall.Write(int(fd), out)
				if werr == syscall.EINTR {
					continue
				}
				if werr == syscall.EAGAIN {
					return true // the socket is full: the caller waits to write the rest
				}
				if werr != nil {
					ioErr = os.NewSyscallError("write", werr)
					return true
				}
				out = out[k:]
			}
			return false // the answer cannot be there yet: wait, without a read
		}
		for {
			n, ioErr = syscall.Read(int(fd), p)
			if ioErr != syscall.EINTR {
				break
			}
		}
		if ioErr == syscall.EAGAIN {
			return false // woken early: wait again
		}
		return true
	})
	switch {
	case rerr != nil:
		return 0, nil, true, rerr // closed (the context watch) or past a deadline
	case ioErr != nil && ioErr != syscall.EAGAIN:
		if errno, ok := ioErr.(syscall.Errno); ok {
			ioErr = os.NewSyscallError("read", errno)
		}
		return 0, nil, true, ioErr
	case len(out) > 0:
		return 0, out, false, nil
	}
	if n < 0 {
		n = 0
	}
	if n == 0 && len(p) > 0 {
		return 0, nil, true, io.EOF // the worker closed the connection
	}
	return n, nil, true, nil
}
