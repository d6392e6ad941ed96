package http1_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
)

// countingListener counts what the server does to its connections: writes
// and deadline changes, the costs the package doc says it avoids.
type countingListener struct {
	net.Listener
	writes, readDeadlines, writeDeadlines atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.l.readDeadlines.Add(1)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.l.writeDeadlines.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// startCounting serves h on a counting listener.
func startCounting(t *testing.T, h http.Handler, opt func(*http1.Server)) (*countingListener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &http1.Server{Handler: h}
	opt(srv)
	done := make(chan struct{})
	go func() { srv.Serve(cl); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return cl, ln.Addr().String()
}

func TestOneWritePerAnswer(t *testing.T) {
	cl, addr := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		for range 10 { // several small writes, held together
			io.WriteString(w, `{"k":"v"}`)
		}
	}), func(*http1.Server) {})
	rc := dialAddr(t, addr)
	const n = 20
	for i := range n {
		req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		if i%2 == 1 {
			req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
		}
		if r := rc.roundTrip("GET", req); r.ContentLength != 90 {
			t.Fatalf("answer %d: Content-Length %d", i, r.ContentLength)
		}
	}
	if w := cl.writes.Load(); w != n {
		t.Fatalf("%d writes for %d small answers, want one each", w, n)
	}
}

// The read deadline is set once for a burst of quick requests (re-armed
// only after an eighth of IdleTimeout), and no write deadline at all.
func TestLazyDeadlines(t *testing.T) {
	cl, addr := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		io.WriteString(w, "ok")
	}), func(s *http1.Server) {
		s.IdleTimeout = time.Hour
		s.ReadHeaderTimeout = time.Hour
		s.WatchAfter = time.Hour // no watch: its deadline changes are its own
	})
	rc := dialAddr(t, addr)
	const n = 30
	for i := range n {
		body := strings.Repeat("b", i)
		rc.roundTrip("POST", fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	}
	// Set at the first wait; the later ones, within an eighth of
	// IdleTimeout, keep it (1 here; 2 allowed), where net/http changes it
	// several times per request.
	t.Logf("%d read deadline changes, %d write", cl.readDeadlines.Load(), cl.writeDeadlines.Load())
	if d := cl.readDeadlines.Load(); d > 2 {
		t.Fatalf("%d read deadline changes for %d requests", d, n)
	}
	if d := cl.writeDeadlines.Load(); d != 0 {
		t.Fatalf("%d write deadline changes with no write deadline asked for", d)
	}
}
