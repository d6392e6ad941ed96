package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/queue"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/llmlab/llmlab/internal/upstream"
	"github.com/llmlab/llmlab/internal/validate"
)

// clientGone reports whether r ended because its client left (not because
// of a shutdown, which still owes the client an answer).
func clientGone(r *http.Request) bool {
	return r.Context().Err() != nil && !errors.Is(context.Cause(r.Context()), errShutdown)
}

// readAll reads a body, sized up front when the length is known so a
// prompt costs one allocation (bytes.Buffer.ReadFrom would grow it again to
// keep 512 bytes free). The one spare byte lets a body that is longer than
// declared reach the reader's own error instead of being cut silently.
func readAll(r io.Reader, n int64) ([]byte, error) {
	size := 512
	if n > 0 && n < 16<<20 {
		size = int(n) + 1
	}
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Header values set on every request, shared rather than allocated by
// Header.Set each time; nothing modifies them.
var (
	sseContentType   = []string{"text/event-stream; charset=utf-8"}
	noCache          = []string{"no-cache"}
	noBuffering      = []string{"no"}
	forwardedHeaders = [...]string{"Accept", "Authorization", "X-Request-Id"} // canonical forms
)

// place is an admitted request's hold: a dispatcher slot and a worker
// lease.
type place struct {
	slot    queue.Place
	lease   *supervisor.Lease
	start   time.Time     // arrival
	queued  time.Duration // waiting for a slot
	held    time.Duration // waiting for a READY worker
	granted time.Time     // when it held both
	// Storage for the request's other per-request state, so one
	// allocation holds it all: admit's cold-start deadline, the plain
	// relay's writer and the call to the worker with its fields.
	wait   lazyDeadline
	out    deadlineWriter
	sse    sseRelay
	call   upstream.Call
	fields [len(forwardedHeaders) + 1]upstream.Field
}

func (p *place) done() {
	if p.lease != nil {
		p.lease.Release()
	}
	p.slot.Release()
}

// admit is the admit stage: the admission policy first (shed, or a
// predicted finish past the deadline: refused at once), then a place in
// the dispatcher, then a READY worker. Both waits together are bounded by
// ColdStartTimeout and by the client staying connected: a client that
// leaves frees its place at once.
func (s *Server) admit(r *http.Request, deadline time.Duration) (*place, error) {
	p := &place{start: time.Now()}
	load := s.ctl.load(deadline > 0 || s.set.DeadlineAdmission)
	if err := s.ctl.policy.Check(p.start, load, deadline, s.ctl.tier() >= admission.TierShed); err != nil {
		return nil, err
	}
	p.wait = lazyDeadline{parent: r.Context(), deadline: p.start.Add(s.set.ColdStartTimeout), cause: errColdStartTimeout}
	ctx := &p.wait
	defer ctx.stop()
	waited, err := s.disp.AcquirePlace(ctx, &p.slot)
	p.queued = waited
	// Every admission counts, a place found at once as 0 s, so the
	// histogram's mean and quantiles are those of all requests. A full
	// queue is no wait: it is refused.
	if !errors.Is(err, queue.ErrFull) {
		s.metrics.QueueWait.Observe(waited.Seconds())
	}
	if err != nil {
		return nil, &stageError{"waiting in queue", err}
	}
	// A place found at once took no time, so the hold is counted from
	// arrival (the admission check's microseconds with it): the clock is
	// read again only after a wait.
	t := p.start
	if waited > 0 {
		t = time.Now()
	}
	lease, err := s.backend.EnsureReady(ctx)
	now := time.Now()
	p.held = now.Sub(t)
	if err != nil {
		p.slot.Release()
		return nil, &stageError{"waiting for worker", err}
	}
	p.lease, p.granted = lease, now
	p.slot.SetGranted(p.granted)
	return p, nil
}

// send is the upstream stage: it posts body to the worker. The upstream
// request carries the client's context, so a client that disconnects
// cancels the worker's request too. If the request fails before any
// response because the worker process has just died (it refused the
// connection, or reset it while exiting), send waits for a new worker once,
// within the cold-start bound, and resends: the dead worker answered
// nothing, and generation has no side effects. (A pooled connection the
// worker closed while idle is resent by the transport itself, on a new
// connection; a dead worker then refuses that one, which lands here.)
func (s *Server) send(r *http.Request, p *place, path string, body []byte) (*http.Response, error) {
	for retried := false; ; retried = true {
		resp, err := s.post(r, p, path, body)
		if err == nil {
			return resp, nil
		}
		err = fmt.Errorf("POST %s%s: %w", p.lease.URL, path, err)
		if r.Context().Err() != nil {
			return nil, &stageError{"sending to the worker", err} // shutdown or client gone
		}
		// A dying worker's exit is recorded within milliseconds of its
		// sockets closing; half a second is ample and bounds the delay
		// of a 502 from a live but broken worker.
		if !retried && p.lease.WorkerExited(r.Context(), 500*time.Millisecond) {
			s.log.Info("worker died before the request reached it; waiting for a new one", "route", path)
			p.lease.Release()
			ctx, cancel := context.WithTimeoutCause(r.Context(), s.set.ColdStartTimeout, errColdStartTimeout)
			lease, err := s.backend.EnsureReady(ctx)
			cancel()
			if err != nil {
				// The place is released by the caller; the lease is
				// already given back.
				p.lease = nil
				return nil, &stageError{"waiting for a restarted worker", err}
			}
			p.lease = lease
			continue
		}
		return nil, &upstreamError{err}
	}
}

// post makes one attempt at the worker. A plain-HTTP worker is called
// with upstream's Send, from storage in the request's place (no URL
// parsed, no header map, no body reader per request); any other URL goes
// through an http.Request and the transport's fallback.
func (s *Server) post(r *http.Request, p *place, path string, body []byte) (*http.Response, error) {
	f := s.workerFields(r, p.fields[:0])
	w := s.workerTarget(p.lease.URL)
	if !w.plain {
		return s.postRequest(r, p.lease.URL+path, f, body)
	}
	target := path
	if w.prefix != "" {
		target = w.prefix + path
	}
	p.call = upstream.Call{Method: http.MethodPost, Addr: w.addr, Host: w.host, Target: target, Header: f, Body: body}
	return s.upstream.Send(r.Context(), &p.call)
}

// workerFields appends to f the header fields sent to the worker: the
// content type, the client's forwarded fields, and the worker's own key in
// place of the client's. Values are shared, not copied: nothing here or
// in the transport changes them.
func (s *Server) workerFields(r *http.Request, f []upstream.Field) []upstream.Field {
	f = append(f, upstream.Field{Key: "Content-Type", Value: "application/json"})
	for _, h := range forwardedHeaders {
		if h == "Authorization" && s.workerAuth != "" {
			continue
		}
		if v := r.Header[h]; len(v) > 0 && v[0] != "" {
			f = append(f, upstream.Field{Key: h, Value: v[0]})
		}
	}
	if s.workerAuth != "" {
		// The client's key is the gateway's; the worker has its own.
		f = append(f, upstream.Field{Key: "Authorization", Value: s.workerAuth})
	}
	return f
}

// postRequest is post for a worker URL that Send does not take (https):
// an http.Request with fields f, which the transport hands to its
// fallback.
func (s *Server) postRequest(r *http.Request, url string, f []upstream.Field, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, badRequest(http.StatusInternalServerError, "internal", "build upstream request: %v", err)
	}
	for _, x := range f {
		req.Header[x.Key] = []string{x.Value}
	}
	return s.upstream.RoundTrip(req)
}

// workerTarget is a worker base URL taken apart for Send: parsed once per
// URL (a worker keeps its URL until it is restarted), not per request.
type workerTarget struct {
	url        string
	plain      bool   // http, no user info, no query: Send takes it
	addr, host string // host:port to dial; the Host field
	prefix     string // the URL's path without its trailing slash
}

func (s *Server) workerTarget(base string) *workerTarget {
	if w := s.target.Load(); w != nil && w.url == base {
		return w
	}
	w := &workerTarget{url: base}
	if u, err := url.Parse(base); err == nil && u.Scheme == "http" && u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.Host != "" {
		w.plain, w.host, w.addr = true, u.Host, u.Host
		if u.Port() == "" {
			w.addr = net.JoinHostPort(u.Hostname(), "80")
		}
		w.prefix = strings.TrimSuffix(u.EscapedPath(), "/")
	}
	s.target.Store(w)
	return w
}

// forward runs a validated request through admit, the batching window,
// upstream and relay; a failure before the relay goes to respond.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, route string, body []byte, req validate.Request) {
	deadline, err := requestDeadline(r)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	p, err := s.admit(r, deadline)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	defer p.done()
	body = s.degrade(w, body, req)
	s.ctl.batch.join(r.Context())
	resp, err := s.send(r, p, route, body)
	if err != nil {
		s.respond(w, r, err)
		return
	}
	defer resp.Body.Close()
	if req.Stream && resp.StatusCode == http.StatusOK {
		s.relayStream(w, r, resp, route, p.start, &p.sse)
	} else {
		s.relayPlain(w, resp, route, &p.out)
	}
	s.ctl.served(p, resp.StatusCode)
}

// streamDeadline gives the writes to a streaming client StreamWriteTimeout
// to complete (the writes of one batch of events and their flush).
// Without it a client that stops reading (but keeps its connection open)
// blocks the relay forever once the socket buffers are full, holding its
// dispatcher place and the worker's sequence. The deadline is renewed as
// the stream progresses, so it bounds a stall, not the length of a slow
// but progressing answer. The last deadline also bounds net/http's final
// flush after the handler returns; net/http clears it before the
// connection's next request.
type streamDeadline struct {
	rc      deadlines
	timeout time.Duration
	until   time.Time // the deadline armed last
}

// renew re-arms the deadline before a batch of writes, unless more than
// 7/8 of the timeout is still left of the one armed last: arming is a
// runtime timer update, ~6 % of a relayed stream's CPU when it was done
// before every batch. So a client that stops reading is cut off between
// 7/8 of StreamWriteTimeout and all of it after the last write it took.
func (d *streamDeadline) renew() {
	if d.timeout <= 0 {
		return
	}
	now := time.Now()
	if d.until.Sub(now) > d.timeout-d.timeout/8 {
		return
	}
	d.until = now.Add(d.timeout)
	_ = d.rc.SetWriteDeadline(d.until)
}

// stalled reports whether a failed write to the client ran past its
// deadline (as opposed to the client closing its connection).
func stalled(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// clientFailed counts and, for a stall, logs the end of a request whose
// client could not be written to. Returning from the relay then closes the
// upstream body and cancels the upstream request, which the worker sees as
// a disconnect and frees the sequence; the place is released by forward.
func (s *Server) clientFailed(err error, route string) {
	if stalled(err) {
		s.metrics.Errors.WithLabelValues("client_stalled", "499").Inc()
		s.log.Warn("client stopped reading; request ended", "route", route, "stream_write_timeout", s.set.StreamWriteTimeout)
		return
	}
	s.metrics.Errors.WithLabelValues("client_disconnect", "499").Inc()
}

// deadlineWriter renews the client's write deadline before every write of
// a plain body, and keeps the write error apart from the worker's read
// errors, which the copy returns the same way.
type deadlineWriter struct {
	s     *Server
	w     io.Writer
	rc    deadlines
	until time.Time // the whole answer's write deadline (write_timeout)
	err   error
	fresh bool // armed just now: the next write needs no re-arming
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.fresh {
		d.fresh = false // the first piece follows the arming at once
	} else {
		d.arm(time.Now())
	}
	n, err := d.w.Write(p)
	if err != nil {
		d.err = err
	}
	return n, err
}

// hopHeader reports a hop-by-hop header, which is not forwarded (RFC 9110
// §7.6.1). Names are canonical, as in a parsed header map.
func hopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade":
		return true
	}
	return false
}

// relayPlain passes the worker's answer through unchanged: status, headers
// and body bytes (a 400 "maximum context length" from vLLM reaches the
// client as vLLM wrote it). dw is storage for the writer (the request's
// place holds one).
func (s *Server) relayPlain(w http.ResponseWriter, resp *http.Response, route string, dw *deadlineWriter) {
	h := w.Header()
	for k, vs := range resp.Header {
		if !hopHeader(k) {
			h[k] = vs
		}
	}
	if resp.StatusCode >= 400 {
		s.metrics.Errors.WithLabelValues("upstream_status", fmt.Sprint(resp.StatusCode)).Inc()
	}
	*dw = deadlineWriter{s: s, w: w, rc: deadlines{w}}
	now := time.Now()
	if s.set.WriteTimeout > 0 {
		dw.until = now.Add(s.set.WriteTimeout)
	}
	dw.arm(now) // WriteHeader may flush once the body is large
	dw.fresh = true
	w.WriteHeader(resp.StatusCode)
	// A pooled reader copies in 32 KiB pieces, each write under its own
	// deadline (io.Copy would use net/http's ReadFrom, with no way to
	// renew the deadline between pieces).
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() { br.Reset(nil); s.readers.Put(br) }()
	if _, err := br.WriteTo(dw); dw.err != nil {
		s.clientFailed(dw.err, route)
	} else if err != nil {
		s.metrics.Errors.WithLabelValues("upstream_interrupted", fmt.Sprint(resp.StatusCode)).Inc()
		s.log.Warn("worker response interrupted", "error", err)
	}
}

// relayStream copies an event stream event by event. Each complete event is
// written as soon as it has arrived, and the client connection is flushed
// after each read of the worker's socket: a lone token goes out at once,
// while tokens that arrive together (a busy batch, up to 16 KiB) share one
// flush and one system call; the head waits for the first flush too,
// so an event that came with the worker's head goes out with it. An
// incomplete event is never forwarded. If the worker's stream breaks, the
// client gets an error event and [DONE] (the shape vLLM uses for errors
// after a stream began) instead of a hang or a silent cut. The worker's
// body is pushed through upstream's Stream, which reads it without a read
// that finds nothing before each wait (upstream/stream.go).
func (s *Server) relayStream(w http.ResponseWriter, r *http.Request, resp *http.Response, route string, arrived time.Time, e *sseRelay) {
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Accel-Buffering"] = sseContentType, noCache, noBuffering
	w.WriteHeader(http.StatusOK)
	*e = sseRelay{s: s, w: w, route: route, arrived: arrived, first: true, unflushed: true,
		dl: streamDeadline{rc: deadlines{w}, timeout: s.set.StreamWriteTimeout}, limit: maxEventBytes}
	e.dl.renew()
	err := upstream.StreamBody(resp.Body, e.deliver, e.idle)
	if err == nil || e.werr != nil {
		if err == nil && e.unflushed {
			e.werr = e.flush()
		}
		if e.werr != nil {
			// The client is gone or stalled; the upstream exchange was
			// closed, which the worker sees as a disconnect.
			s.clientFailed(e.werr, route)
			return
		}
		if e.done {
			return
		}
		err = io.ErrUnexpectedEOF // the stream ended without [DONE]
	}
	if clientGone(r) {
		s.metrics.Errors.WithLabelValues("client_disconnect", "499").Inc()
		return
	}
	if errors.Is(context.Cause(r.Context()), errShutdown) {
		err = errShutdown
	}
	s.metrics.Errors.WithLabelValues("stream_interrupted", "200").Inc()
	s.log.Warn("worker stream broke", "route", route, "error", err)
	sw := openai.NewSSEWriter(w)
	ev := openai.NewError(http.StatusBadGateway, fmt.Sprintf("worker stream interrupted: %v", err))
	if errors.Is(err, errShutdown) {
		// Not the worker's fault: the same request elsewhere, or
		// here after a restart, would succeed.
		ev = openai.NewError(http.StatusServiceUnavailable, fmt.Sprintf("stream ended: %v before it finished; retry after %d s", err, shutdownRetryAfter))
	}
	_ = sw.WriteJSON(ev)
	_ = sw.WriteDone()
}

// maxEventBytes bounds one event of a worker's stream (vLLM's largest are
// a few hundred KiB: a token with many logprobs): a worker that never ends
// an event cannot grow the gateway's memory without bound.
const maxEventBytes = 16 << 20

// errEventTooLarge ends a stream whose worker sent an event past
// maxEventBytes; the client gets the usual error event.
var errEventTooLarge = fmt.Errorf("an event longer than %d bytes", maxEventBytes)

// sseRelay is a relayed stream's state: it cuts the body bytes upstream
// delivers into events and writes them to the client.
type sseRelay struct {
	s       *Server
	w       http.ResponseWriter
	dl      streamDeadline
	route   string
	arrived time.Time
	// pend holds the start of an event whose end has not arrived yet
	// (the rest of a piece after its last complete event), at most limit
	// bytes.
	pend  []byte
	limit int
	// unflushed: the head or events were written since the last flush.
	// The write deadline is renewed (when due) before the first write
	// after a flush: it then bounds that batch's writes and its flush
	// together. A batch is at most what one read brought (16 KiB:
	// upstream runs idle after each read), so a client that stops reading
	// is still cut off within StreamWriteTimeout of the last write it
	// took, and one that reads slowly but steadily is not.
	first, done, unflushed bool
	werr                   error  // the client's write or flush failure
	scratch                []byte // an event rewritten to end in "\n"
}

// deliver takes a piece of the body. A piece that continues a pending
// event is appended to it (events rarely span pieces: a worker writes
// each in one chunk); otherwise the piece's complete events are written
// from the piece itself.
func (e *sseRelay) deliver(p []byte) error {
	if len(e.pend) == 0 {
		rest, err := e.events(p)
		if err == nil && len(rest) > 0 {
			if len(rest) > e.limit {
				return errEventTooLarge
			}
			e.pend = append(e.pend, rest...)
		}
		return err
	}
	e.pend = append(e.pend, p...)
	rest, err := e.events(e.pend)
	if err == nil {
		e.pend = e.pend[:copy(e.pend, rest)]
	}
	if len(e.pend) > e.limit {
		return errEventTooLarge
	}
	return err
}

// events writes the complete events in q, each ended by a blank line,
// which is written as one "\n"; blank lines outside events are dropped.
// Events that lie back to back in q, as a batch does, go out in one write
// (q[run:start] is always such a run). It returns the incomplete rest.
func (e *sseRelay) events(q []byte) ([]byte, error) {
	run, start := 0, 0 // start: where the event being read begins
	for i := 0; ; {
		j := bytes.IndexByte(q[i:], '\n')
		if j < 0 {
			break
		}
		line, next := q[i:i+j+1], i+j+1
		if !isBlank(line) {
			i = next
			continue
		}
		switch {
		case i > start && line[0] == '\n': // the run grows by this event
			e.checkDone(q[start:i])
		case i > start: // a "\r\n" blank line: the event goes out with "\n"
			e.checkDone(q[start:i])
			if err := e.write(q[run:start]); err != nil {
				return nil, err
			}
			e.scratch = append(append(e.scratch[:0], q[start:i]...), '\n')
			if err := e.write(e.scratch); err != nil {
				return nil, err
			}
			run = next
		default: // a blank line outside an event is dropped
			if err := e.write(q[run:start]); err != nil {
				return nil, err
			}
			run = next
		}
		start, i = next, next
	}
	if err := e.write(q[run:start]); err != nil {
		return nil, err
	}
	return q[start:], nil
}

var doneEvent = []byte("data: [DONE]")

func (e *sseRelay) checkDone(event []byte) {
	if bytes.Equal(bytes.TrimSpace(event), doneEvent) {
		e.done = true
	}
}

// write sends complete events to the client, renewing the write deadline
// (when due) before the first write after a flush.
func (e *sseRelay) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if !e.unflushed {
		e.dl.renew()
	}
	if _, err := e.w.Write(p); err != nil {
		e.werr = err
		return err
	}
	e.unflushed = true
	if e.first {
		e.first = false
		e.s.metrics.TTFT.WithLabelValues(e.route).Observe(time.Since(e.arrived).Seconds())
	}
	return nil
}

// idle flushes what was written: what one read of the worker brought.
func (e *sseRelay) idle() error {
	if !e.unflushed {
		return nil
	}
	if err := e.flush(); err != nil {
		e.werr = err
		return err
	}
	return nil
}

func (e *sseRelay) flush() error {
	e.unflushed = false
	if err := e.dl.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func isBlank(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}
