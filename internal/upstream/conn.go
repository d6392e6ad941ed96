package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/llmlab/llmlab/internal/httpwire"
)

// conn is one connection to a worker with its buffers. Between exchanges
// it sits in its host's pool; during one it belongs to the request's
// goroutine (and its body).
type conn struct {
	t      *Transport
	key    string
	nc     net.Conn
	br     *bufio.Reader // owned while the connection lives
	idleAt time.Time     // when it last went idle (zero: never)
	kill   func()        // c.abort as a func value, made once per connection
	lr     io.LimitedReader
	// A response's body, when readResponse frames it (one exchange at a
	// time uses them).
	sized   sizedBody
	chunked chunkedBody
	// The request's last bytes wait in out for the first read of the
	// answer, which rd does (wait.go); raw is nc's raw connection (nil:
	// none, and the bytes are written the usual way).
	out heldWriter
	rd  connReader
	raw syscall.RawConn
	op  rawOp
	// A streamed body's chunk decoder and read loop (stream.go).
	dechunk httpwire.Dechunker
	stream  streamOp
}

// abort unblocks any I/O on the connection; the context watch calls it.
// It shuts the socket down, which wakes every wait on it as Close does and
// sends the worker its FIN, but unlike Close does not wait for a read in
// progress to end: the watch may run inside one, in the same goroutine (a
// relay's client write failing inside Stream's RawConn.Read callback ends
// the request's context there), and Close would wait for itself. Whoever
// ends the exchange closes the connection after.
func (c *conn) abort() {
	if rawStreaming && c.raw != nil && c.raw.Control(shutdown) == nil {
		return
	}
	c.nc.Close()
}

// close closes the connection; recycle returns its read buffer to the
// pool, which only the goroutine that owns it may ask for (never while a
// read may still be running on it).
func (c *conn) close(recycle bool) {
	c.nc.Close()
	if recycle {
		c.out.release()
		c.br.Reset(nil)
		c.t.readers.Put(c.br)
	}
	c.br = nil
}

// exchange writes m (with its body, which it closes) and reads the
// response headers. On failure the connection is closed, and retry says whether
// the failure came before any response byte in a way that means the worker
// had closed the connection.
func (c *conn) exchange(ctx context.Context, m *message) (resp *http.Response, retry bool, err error) {
	var stop watch
	stop.start(ctx, c.kill)
	fail := func(op string, err error, retry bool) (*http.Response, bool, error) {
		stop.stop()   // if the watch ran, it closed (or is closing) nc: closing twice is harmless
		c.close(true) // this goroutine is the only user of the buffers
		if ctx.Err() != nil {
			return nil, false, ctxError(op, ctx, err)
		}
		return nil, retry && retryable(err), fmt.Errorf("upstream: %s: %w", op, err)
	}
	werr := c.writeRequest(m)
	closeBody(m.body)
	m.body = nil
	if werr != nil {
		return fail("write request", werr, true)
	}
	for n := 0; ; n++ {
		// One byte tells a connection the worker had closed (nothing
		// comes) from an answer that broke (no retry after it began).
		if _, err := c.br.Peek(1); err != nil {
			return fail("read response", err, n == 0)
		}
		resp, err = c.readResponse(m.method, m.req)
		if err != nil {
			return fail("read response", err, false)
		}
		if resp.StatusCode >= 200 || resp.StatusCode < 100 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail("read response", errors.New("unexpected 101 Switching Protocols"), false)
		}
		if n == 4 { // as net/http: at most 5 interim responses
			return fail("read response", errors.New("too many 1xx informational responses"), false)
		}
	}
	keep := !resp.Close && !m.closeReq
	if resp.Body == http.NoBody {
		c.release(stop, keep)
		return resp, false, nil
	}
	resp.Body = &respBody{c: c, rc: resp.Body, stop: stop, keep: keep, ctx: ctx}
	return resp, false, nil
}

// hookContext is a context that runs one function when it ends without
// context.AfterFunc's allocations: internal/http1's request contexts
// (reqContext there), which the gateway passes on as they are.
type hookContext interface {
	OnDone(f func()) bool
	StopOnDone() bool
}

// watch is an exchange's context watch: f (closing the connection) runs
// when the request's context ends.
type watch struct {
	hook  hookContext // the context's own hook, when it took f
	after func() bool // else context.AfterFunc's stop (nil: the context never ends)
}

func (w *watch) start(ctx context.Context, f func()) {
	if h, ok := ctx.(hookContext); ok && h.OnDone(f) {
		w.hook = h
		return
	}
	if ctx.Done() != nil {
		w.after = context.AfterFunc(ctx, f)
	}
}

// stop ends the watch; false means f has run or is running.
func (w *watch) stop() bool {
	switch {
	case w.hook != nil:
		return w.hook.StopOnDone()
	case w.after != nil:
		return w.after()
	}
	return true
}

// release ends an exchange whose response was read whole: the connection
// goes back to the pool when keep allows and the context watch had not
// fired, else it is closed.
func (c *conn) release(stop watch, keep bool) {
	if !stop.stop() {
		c.close(true) // the watch closed nc, or is closing it
		return
	}
	// Bytes past the answer would be read as the next one's: such a
	// connection is not reused.
	if keep && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close(true)
}

// writeRequest writes the request line, Host, m's header fields,
// Content-Length and body in one buffered write (a body longer than the
// write buffer's room takes more writes). The last buffered bytes are
// held for the first read of the answer to send (wait.go). The write
// buffer is taken from the pool for the request only: idle connections
// hold none.
func (c *conn) writeRequest(m *message) (err error) {
	w := c.t.writers.Get().(*bufio.Writer)
	w.Reset(&c.out)
	c.out.sent = false
	defer func() {
		if err == nil && c.out.held != nil {
			c.out.w = w // held bytes alias its buffer until they are sent
			return
		}
		c.out.hold, c.out.held = false, nil
		w.Reset(nil)
		c.t.writers.Put(w)
	}()
	if !httpwire.ValidToken(m.method) || !httpwire.ValidValue(m.host) || !validTarget(m.target) {
		return fmt.Errorf("invalid method %q, host %q or target %q", m.method, m.host, m.target)
	}
	w.WriteString(m.method)
	w.WriteByte(' ')
	w.WriteString(m.target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(m.host)
	w.WriteString("\r\n")
	for k, vs := range m.header {
		if reserved(k) {
			continue // written from the request's fields
		}
		for _, v := range vs {
			if err := writeField(w, k, v); err != nil {
				return err
			}
		}
	}
	for _, f := range m.fields {
		if reserved(f.Key) {
			return fmt.Errorf("header %s is set by the transport", f.Key)
		}
		if err := writeField(w, f.Key, f.Value); err != nil {
			return err
		}
	}
	if m.closeReq {
		w.WriteString("Connection: close\r\n")
	}
	hasBody := m.body != nil || m.data != nil
	n := int64(0)
	if hasBody {
		n = m.n
	}
	if hasBody || m.method == http.MethodPost || m.method == http.MethodPut || m.method == http.MethodPatch {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), n, 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	switch {
	case m.data != nil:
		w.Write(m.data)
	case m.body != nil:
		c.lr = io.LimitedReader{R: m.body, N: n}
		k, err := w.ReadFrom(&c.lr)
		c.lr.R = nil
		if err != nil {
			return fmt.Errorf("body: %w", err)
		}
		if k != n {
			return fmt.Errorf("body: %d bytes, want ContentLength %d", k, n)
		}
	}
	c.out.hold = !c.out.sent // a request is held whole or not at all
	return w.Flush()
}

// reserved reports whether a header field is written from the request's
// own fields rather than copied.
func reserved(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
		return true
	}
	return false
}

func writeField(w *bufio.Writer, k, v string) error {
	if !httpwire.ValidToken(k) {
		return fmt.Errorf("invalid header name %q", k)
	}
	if !httpwire.ValidValue(v) {
		return fmt.Errorf("invalid value for header %s", k)
	}
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(v)
	w.WriteString("\r\n")
	return nil
}

// validTarget reports whether a request-target can be written as is: not
// empty, and no space, control byte or DEL (which would end or split the
// request line).
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header contains tok (ASCII
// case-insensitive).
func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for len(v) > 0 {
			var part string
			part, v, _ = cut(v, ',')
			if asciiEqualFold(httpwire.TrimOWS(part), tok) {
				return true
			}
		}
	}
	return false
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// respBody is a response body on a pooled connection: at EOF the connection
// goes back to the pool (once), and Close before EOF closes it.
type respBody struct {
	c    *conn
	rc   io.ReadCloser // http.ReadResponse's body
	stop watch         // the context watch
	keep bool
	ctx  context.Context
	// began: Read was called, so Stream cannot take over the framing.
	began bool
	// state: 0 reading, 1 read to EOF, 2 closed or failed. Close may run
	// while a Read is blocked; the swap from 0 decides who ends the
	// exchange.
	state atomic.Int32
}

var errBodyClosed = errors.New("upstream: read on closed response body")

func (b *respBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case 1:
		return 0, io.EOF
	case 2:
		return 0, errBodyClosed
	}
	b.began = true
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		if b.state.CompareAndSwap(0, 1) {
			b.c.release(b.stop, b.keep)
		}
		return n, io.EOF
	}
	if !b.state.CompareAndSwap(0, 2) {
		return n, errBodyClosed // Close ran meanwhile
	}
	b.stop.stop()
	b.c.close(true) // Close cannot run any more: the buffers are ours
	if b.ctx.Err() != nil {
		return n, ctxError("read response body", b.ctx, err)
	}
	return n, fmt.Errorf("upstream: read response body: %w", err)
}

// Close ends the exchange: before EOF it closes the connection (no
// draining: the worker sees the disconnect). Further calls do nothing.
func (b *respBody) Close() error {
	if b.state.CompareAndSwap(0, 2) {
		b.stop.stop()
		// A Read may be running on the buffers: they are not recycled.
		b.c.close(false)
	}
	return nil
}
