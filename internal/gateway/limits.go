package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

// limitBody refuses, from its headers alone, a body declared larger than
// max_body_bytes (413; the connection is closed so the body is never read),
// and gives the body body_read_timeout to arrive. It writes the error and
// returns false when it refuses.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > s.set.MaxBodyBytes {
		w.Header().Set("Connection", "close")
		s.fail(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body of %d bytes is larger than %d bytes", r.ContentLength, s.set.MaxBodyBytes)
		return false
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return true
	}
	// The deadline covers the body only and is lifted once the body is
	// in: what follows (a hold for a cold start, a stream) has bounds of
	// its own.
	rc := deadlines{w}
	if err := rc.SetReadDeadline(time.Now().Add(s.set.BodyReadTimeout)); err != nil {
		return true // not a net/http connection (tests with a recorder)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
	return true
}

// deadlineBody lifts the body read deadline when the body ends.
type deadlineBody struct {
	io.ReadCloser
	rc   deadlines
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// arm sets the write deadline for the next piece of a plain answer: the
// sooner of stream_write_timeout from now (a stall) and the answer's own
// write_timeout (a client that reads, but too slowly to ever finish).
func (d *deadlineWriter) arm(now time.Time) {
	t := d.until
	if st := d.s.set.StreamWriteTimeout; st > 0 {
		if p := now.Add(st); t.IsZero() || p.Before(t) {
			t = p
		}
	}
	if !t.IsZero() {
		_ = d.rc.SetWriteDeadline(t)
	}
}

// connLimiter caps the open client connections. A connection past the cap
// is accepted and answered at once with a 503 and closed, so a client learns
// why instead of waiting in the kernel's backlog, and the gateway's memory
// and descriptors stay bounded under a flood. With TLS the refusal is a
// plain close: writing HTTP would need the handshake the cap is avoiding.
type connLimiter struct {
	net.Listener
	max      int64
	open     atomic.Int64
	plain    bool          // not TLS: a 503 can be written
	refusing chan struct{} // bounds the goroutines answering refusals
	onRefuse func()
	wg       sync.WaitGroup
}

func newConnLimiter(ln net.Listener, max int, plain bool, onRefuse func()) *connLimiter {
	return &connLimiter{Listener: ln, max: int64(max), plain: plain, refusing: make(chan struct{}, 64), onRefuse: onRefuse}
}

// refusalBody is the 503 written to a connection past the cap.
var refusalBody = func() []byte {
	b := openai.NewError(http.StatusServiceUnavailable, "too many open connections; retry later")
	body := fmt.Sprintf(`{"error":{"message":%q,"type":%q,"param":null,"code":503}}`+"\n", b.Error.Message, b.Error.Type)
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max <= 0 || l.open.Add(1) <= l.max {
			if l.max > 0 {
				return &countedConn{Conn: c, l: l}, nil
			}
			return c, nil
		}
		l.open.Add(-1)
		if l.onRefuse != nil {
			l.onRefuse()
		}
		l.refuse(c)
	}
}

// refuse answers c with the 503 off the accept loop. The request is read
// (briefly) first: closing a socket with unread input makes the kernel send
// a reset, which can destroy the answer before the client reads it.
func (l *connLimiter) refuse(c net.Conn) {
	if !l.plain {
		_ = c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close() // already answering many refusals: just close
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.refusing }()
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		_, _ = c.Write(refusalBody)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
		_ = c.Close()
	}()
}

// Close stops accepting and waits for the refusals being answered.
func (l *connLimiter) Close() error {
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

// countedConn gives its place back when closed (once).
type countedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite keeps net/http's graceful close (a half-close, then a short
// wait for the client's FIN) working through the wrapper.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// deadlines sets a connection's deadlines through a ResponseWriter and its
// Unwrap chain, as http.ResponseController does, without allocating a
// controller per request (every request sets one or two).
type deadlines struct{ w http.ResponseWriter }

func (d deadlines) SetReadDeadline(t time.Time) error {
	if c, ok := unwrapTo[interface{ SetReadDeadline(time.Time) error }](d.w); ok {
		return c.SetReadDeadline(t)
	}
	return fmt.Errorf("set read deadline: %w", http.ErrNotSupported)
}

func (d deadlines) SetWriteDeadline(t time.Time) error {
	if c, ok := unwrapTo[interface{ SetWriteDeadline(time.Time) error }](d.w); ok {
		return c.SetWriteDeadline(t)
	}
	return fmt.Errorf("set write deadline: %w", http.ErrNotSupported)
}

// Flush flushes the response as http.ResponseController does (the first
// writer in the Unwrap chain that can flush), without its allocation.
func (d deadlines) Flush() error {
	w := d.w
	for {
		switch f := w.(type) {
		case interface{ FlushError() error }:
			return f.FlushError()
		case http.Flusher:
			f.Flush()
			return nil
		case interface{ Unwrap() http.ResponseWriter }:
			w = f.Unwrap()
		default:
			return fmt.Errorf("flush: %w", http.ErrNotSupported)
		}
	}
}

// unwrapTo finds the first writer in w's Unwrap chain that is a T.
func unwrapTo[T any](w http.ResponseWriter) (T, bool) {
	for {
		if c, ok := w.(T); ok {
			return c, true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			var zero T
			return zero, false
		}
		w = u.Unwrap()
	}
}
