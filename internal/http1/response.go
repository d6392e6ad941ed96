package http1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/httpwire"
)

// holdLimit is how much of a body the server holds before sending the
// header: an answer that fits leaves in one write with its Content-Length.
const holdLimit = 8 << 10

var errAfterHandler = errors.New("http1: write after the handler returned")

// response is a request's http.ResponseWriter. It also has the methods
// http.ResponseController looks for: Flush, FlushError, SetReadDeadline
// and SetWriteDeadline.
type response struct {
	c   *conn
	st  *request
	req *http.Request

	header      http.Header
	status      int
	wroteHeader bool // the status is fixed
	sentHeader  bool // the header is in the connection's buffer
	chunked     bool
	head        bool // a HEAD request: the body is counted, not sent
	noBody      bool // no body for this status (or HEAD)
	done        bool // the handler returned
	closeAfter  bool
	declared    int64 // the handler's Content-Length; -1: none
	written     int64
	hold        []byte // body held until the header is sent
	err         error
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || w.done {
		return
	}
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.status, w.wroteHeader = code, true
	w.noBody = w.head || code == http.StatusNoContent || code == http.StatusNotModified
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// informational sends a 1xx answer ahead of the final one.
func (w *response) informational(code int) {
	if w.sentHeader || w.req.ProtoMinor == 0 {
		return
	}
	b := w.c.bw
	writeStatusLine(b, code)
	writeFields(b, w.header)
	b.WriteString("\r\n")
	if code == http.StatusContinue && w.st.body != nil {
		w.st.body.continued = true
	}
	w.flushConn()
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.head {
			// What a GET would have sent: its Content-Type too.
			if _, ok := w.header["Content-Type"]; !ok && !w.sentHeader && w.written == 0 && len(p) > 0 {
				w.header.Set("Content-Type", http.DetectContentType(p))
			}
			w.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.sentHeader {
		if len(w.hold)+len(p) <= holdLimit {
			w.hold = append(w.hold, p...)
			return len(p), nil
		}
		w.sendHeader(false, p)
	}
	w.writeBody(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *response) WriteString(s string) (int, error) {
	// Through Write: a held body needs its bytes copied either way.
	return w.Write([]byte(s))
}

// writeBody puts p in the connection's buffer, as a chunk when chunked.
func (w *response) writeBody(p []byte) {
	if len(p) == 0 || w.err != nil {
		return
	}
	b := w.c.bw
	if w.chunked {
		// Formatted in the writer's own buffer: a local array would
		// escape through bufio's Write and cost an allocation per chunk.
		b.Write(append(strconv.AppendInt(b.AvailableBuffer(), int64(len(p)), 16), '\r', '\n'))
		b.Write(p)
		_, err := b.WriteString("\r\n")
		w.check(err)
		return
	}
	_, err := b.Write(p)
	w.check(err)
}

func (w *response) check(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
		w.c.clientGone(w.st)
	}
}

// sendHeader puts the status line and header in the connection's buffer,
// then the held body. final: the handler has returned, so the held body is
// all of it.
func (w *response) sendHeader(final bool, next []byte) {
	w.sentHeader = true
	c, h := w.c, w.header
	if _, ok := h["Content-Type"]; !ok && !w.noBody {
		if sniff := w.hold; len(sniff) > 0 || len(next) > 0 {
			if len(sniff) == 0 {
				sniff = next
			}
			h.Set("Content-Type", http.DetectContentType(sniff))
		}
	}
	// A handler that returned having written less than it declared: the
	// connection's end tells the client the answer is short.
	if final && w.declared >= 0 && w.written < w.declared && !w.noBody {
		w.closeAfter = true
	}
	for _, v := range h["Connection"] {
		if strings.Contains(strings.ToLower(v), "close") {
			w.closeAfter = true
		}
	}
	if c.srv.shutdown.Load() || w.st.close {
		w.closeAfter = true
	}
	// A body the handler left unread that cannot be read away: the
	// connection cannot carry another request.
	if bd := w.st.body; bd != nil && !bd.done {
		if bd.err != nil || bd.chunked || bd.remain > maxDiscard || w.st.expect100 && !bd.continued {
			w.closeAfter = true
		}
	}
	b := c.bw
	writeStatusLine(b, w.status)
	writeFields(b, h)
	if _, ok := h["Date"]; !ok {
		b.WriteString("Date: ")
		b.WriteString(c.srv.date())
		b.WriteString("\r\n")
	}
	switch {
	case w.noBody && !(w.head && final && w.declared < 0 && w.written > 0):
		if w.declared >= 0 && w.head {
			writeLength(b, w.declared)
		}
	case w.head:
		writeLength(b, w.written)
	case w.declared >= 0:
		writeLength(b, w.declared)
	case final:
		writeLength(b, int64(len(w.hold)))
	case w.req.ProtoMinor >= 1:
		w.chunked = true
		b.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		w.closeAfter = true // HTTP/1.0: the end of the connection ends the body
	}
	switch {
	case w.closeAfter:
		b.WriteString("Connection: close\r\n")
	case w.req.ProtoMinor == 0:
		b.WriteString("Connection: keep-alive\r\n")
	}
	_, err := b.WriteString("\r\n")
	w.check(err)
	if !w.noBody {
		w.writeBody(w.hold)
	}
	w.hold = w.hold[:0]
}

func writeLength(b *bufio.Writer, n int64) {
	b.WriteString("Content-Length: ")
	b.Write(append(strconv.AppendInt(b.AvailableBuffer(), n, 10), '\r', '\n'))
}

// writeFields writes the handler's header fields but the framing ones,
// which the server writes itself. A field with an invalid name is
// skipped and line breaks in values become spaces, as net/http does, so a
// value cannot inject fields.
func writeFields(b *bufio.Writer, h http.Header) {
	for k, vs := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection", "Trailer":
			continue
		}
		if !httpwire.ValidToken(k) {
			continue
		}
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			b.WriteString(strings.TrimSpace(v))
			b.WriteString("\r\n")
		}
	}
}

func (w *response) Flush() { _ = w.FlushError() }

// FlushError sends what is buffered (the header first if need be).
func (w *response) FlushError() error {
	if w.done {
		return errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHeader {
		w.sendHeader(false, nil)
	}
	w.flushConn()
	return w.err
}

func (w *response) flushConn() {
	if w.err == nil {
		w.check(w.c.bw.Flush())
	}
}

// SetReadDeadline sets the deadline for reading the request body; it
// reaches the connection only if a read has to wait for it.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rdWant = t
	return nil
}

// SetWriteDeadline sets the deadline for writing the answer.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.wdWant = t
	return nil
}

// finish completes the answer after the handler returned.
func (w *response) finish() {
	if w.done {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case !w.sentHeader:
		w.sendHeader(true, nil)
	case w.chunked:
		_, err := w.c.bw.WriteString("0\r\n\r\n")
		w.check(err)
	case w.declared >= 0 && w.written < w.declared && !w.noBody:
		w.closeAfter = true // a short body: the client sees the connection end
	}
	w.flushConn()
	w.done = true
	if cap(w.hold) <= 4*holdLimit {
		w.c.hold = w.hold[:0]
	}
}

// body is a request body read from the connection.
type body struct {
	c         *conn
	st        *request
	w         *response
	remain    int64 // Content-Length framing: bytes left
	chunked   bool
	chunks    io.Reader
	done      bool // read to its end
	closed    bool
	continued bool // 100 Continue sent (or not needed)
	err       error
}

func newChunkedReader(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

func (b *body) Read(p []byte) (int, error) {
	switch {
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	case b.done:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	}
	if b.st.expect100 && !b.continued {
		b.continued = true
		if b.w != nil && !b.w.sentHeader && b.w.err == nil {
			_, _ = b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			b.w.flushConn()
		}
	}
	if b.chunked {
		n, err := b.chunks.Read(p)
		if err == io.EOF {
			if err = b.trailer(); err == nil {
				b.end()
				return n, io.EOF
			}
		}
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.br.Read(p)
	b.remain -= int64(n)
	if b.remain == 0 {
		b.end()
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// trailer reads away a chunked body's trailer fields.
func (b *body) trailer() error {
	b.c.budget = b.c.srv.maxHeaderBytes()
	for {
		line, err := b.c.readLine()
		if err != nil {
			var pe *protoError
			if err == errQuiet || errors.As(err, &pe) && pe.status == http.StatusBadRequest {
				return io.ErrUnexpectedEOF // the body ended inside its trailer
			}
			return err
		}
		if len(line) == 0 {
			return nil
		}
	}
}

func (b *body) end() {
	b.done = true
	b.c.bodyEnded()
}

func (b *body) Close() error {
	b.closed = true
	return nil
}
