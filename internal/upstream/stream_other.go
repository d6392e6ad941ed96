//go:build !unix

package upstream

import "syscall"

// rawStreaming: off Unix, Stream reads through Read.
const rawStreaming = false

type streamOp struct{}

// shutdown is not done off Unix: conn.abort closes the connection.
func shutdown(uintptr) {}

func rawStream(_ syscall.RawConn, _ *streamOp, _ []byte, _ *framing, _ func([]byte) error, _ func() error) (bool, int, error) {
	panic("upstream: rawStream off Unix")
}
