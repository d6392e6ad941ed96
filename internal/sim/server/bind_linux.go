package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// boundSocket is a TCP socket bound to the server's address but not yet
// listening. vLLM binds its socket before it loads the model, so a busy
// port fails at once instead of after the start-up; and because nothing
// listens yet, the kernel answers connection attempts with a reset, so the
// port still refuses connections while the model "loads".
type boundSocket struct {
	fd   int
	addr string // host:port as configured, for messages
}

// bindPort creates a TCP socket for host:port and binds it (socket(2),
// SO_REUSEADDR as vLLM and Go set it, bind(2); no listen(2)). An empty or
// unspecified host binds every address, dual-stack where IPv6 is available,
// as net.Listen does.
func bindPort(host string, port int) (*boundSocket, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	var fd int
	switch ip4 := ta.IP.To4(); {
	case ta.IP == nil || ta.IP.IsUnspecified() && ip4 == nil:
		// Wildcard: an IPv6 socket that also takes IPv4, else IPv4 only.
		fd, err = bindSocket(syscall.AF_INET6, &syscall.SockaddrInet6{Port: ta.Port}, true)
		if errors.Is(err, syscall.EAFNOSUPPORT) {
			fd, err = bindSocket(syscall.AF_INET, &syscall.SockaddrInet4{Port: ta.Port}, false)
		}
	case ip4 != nil:
		sa := &syscall.SockaddrInet4{Port: ta.Port}
		copy(sa.Addr[:], ip4)
		fd, err = bindSocket(syscall.AF_INET, sa, false)
	default:
		sa := &syscall.SockaddrInet6{Port: ta.Port}
		copy(sa.Addr[:], ta.IP.To16())
		if ta.Zone != "" {
			if ifi, e := net.InterfaceByName(ta.Zone); e == nil {
				sa.ZoneId = uint32(ifi.Index)
			}
		}
		fd, err = bindSocket(syscall.AF_INET6, sa, false)
	}
	if err != nil {
		return nil, &bindError{addr: addr, op: "bind", err: err}
	}
	return &boundSocket{fd: fd, addr: addr}, nil
}

// bindSocket returns a bound, non-listening stream socket.
func bindSocket(family int, sa syscall.Sockaddr, dualStack bool) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return -1, err
	}
	// SO_REUSEADDR lets a restarted server bind while connections of the
	// previous one sit in TIME_WAIT; a port that another socket listens on
	// still fails with EADDRINUSE.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if dualStack {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			syscall.Close(fd)
			return -1, err
		}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// listen starts listening on the bound socket and hands it to the net
// package. The socket is consumed: on error it is closed.
func (b *boundSocket) listen() (net.Listener, error) {
	fd := b.fd
	b.fd = -1
	if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
		syscall.Close(fd)
		// Another socket bound with SO_REUSEADDR may have listened first.
		return nil, &bindError{addr: b.addr, op: "listen", err: err}
	}
	f := os.NewFile(uintptr(fd), "tcp:"+b.addr)
	// FileListener dups the descriptor; ours is closed either way.
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", b.addr, err)
	}
	return ln, nil
}

// close releases the socket if listen has not taken it.
func (b *boundSocket) close() {
	if b.fd >= 0 {
		syscall.Close(b.fd)
		b.fd = -1
	}
}

// bindError is a failed bind or listen, worded as vLLM's Python reports
// it ("[Errno 98] Address already in use"); errors.Is sees the errno.
type bindError struct {
	addr, op string
	err      error
}

func (e *bindError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.op, e.addr, pythonOSError(e.err))
}

func (e *bindError) Unwrap() error { return e.err }

// pythonOSError words err as Python's OSError does: "[Errno N] Message"
// with glibc's capitalised strerror text.
func pythonOSError(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	msg := errno.Error()
	if msg != "" && 'a' <= msg[0] && msg[0] <= 'z' {
		msg = string(msg[0]-'a'+'A') + msg[1:]
	}
	return fmt.Sprintf("[Errno %d] %s", int(errno), msg)
}
