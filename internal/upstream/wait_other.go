//go:build !unix

package upstream

import "syscall"

// rawOp has nothing to keep off Unix.
type rawOp struct{}

// rawWriteRead is not done off Unix: the caller writes and reads the
// usual way.
func rawWriteRead(_ syscall.RawConn, _ *rawOp, out, _ []byte) (int, []byte, bool, error) {
	return 0, out, false, nil
}
