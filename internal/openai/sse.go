package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Done is the payload of the last event of an OpenAI stream.
const Done = "[DONE]"

// SSEWriter writes "data: …\n\n" events and flushes each one, so a stream
// really streams through proxies and buffers.
type SSEWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

// NewSSEWriter sets the event-stream headers on w and returns a writer. The
// status is not written until the first event (or WriteHeader by the caller).
func NewSSEWriter(w http.ResponseWriter) *SSEWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	return &SSEWriter{w: w, rc: http.NewResponseController(w)}
}

// WriteData writes one event whose data is payload, then flushes.
func (s *SSEWriter) WriteData(payload []byte) error {
	// One write per event keeps the event atomic on the wire.
	buf := make([]byte, 0, len(payload)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, payload...)
	buf = append(buf, '\n', '\n')
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}

// WriteJSON marshals v and writes it as one event.
func (s *SSEWriter) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal event: %w", err)
	}
	return s.WriteData(b)
}

// WriteDone writes the final "data: [DONE]" event.
func (s *SSEWriter) WriteDone() error { return s.WriteData([]byte(Done)) }

// SSEReader reads the data payloads of an event stream, one event at a time.
// Multi-line data fields are joined with "\n"; comments and other fields are
// skipped, as the SSE specification says.
type SSEReader struct {
	sc   *bufio.Scanner
	data bytes.Buffer
}

// NewSSEReader reads events from r. Events up to 1 MiB are accepted.
func NewSSEReader(r io.Reader) *SSEReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	return &SSEReader{sc: sc}
}

// Next returns the data of the next event. It returns io.EOF at a clean end of
// input, and io.ErrUnexpectedEOF if the input ends inside an event. The slice
// is valid until the next call.
func (r *SSEReader) Next() ([]byte, error) {
	r.data.Reset()
	have := false
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if have {
				return r.data.Bytes(), nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if have {
			r.data.WriteByte('\n')
		}
		r.data.Write(value)
		have = true
	}
	if err := r.sc.Err(); err != nil {
		return nil, fmt.Errorf("read event stream: %w", err)
	}
	if have {
		return nil, io.ErrUnexpectedEOF
	}
	return nil, io.EOF
}
