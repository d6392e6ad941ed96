package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/httpwire"
)

// ErrClientGone is the cause a request's context is cancelled with when its
// client closed the connection (or a write to it failed).
var ErrClientGone = errors.New("http1: client closed the connection")

// aLongTimeAgo is a deadline in the past: it wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// maxDiscard is the most of an unread request body the server reads away to
// keep the connection; a larger rest closes it (net/http's figure).
const maxDiscard = 256 << 10

// Connection states, for Shutdown.
const (
	stateIdle   int32 = iota // waiting for a request: Shutdown may close it
	stateActive              // reading or serving a request
	stateClosed              // closed by Shutdown while idle
)

type conn struct {
	srv   *Server
	rwc   net.Conn
	base  context.Context
	state atomic.Int32

	ctx    context.Context // the connection's: every request's parent
	cancel context.CancelFunc
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	line   []byte // a header line longer than br's buffer
	head   []byte // a head read line by line
	budget int    // header bytes left for this request

	// Read deadlines are applied lazily: want is what the server or the
	// handler asked for, set what the connection has. A read that finds
	// its data buffered never touches the connection's timer.
	rdWant, rdSet time.Time
	// Write deadlines likewise: applied at the next write.
	wdWant, wdSet time.Time
	hold          []byte // a response's held body, kept for the next

	// The watch: after WatchAfter, once the body is read, a goroutine reads
	// the connection so that a client that leaves cancels the request.
	mu        sync.Mutex
	timer     *time.Timer
	active    bool // a handler is running
	bodyDone  bool // its body is read (or it has none)
	fired     bool // WatchAfter passed while the body was unread
	watching  bool
	watched   bool // a watch ran for this request: it cleared the read deadline
	stopping  bool
	watchDone chan struct{}
	cur       *request // the request being served (mu)
	// stopHook stops the connection context's watch, which fires the
	// current request's hook when the server aborts (base context).
	stopHook func() bool
	peek     []byte // what the watch read: the next request's start
	gone     bool   // the client left: close after this answer
	linger   bool   // the client may still be sending: see close
}

func (c *conn) init() {
	c.ctx, c.cancel = context.WithCancel(context.WithValue(c.base, http.LocalAddrContextKey, c.rwc.LocalAddr()))
	c.stopHook = context.AfterFunc(c.ctx, c.fireCurrent)
	c.br = c.srv.readers.get(func() *bufio.Reader { return bufio.NewReaderSize(nil, 4<<10) })
	c.br.Reset(c)
	c.bw = c.srv.writers.get(func() *bufio.Writer { return bufio.NewWriterSize(nil, 4<<10) })
	c.bw.Reset(c)
	c.remote = c.rwc.RemoteAddr().String()
	c.rdSet = aLongTimeAgo // unknown: the first request sets its own
}

// close closes the connection after its last answer. Closing with unread
// input makes the kernel send a reset, which can destroy the answer before
// the client reads it, so when the client may still be sending (linger)
// the write side is shut first and what it sends is read away for up to
// 500 ms, as net/http does in the same cases.
func (c *conn) close() {
	c.end()
	if c.bw != nil {
		if c.bw.Buffered() > 0 {
			// A refusal, or what a panicking handler left: bounded, as a
			// client that does not read must not hold the connection.
			c.wdWant = time.Now().Add(time.Second)
			_ = c.bw.Flush()
		}
		c.bw.Reset(nil)
		c.srv.writers.put(c.bw)
		c.bw = nil
	}
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok && c.linger && !c.gone {
		if tc.CloseWrite() == nil {
			_ = c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, _ = io.CopyN(io.Discard, c.rwc, maxDiscard)
		}
	}
	_ = c.rwc.Close()
	if c.br != nil {
		c.br.Reset(nil)
		c.srv.readers.put(c.br)
		c.br = nil
	}
	if c.stopHook != nil {
		c.stopHook()
	}
	if c.cancel != nil {
		c.cancel()
	}
}

// fireCurrent fires the hook of the request being served: the
// connection's context ended (the server's base context was cancelled),
// and with it the request's.
func (c *conn) fireCurrent() {
	c.mu.Lock()
	st := c.cur
	c.mu.Unlock()
	if st != nil {
		st.ctx.fire()
	}
}

// Read is what br reads from: the byte the watch took first, then the
// connection under the wanted deadline.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.peek) > 0 {
		n := copy(p, c.peek)
		c.peek = c.peek[n:]
		return n, nil
	}
	if !c.rdWant.Equal(c.rdSet) {
		if err := c.rwc.SetReadDeadline(c.rdWant); err != nil {
			return 0, err
		}
		c.rdSet = c.rdWant
	}
	return c.rwc.Read(p)
}

// Write is what bw writes to: the connection under the wanted deadline.
func (c *conn) Write(p []byte) (int, error) {
	if !c.wdWant.Equal(c.wdSet) {
		if err := c.rwc.SetWriteDeadline(c.wdWant); err != nil {
			return 0, err
		}
		c.wdSet = c.wdWant
	}
	return c.rwc.Write(p)
}

// protoError is a malformed or refused request: the server answers it
// with status and closes the connection.
type protoError struct {
	status int
	msg    string
}

func (e *protoError) Error() string { return e.msg }

func badRequest(msg string) error { return &protoError{http.StatusBadRequest, msg} }

// errQuiet ends a connection without an answer: the client left, went
// idle too long, or the server is shutting down.
var errQuiet = errors.New("http1: connection ends")

// waitRequest waits for a request's first byte under the idle deadline.
func (c *conn) waitRequest(first bool) error {
	c.state.Store(stateIdle)
	if c.srv.shutdown.Load() {
		return errQuiet
	}
	d := c.srv.idleTimeout()
	if first && c.srv.ReadHeaderTimeout > 0 {
		d = c.srv.ReadHeaderTimeout
	}
	if d > 0 {
		// Re-armed only once an eighth of it has passed, so a busy
		// keep-alive connection rarely touches its timer: the bound is
		// 7/8 to 8/8 of the timeout.
		now := time.Now()
		if c.rdSet.Before(now.Add(d-d/8)) || c.rdSet.After(now.Add(d)) {
			c.rdWant = now.Add(d)
		} else {
			c.rdWant = c.rdSet
		}
	} else {
		c.rdWant = time.Time{}
	}
	if _, err := c.br.Peek(1); err != nil {
		return errQuiet
	}
	if !c.state.CompareAndSwap(stateIdle, stateActive) {
		return errQuiet // closed by Shutdown as it arrived
	}
	c.budget = c.srv.maxHeaderBytes() + 4096
	return nil
}

// readLine reads one line of the request head without its line end.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.line = append(c.line[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(c.line) > c.budget {
				return nil, &protoError{http.StatusRequestHeaderFieldsTooLarge, "request headers too large"}
			}
			line, err = c.br.ReadSlice('\n')
			c.line = append(c.line, line...)
		}
		line = c.line
	}
	if c.budget -= len(line); c.budget < 0 {
		return nil, &protoError{http.StatusRequestHeaderFieldsTooLarge, "request headers too large"}
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, badRequest("request ended inside its headers")
		}
		return nil, errQuiet
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// request is one request's state on the connection.
type request struct {
	req       *http.Request
	ctx       reqContext // req's context
	cancel    context.CancelCauseFunc
	close     bool // the client asked to close after the answer
	expect100 bool // the client waits for 100 Continue before its body
	body      *body
	resp      response // the answer's state (one allocation holds both)
}

// readRequest reads and checks a request's head.
func (c *conn) readRequest() (*request, error) {
	head, err := c.readHead()
	if err != nil {
		return nil, err
	}
	line, rest := httpwire.NextLine(head)
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 {
		return nil, badRequest("malformed request line")
	}
	if !httpwire.ValidToken(method) {
		return nil, badRequest("invalid method")
	}
	major, minor, ok := httpwire.ParseVersion(proto)
	if !ok {
		return nil, badRequest("malformed HTTP version")
	}
	if major != 1 {
		return nil, &protoError{http.StatusHTTPVersionNotSupported, "HTTP version not supported"}
	}
	u, err := parseTarget(method, target)
	if err != nil {
		return nil, err
	}
	h, err := httpwire.ParseHeader(rest)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	st := &request{}
	var zero http.Request
	ctx, cancel := context.WithCancelCause(c.ctx)
	st.ctx.Context = ctx
	r := zero.WithContext(&st.ctx)
	r.Method, r.URL, r.RequestURI = method, u, target
	r.Proto, r.ProtoMajor, r.ProtoMinor = proto, major, minor
	r.Header, r.RemoteAddr = h, c.remote
	st.req, st.cancel = r, cancel
	if err := c.frame(st, h); err != nil {
		cancel(nil)
		return nil, err
	}
	return st, nil
}

// readHead reads a request's line and header fields, up to and with the
// empty line, as one string: the request's strings are slices of it, so
// a head costs one allocation. A head already in the buffer (the usual
// case) is taken whole; otherwise line by line, under the size budget.
func (c *conn) readHead() (string, error) {
	buf, _ := c.br.Peek(c.br.Buffered())
	// One empty line before a request is allowed (RFC 9112 §2.2).
	if skip := httpwire.LineEnd(buf); skip == 1 && buf[0] == '\n' || skip == 2 && buf[0] == '\r' {
		_, _ = c.br.Discard(skip)
		c.budget -= skip
		buf = buf[skip:]
	}
	if end := httpwire.HeadEnd(buf); end > 0 && end <= c.budget {
		head := string(buf[:end])
		_, _ = c.br.Discard(end)
		return head, nil
	}
	// A head that did not come in one piece gets ReadHeaderTimeout.
	if t := c.srv.ReadHeaderTimeout; t > 0 {
		if w := time.Now().Add(t); c.rdWant.IsZero() || w.Before(c.rdWant) {
			c.rdWant = w
		}
	}
	c.head = c.head[:0]
	for n := 0; ; n++ {
		line, err := c.readLine()
		if err != nil {
			if err == errQuiet && n > 0 {
				return "", badRequest("request ended inside its headers")
			}
			return "", err
		}
		if n == 0 && len(line) == 0 {
			continue // the one empty line allowed before a request
		}
		c.head = append(append(c.head, line...), '\n')
		if len(line) == 0 {
			return string(c.head), nil
		}
	}
}

// frame reads the Host, body framing, Expect and Connection headers.
func (c *conn) frame(st *request, h http.Header) error {
	r := st.req
	hosts := h["Host"]
	switch {
	case len(hosts) > 1:
		return badRequest("too many Host headers")
	case len(hosts) == 0 && r.ProtoMinor >= 1 && r.URL.Host == "":
		return badRequest("missing required Host header")
	}
	r.Host = r.URL.Host
	if r.Host == "" && len(hosts) == 1 {
		r.Host = hosts[0]
	}
	if !validHost(r.Host) {
		return badRequest("malformed Host header")
	}
	delete(h, "Host")

	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	switch {
	case hasTE && r.ProtoMinor == 0:
		return badRequest("Transfer-Encoding in an HTTP/1.0 request")
	case hasTE && hasCL:
		// Either could frame the body: a request smuggling attempt or a
		// broken client, refused either way.
		return badRequest("both Transfer-Encoding and Content-Length")
	case hasTE:
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return &protoError{http.StatusNotImplemented, "unsupported Transfer-Encoding " + strconv.Quote(strings.Join(te, ", "))}
		}
		r.ContentLength = -1
		r.TransferEncoding = []string{"chunked"}
		delete(h, "Transfer-Encoding")
		st.body = &body{c: c, st: st, chunked: true}
		st.body.chunks = newChunkedReader(c.br)
		r.Body = st.body
	case hasCL:
		n, ok := httpwire.ParseContentLength(cl)
		if !ok {
			return badRequest("malformed Content-Length")
		}
		r.ContentLength = n
		if n > 0 {
			st.body = &body{c: c, st: st, remain: n}
			r.Body = st.body
		} else {
			r.Body = http.NoBody
		}
	default:
		r.Body = http.NoBody
	}

	if ex, ok := h["Expect"]; ok {
		cont := len(ex) == 1 && strings.EqualFold(strings.TrimSpace(ex[0]), "100-continue")
		switch {
		case !cont:
			return &protoError{http.StatusExpectationFailed, "unsupported Expect header"}
		case r.ProtoMinor >= 1: // an HTTP/1.0 client's is ignored (RFC 9110 §10.1.1)
			st.expect100 = st.body != nil
		}
	}
	st.close = wantsClose(r.ProtoMinor, h["Connection"])
	r.Close = st.close
	return nil
}

// serveRequest runs the handler and finishes its answer; false ends the
// connection.
func (c *conn) serveRequest(st *request) bool {
	w := &st.resp
	*w = response{c: c, st: st, req: st.req, header: make(http.Header, 4), declared: -1, hold: c.hold}
	w.head = st.req.Method == http.MethodHead
	if st.body != nil {
		st.body.w = w
	}
	c.wdWant = time.Time{} // a deadline is the request's own
	c.begin(st)
	defer st.end(nil)
	h := c.srv.Handler
	if h == nil {
		h = http.DefaultServeMux // as net/http
	}
	h.ServeHTTP(w, st.req)
	w.finish()
	c.end()
	if w.closeAfter || st.close || c.gone || w.err != nil {
		c.linger = st.body != nil && !st.body.done && st.body.err == nil
		return false
	}
	if !c.discardBody(st) {
		c.linger = st.body.err == nil
		return false
	}
	return true
}

// begin arms the watch for a request.
func (c *conn) begin(st *request) {
	c.mu.Lock()
	c.active, c.fired, c.cur = true, false, st
	c.bodyDone = st.body == nil
	c.mu.Unlock()
	d := c.srv.watchAfter()
	if d < 0 {
		c.fire()
		return
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.fire)
	} else {
		c.timer.Reset(d)
	}
}

// fire is WatchAfter passing: watch now, or once the body is read.
func (c *conn) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return // a stale timer: the request ended
	}
	if !c.bodyDone {
		c.fired = true
		return
	}
	c.startWatchLocked()
}

// bodyEnded is the handler reading its body to the end (or to an error).
func (c *conn) bodyEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodyDone = true
	if c.fired {
		c.startWatchLocked()
	}
}

func (c *conn) startWatchLocked() {
	if c.watching || c.gone || !c.active {
		return
	}
	// Bytes already buffered are the client's next request: it has not
	// left.
	if c.br.Buffered() > 0 || len(c.peek) > 0 {
		return
	}
	c.watching, c.watched = true, true
	c.watchDone = make(chan struct{})
	go c.watch(c.cur, c.watchDone)
}

// watch reads one byte: data is the next request's start (kept for it),
// an error is the client gone, unless the server stopped the watch.
func (c *conn) watch(st *request, done chan struct{}) {
	defer close(done)
	// The connection's deadline (the idle one, or the body's) must not end
	// a long request's watch; cleared under mu so that a stop that comes
	// first is not undone (its past deadline is what ends the read).
	c.mu.Lock()
	if !c.stopping {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	var b [1]byte
	n, err := c.rwc.Read(b[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watching = false
	if n > 0 {
		c.peek = append(c.peek[:0], b[0])
	}
	if err != nil && !(c.stopping && errors.Is(err, os.ErrDeadlineExceeded)) {
		c.gone = true
		st.end(ErrClientGone)
	}
}

// end stops the timer and any watch once the handler has returned.
func (c *conn) end() {
	if c.timer != nil { // nil when WatchAfter < 0
		c.timer.Stop()
	}
	c.mu.Lock()
	c.active, c.cur = false, nil
	watched := c.watched
	c.watched = false
	c.mu.Unlock()
	c.stopWatch()
	if watched {
		c.rdSet = aLongTimeAgo // unknown: the next wait re-arms it
	}
}

func (c *conn) stopWatch() {
	c.mu.Lock()
	if !c.watching {
		c.mu.Unlock()
		return
	}
	c.stopping = true
	done := c.watchDone
	c.mu.Unlock()
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.mu.Lock()
	c.stopping = false
	c.mu.Unlock()
}

// clientGone marks a failed write: the request's context is cancelled as
// for a client seen leaving.
func (c *conn) clientGone(st *request) {
	c.mu.Lock()
	c.gone = true
	c.mu.Unlock()
	st.end(ErrClientGone)
}

// end cancels the request's context with cause (nil: the request is
// over), then fires its hook.
func (st *request) end(cause error) {
	st.cancel(cause)
	st.ctx.fire()
}

// discardBody reads away what the handler left of the body, so the
// connection can carry the next request; false when too much is left or
// the client waits for a 100 Continue that was never sent.
func (c *conn) discardBody(st *request) bool {
	b := st.body
	if b == nil || b.done {
		return true
	}
	if st.expect100 && !b.continued {
		return false
	}
	if t := c.srv.ReadHeaderTimeout; t > 0 {
		c.rdWant = time.Now().Add(t)
	}
	b.closed = false // the handler closed it; the server still reads it away
	n, err := io.CopyN(io.Discard, b, maxDiscard+1)
	return n <= maxDiscard && (err == nil || err == io.EOF) && b.done
}

// refuse answers a malformed request and ends the connection.
func (c *conn) refuse(err error) {
	var pe *protoError
	if !errors.As(err, &pe) {
		return
	}
	// The rest of a head too large may still be coming.
	c.linger = pe.status == http.StatusRequestHeaderFieldsTooLarge
	ctype, body := "text/plain; charset=utf-8", []byte(strconv.Itoa(pe.status)+" "+http.StatusText(pe.status)+": "+pe.msg+"\n")
	if c.srv.ErrorBody != nil {
		ctype, body = c.srv.ErrorBody(pe.status, pe.msg)
	}
	c.wdWant = time.Now().Add(time.Second)
	b := c.bw
	writeStatusLine(b, pe.status)
	b.WriteString("Content-Type: ")
	b.WriteString(ctype)
	b.WriteString("\r\nConnection: close\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.Write(body)
}

func wantsClose(minor int, conn []string) bool {
	closeTok, keep := false, false
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = strings.TrimSpace(tok); {
			case strings.EqualFold(tok, "close"):
				closeTok = true
			case strings.EqualFold(tok, "keep-alive"):
				keep = true
			}
		}
	}
	if minor == 0 {
		return closeTok || !keep
	}
	return closeTok
}
