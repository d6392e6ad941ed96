package openai

import (
	"bufio"
	"io"
)

// NewSSEReaderBuffer is NewSSEReader reading through a caller-supplied
// initial buffer (it grows as needed up to 1 MiB). A load generator opening
// thousands of streams a second reuses one small buffer per worker instead
// of allocating NewSSEReader's 64 KiB each time.
func NewSSEReaderBuffer(r io.Reader, buf []byte) *SSEReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(buf[:0], 1<<20)
	return &SSEReader{sc: sc}
}
