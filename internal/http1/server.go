// Package http1 is a lean HTTP/1.1 server for the gateway's plain-TCP
// listener. It serves an ordinary http.Handler, as net/http's server does,
// but costs less per request (docs/results.md §13.4):
//
//   - net/http starts a background read on every request's connection, so
//     that a client that leaves cancels the request's context: a goroutine,
//     a read that would block, two read-deadline changes and a wake-up, even
//     for a request that is answered in 100 µs. This server starts that
//     watch only once a request has run for WatchAfter (1 ms by default),
//     so a client that leaves is still noticed (at most WatchAfter late)
//     but a fast request pays nothing for it.
//   - One read deadline per request instead of three: the idle deadline set
//     when the server waits for a request also bounds its headers, and a
//     header that does not arrive in the first read gets ReadHeaderTimeout
//     from then on.
//   - A handler's read deadline (http.ResponseController.SetReadDeadline) is
//     applied only when the server has to wait for the connection: a body
//     that arrived with its headers never touches the connection's timers.
//   - A response that fits in the buffer leaves in one write, with its
//     Content-Length, as net/http's does, without sorting its headers.
//   - A request's context offers one abort hook (OnDone/StopOnDone, hook.go)
//     that the server fires whenever it ends the context; internal/upstream
//     registers its connection abort there instead of context.AfterFunc
//     (docs/results.md §13.6).
//
// TLS, HTTP/2, Hijack and trailers in responses are not served: the gateway
// uses net/http for its TLS listener, and nothing in it hijacks or sends
// trailers.
package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWatchAfter is how long a request runs before the server watches
// its connection for the client leaving, when Server.WatchAfter is 0.
const DefaultWatchAfter = time.Millisecond

// Server serves HTTP/1.1 (and 1.0) on plain TCP listeners.
type Server struct {
	Handler http.Handler
	// ReadHeaderTimeout bounds a request's headers once they have started
	// to arrive; IdleTimeout bounds the wait for a keep-alive connection's
	// next request (0: ReadHeaderTimeout; both 0: no bound).
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes caps the request line and headers (0: 1 MiB, as
	// net/http's default).
	MaxHeaderBytes int
	// WatchAfter is how long a request runs before the server watches its
	// connection, so that a client that leaves cancels the request's
	// context (0: DefaultWatchAfter; negative: from the start, as
	// net/http does).
	WatchAfter time.Duration
	// BaseContext gives the context every request's context descends from
	// (nil: context.Background()).
	BaseContext func(net.Listener) context.Context
	// ErrorBody formats the server's own error answers (malformed requests,
	// headers too large); nil: plain text.
	ErrorBody func(status int, msg string) (contentType string, body []byte)
	// ErrorLog receives handler panics and accept errors (nil: the log
	// package's standard logger).
	ErrorLog *log.Logger

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	readers   bufPool[*bufio.Reader]
	writers   bufPool[*bufio.Writer]
	dates     dateCache
}

func (s *Server) date() string { return s.dates.get() }

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) watchAfter() time.Duration {
	if s.WatchAfter == 0 {
		return DefaultWatchAfter
	}
	return s.WatchAfter
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return s.ReadHeaderTimeout
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ln fails or the server is shut down; it always returns an error,
// ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	if s.shutdown.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	if s.shutdown.Load() { // Shutdown ran since the check above
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
	s.listeners[&ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
	}()
	base := context.Background()
	if s.BaseContext != nil {
		if base = s.BaseContext(ln); base == nil {
			return errors.New("http1: BaseContext returned a nil context")
		}
	}
	// What net/http's server puts in every request's context, for handlers
	// that look (httputil.ReverseProxy aborts a broken answer only under a
	// server): an *http.Server describing this one, never served.
	base = context.WithValue(base, http.ServerContextKey, &http.Server{
		Handler: s.Handler, ReadHeaderTimeout: s.ReadHeaderTimeout, IdleTimeout: s.IdleTimeout,
		MaxHeaderBytes: s.maxHeaderBytes(), ErrorLog: s.ErrorLog,
	})
	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			// Out of descriptors and the like pass; net/http waits the
			// same way instead of giving up.
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logf("http1: accept error: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		c := s.newConn(rwc, base)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// newConn registers a connection; nil (and the connection closed) when the
// server is shutting down.
func (s *Server) newConn(rwc net.Conn, base context.Context) *conn {
	c := &conn{srv: s, rwc: rwc, base: base} // stateIdle
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		_ = rwc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeListeners stops accepting; the caller holds mu.
func (s *Server) closeListeners() {
	for ln := range s.listeners {
		_ = (*ln).Close()
	}
}

// closeIdle closes the connections waiting for a request and says whether
// none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			_ = c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

// Shutdown stops accepting, closes idle connections, and waits for the
// requests in flight to finish (each connection is closed after its
// answer) or for ctx to end, whose error it then returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.closeListeners()
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.closeListeners()
	for c := range s.conns {
		_ = c.rwc.Close()
	}
	s.mu.Unlock()
	return nil
}

// serveConn runs one connection's request loop.
func (c *conn) serve() {
	defer c.srv.forget(c)
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.logf("http1: panic serving %v: %v\n%s", c.rwc.RemoteAddr(), v, debug.Stack())
			}
		}
		c.close()
	}()
	c.init()
	for first := true; ; first = false {
		if err := c.waitRequest(first); err != nil {
			return
		}
		req, err := c.readRequest()
		if err != nil {
			c.refuse(err)
			return
		}
		if !c.serveRequest(req) {
			return
		}
		if c.srv.shutdown.Load() {
			return
		}
	}
}
