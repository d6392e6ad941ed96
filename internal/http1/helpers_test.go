package http1_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llmlab/llmlab/internal/http1"
	"github.com/llmlab/llmlab/internal/testsupport"
)

// TestMain checks that no test leaves a goroutine behind: the server starts
// one per connection and one per watch, and all must end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is how long a test waits for something that should take
// milliseconds: generous, because the machine is shared and loaded.
const wait = 10 * time.Second

// testServer is a real http1.Server on a loopback listener.
type testServer struct {
	t        *testing.T
	srv      *http1.Server
	addr     string
	served   chan error  // Serve's result
	checked  atomic.Bool // a test read served itself
	logs     *testsupport.SyncBuffer
	handlers atomic.Int64 // handler calls in flight
}

// start serves h on 127.0.0.1:0; opts adjust the server before it starts.
// The cleanup closes the server, checks Serve returned ErrServerClosed and
// waits for every handler call to end (so goleak sees none left).
func start(t *testing.T, h http.Handler, opts ...func(*http1.Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, addr: ln.Addr().String(), served: make(chan error, 1), logs: &testsupport.SyncBuffer{}}
	ts.srv = &http1.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ts.handlers.Add(1)
			defer ts.handlers.Add(-1)
			h.ServeHTTP(w, r)
		}),
		ErrorLog: log.New(ts.logs, "", 0),
	}
	for _, o := range opts {
		o(ts.srv)
	}
	go func() { ts.served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = ts.srv.Close()
		if !ts.checked.Load() {
			select {
			case err := <-ts.served:
				if !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
				}
			case <-time.After(wait):
				t.Errorf("Serve did not return within %v of Close", wait)
			}
		}
		for end := time.Now().Add(wait); ts.handlers.Load() > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Errorf("handlers still running %v after Close", wait)
				break
			}
		}
	})
	return ts
}

// serveReturned waits for Serve to return and checks it said
// ErrServerClosed.
func (ts *testServer) serveReturned(t *testing.T) {
	t.Helper()
	ts.checked.Store(true)
	select {
	case err := <-ts.served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
		}
	case <-time.After(wait):
		t.Fatalf("Serve did not return within %v", wait)
	}
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// client returns a net/http client whose connections end with the test.
func (ts *testServer) client() *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// rawConn is a hand-driven client connection.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *rawConn {
	t.Helper()
	return dialAddr(t, ts.addr)
}

func dialAddr(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// response is a response read off a raw connection, body included.
type response struct {
	*http.Response
	body string
}

// read reads one response to a request with method (HEAD has no body).
func (rc *rawConn) read(method string) response {
	rc.t.Helper()
	r, err := rc.tryRead(method)
	if err != nil {
		rc.t.Fatalf("reading the response: %v", err)
	}
	return r
}

func (rc *rawConn) tryRead(method string) (response, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		return response{}, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return response{Response: resp, body: string(b)}, fmt.Errorf("body: %w", err)
	}
	return response{Response: resp, body: string(b)}, nil
}

// roundTrip sends a request and reads its response.
func (rc *rawConn) roundTrip(method, req string) response {
	rc.t.Helper()
	rc.send(req)
	return rc.read(method)
}

// expectClosed checks the server closes the connection: the next read ends
// (EOF or reset) within wait, with no further bytes.
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(rc.br)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		rc.t.Fatalf("connection still open %v later (want it closed by the server)", wait)
	case len(b) > 0:
		rc.t.Fatalf("unexpected bytes before the connection closed: %q", b)
	}
}

// expectOpen checks that the connection still carries a request.
func (rc *rawConn) expectOpen() {
	rc.t.Helper()
	r := rc.roundTrip("GET", "GET /still-open HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != http.StatusOK {
		rc.t.Fatalf("follow-up request: status %d, want 200", r.StatusCode)
	}
}

// get checks that the server still answers a fresh client.
func (ts *testServer) stillServes(t *testing.T) {
	t.Helper()
	rc := ts.dial(t)
	r := rc.roundTrip("GET", "GET /alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("a fresh client got status %d, want 200", r.StatusCode)
	}
	_ = rc.c.Close()
}

// signal is a one-shot event a handler and a test wait on.
type signal chan struct{}

// hold is a slow handler's body: it marks entered and blocks until the
// test closes release (or wait passes).
func hold(entered signal, release <-chan struct{}) {
	entered.fire()
	select {
	case <-release:
	case <-time.After(wait):
	}
}

func newSignal() signal { return make(signal) }

func (s signal) fire() {
	select {
	case <-s:
	default:
		close(s)
	}
}

func (s signal) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-s:
	case <-time.After(wait):
		t.Fatalf("%s did not happen within %v", what, wait)
	}
}

// waitCtx waits for a handler's context to end, for at most wait.
func waitCtx(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(wait):
		return false
	}
}

// echo answers with the request's method, path, host and body.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %s %s %q", r.Method, r.URL.RequestURI(), r.Host, b)
}

func hasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), tok) {
				return true
			}
		}
	}
	return false
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
