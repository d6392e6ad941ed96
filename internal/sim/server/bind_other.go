//go:build !linux

package server

import (
	"fmt"
	"net"
	"strconv"
)

// boundSocket is, off Linux, only the address: the portable fallback binds
// and listens together after the start-up (a busy port is reported then),
// because a bound but not listening socket does not refuse connections the
// same way everywhere.
type boundSocket struct {
	addr string
}

func bindPort(host string, port int) (*boundSocket, error) {
	return &boundSocket{addr: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

func (b *boundSocket) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", b.addr, err)
	}
	return ln, nil
}

func (b *boundSocket) close() {}

// pythonOSError words err for vLLM's stderr line.
func pythonOSError(err error) string { return err.Error() }
