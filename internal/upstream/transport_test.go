package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rawServer is a loopback server that hands each accepted connection to
// serve, for answers net/http's server would not give.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newRawServer(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepted.Add(1))
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

// readReq reads one request and its body; false when the client went away.
func readReq(br *bufio.Reader) (*http.Request, string, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, "", false
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, "", false
	}
	return req, string(b), true
}

// waitClosed reads c until the client closes it (or 5 s pass) and reports
// whether it did.
func waitClosed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err == nil || errors.Is(err, syscall.ECONNRESET)
}

func newTransport(t *testing.T, cfg Config) *Transport {
	tr := New(cfg)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func post(t *testing.T, ctx context.Context, tr http.RoundTripper, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return tr.RoundTrip(req)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countingServer is an httptest server that counts new connections.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestRequestWrittenAndBodies(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			fmt.Fprintf(w, "%s %s host=%s ct=%s auth=%s cl=%d te=%v body=%s",
				r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("Content-Type"),
				r.Header.Get("Authorization"), r.ContentLength, r.TransferEncoding, b)
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush() // no Content-Length: chunked
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	})
	tr := newTransport(t, Config{})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/echo?x=1", bytes.NewReader([]byte(`{"a":1}`)))
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Authorization"] = []string{"Bearer k"}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	want := `POST /echo?x=1 host=` + host + ` ct=application/json auth=Bearer k cl=7 te=[] body={"a":1}`
	if got := readBody(t, resp); got != want || resp.StatusCode != 200 || resp.ContentLength != int64(len(want)) {
		t.Fatalf("got %d %q (length %d), want %q", resp.StatusCode, got, resp.ContentLength, want)
	}

	resp, err = post(t, context.Background(), tr, srv.URL+"/chunked", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != "part0;part1;part2;" || resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("chunked: %q length %d te %v", got, resp.ContentLength, resp.TransferEncoding)
	}

	greq, _ := http.NewRequest(http.MethodGet, srv.URL+"/empty", nil)
	resp, err = tr.RoundTrip(greq)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNoContent || readBody(t, resp) != "" {
		t.Fatalf("204: %d", resp.StatusCode)
	}
	// All three went over one kept-alive connection.
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for three sequential requests, want 1", n)
	}
	if n := tr.IdleConns(host); n != 1 {
		t.Fatalf("%d idle connections, want 1", n)
	}
}

func TestCloseDelimitedBody(t *testing.T) {
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
	})
	tr := newTransport(t, Config{})
	for i := range 2 {
		resp, err := post(t, context.Background(), tr, srv.url(), "x")
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp); got != "until the end" || !resp.Close {
			t.Fatalf("got %q close=%v", got, resp.Close)
		}
		if n := srv.accepted.Load(); n != int32(i+1) {
			t.Fatalf("request %d: %d connections: a close-delimited body's connection must not be reused", i, n)
		}
	}
}

func TestInterimResponsesSkipped(t *testing.T) {
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		if n == 1 {
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			waitClosed(c)
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		waitClosed(c)
	})
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
	tr.CloseIdleConnections()
	if _, err := post(t, context.Background(), tr, srv.url(), "x"); err == nil || !strings.Contains(err.Error(), "101") {
		t.Fatalf("101 answer: err %v, want an error", err)
	}
}

// A worker closing an idle connection (uvicorn's keep-alive timeout) costs
// one transparent retry on a new connection.
// closingEchoServer answers each connection's first request with its body
// and then closes the connection, as if its keep-alive timeout passed;
// closed gets a value after each close.
func closingEchoServer(t *testing.T) (srv *rawServer, requests *atomic.Int32, closed chan struct{}) {
	closed, requests = make(chan struct{}, 4), new(atomic.Int32)
	srv = newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		_, body, ok := readReq(br)
		if !ok {
			return
		}
		requests.Add(1)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		c.Close()
		closed <- struct{}{}
	})
	return srv, requests, closed
}

func TestStaleIdleConnectionRetriedOnce(t *testing.T) {
	srv, requests, closed := closingEchoServer(t)
	tr := newTransport(t, Config{})
	for i := range 3 {
		resp, err := post(t, context.Background(), tr, srv.url(), fmt.Sprint("req", i))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readBody(t, resp); got != fmt.Sprint("req", i) {
			t.Fatalf("request %d: %q", i, got)
		}
		<-closed // the pooled connection is now dead
	}
	if n, r := srv.accepted.Load(), requests.Load(); n != 3 || r != 3 {
		t.Fatalf("%d connections, %d requests served; want 3 and 3 (each stale connection retried once)", n, r)
	}
}

// A worker that reads a request and closes without answering: on a fresh
// connection that is the answer (an error, no retry); on a reused one the
// request is retried once, on a fresh connection, and no more.
func TestClosedWithoutAnswer(t *testing.T) {
	var requests atomic.Int32
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			_, _, ok := readReq(br)
			if !ok {
				return
			}
			if requests.Add(1) == 1 && n == 1 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			return // read it, answer nothing, close
		}
	})
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "first")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	_, err = post(t, context.Background(), tr, srv.url(), "second")
	if err == nil || !strings.Contains(err.Error(), "upstream: read response") || !errors.Is(err, io.EOF) {
		t.Fatalf("reused then fresh connection closed unanswered: err %v", err)
	}
	if n, r := srv.accepted.Load(), requests.Load(); n != 2 || r != 3 {
		t.Fatalf("%d connections, %d requests; want 2 and 3 (one retry only)", n, r)
	}
	_, err = post(t, context.Background(), tr, srv.url(), "third")
	if err == nil {
		t.Fatal("fresh connection closed unanswered: no error")
	}
	if n, r := srv.accepted.Load(), requests.Load(); n != 3 || r != 4 {
		t.Fatalf("%d connections, %d requests; want 3 and 4 (no retry on a fresh connection)", n, r)
	}
}

func TestNoRetryAfterResponseBytes(t *testing.T) {
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n") // the answer breaks off
	})
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if _, err := post(t, context.Background(), tr, srv.url(), "x"); err == nil {
		t.Fatal("broken status line: no error")
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections: retried after response bytes arrived", n)
	}
}

func TestDialErrorAndUnsupported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: refused, as for a worker that just died
	tr := newTransport(t, Config{})
	_, err = post(t, context.Background(), tr, "http://"+addr, "x")
	if err == nil || !strings.HasPrefix(err.Error(), "upstream: dial "+addr) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refused: %v", err)
	}
	if _, err := post(t, context.Background(), tr, "https://"+addr, "x"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("https without fallback: %v", err)
	}

	var fell atomic.Int32
	fb := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		fell.Add(1)
		if r.Body != nil {
			r.Body.Close()
		}
		return &http.Response{StatusCode: 299, Body: http.NoBody, Request: r}, nil
	})
	tr = newTransport(t, Config{Fallback: fb})
	unknown, _ := http.NewRequest(http.MethodPost, "http://"+addr, io.NopCloser(strings.NewReader("x")))
	for _, req := range []*http.Request{
		func() *http.Request { r, _ := http.NewRequest(http.MethodGet, "https://"+addr, nil); return r }(),
		unknown, // body of unknown length
	} {
		resp, err := tr.RoundTrip(req)
		if err != nil || resp.StatusCode != 299 {
			t.Fatalf("%s %s not delegated: %v", req.Method, req.URL, err)
		}
	}
	if fell.Load() != 2 {
		t.Fatalf("fallback ran %d times, want 2", fell.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCancelWhileWaitingForHeaders(t *testing.T) {
	got, gone := make(chan struct{}), make(chan bool, 1)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		close(got)
		gone <- waitClosed(c)
	})
	tr := newTransport(t, Config{})
	errStop := errors.New("client left")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-got; cancel(errStop) }()
	start := time.Now()
	_, err := post(t, ctx, tr, srv.url(), "x")
	if !errors.Is(err, errStop) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the cause and context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if !<-gone {
		t.Fatal("the server did not see the disconnect")
	}
	if tr.IdleConns(srv.ln.Addr().String()) != 0 {
		t.Fatal("cancelled connection pooled")
	}
}

// streamServer sends headers and a first chunk, then waits for the client
// to close the connection and reports whether it did.
func streamServer(t *testing.T) (*rawServer, chan bool) {
	gone := make(chan bool, 1)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n")
		gone <- waitClosed(c)
	})
	return srv, gone
}

func TestCancelMidBody(t *testing.T) {
	srv, gone := streamServer(t)
	tr := newTransport(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := post(t, ctx, tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data:1" {
		t.Fatalf("first chunk %q %v", buf, err)
	}
	done := make(chan error, 1)
	go func() { _, err := resp.Body.Read(buf); done <- err }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read not aborted by cancel")
	}
	resp.Body.Close()
	resp.Body.Close() // twice is fine
	if !<-gone {
		t.Fatal("the server did not see the disconnect")
	}
}

func TestEarlyCloseClosesConnection(t *testing.T) {
	srv, gone := streamServer(t)
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if !<-gone {
		t.Fatal("the server did not see the disconnect after Close")
	}
	if _, err := resp.Body.Read(buf); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if tr.IdleConns(srv.ln.Addr().String()) != 0 {
		t.Fatal("abandoned connection pooled")
	}
}

// Close from another goroutine unblocks a Read in progress.
func TestCloseDuringRead(t *testing.T) {
	srv, gone := streamServer(t)
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	time.Sleep(10 * time.Millisecond) // let the read block (not needed for correctness)
	resp.Body.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read of a closed body ended without error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock the read")
	}
	if !<-gone {
		t.Fatal("the server did not see the disconnect")
	}
}

func TestIdleTimeoutAndCloseIdle(t *testing.T) {
	gone := make(chan bool, 4)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		gone <- waitClosed(c)
	})
	host := srv.ln.Addr().String()
	tr := newTransport(t, Config{IdleTimeout: 20 * time.Millisecond})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if !<-gone {
		t.Fatal("idle connection not closed after IdleTimeout")
	}
	if n := tr.IdleConns(host); n != 0 {
		t.Fatalf("%d idle after the timeout", n)
	}

	tr = newTransport(t, Config{})
	resp, err = post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if n := tr.IdleConns(host); n != 1 {
		t.Fatalf("%d idle, want 1", n)
	}
	tr.CloseIdleConnections()
	if !<-gone || tr.IdleConns(host) != 0 {
		t.Fatal("CloseIdleConnections left the connection open")
	}
}

func TestMaxIdlePerHost(t *testing.T) {
	const n = 5
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
		io.WriteString(w, "ok")
	})
	tr := newTransport(t, Config{MaxIdlePerHost: 2})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	arrived.Wait() // n connections in use at once
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := tr.IdleConns(strings.TrimPrefix(srv.URL, "http://")); got != 2 {
		t.Fatalf("%d idle, want MaxIdlePerHost 2", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/stream" {
			for _, c := range b {
				fmt.Fprintf(w, "%c", c)
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Write(b)
	})
	tr := newTransport(t, Config{MaxIdlePerHost: 4})
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("g%d-i%d", g, i)
				path := "/plain"
				if i%2 == 0 {
					path = "/stream"
				}
				req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				if i%7 == 3 { // abandon some answers half-read
					resp.Body.Read(make([]byte, 1))
					resp.Body.Close()
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != body {
					errs <- fmt.Errorf("got %q %v, want %q", b, err, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := tr.IdleConns(strings.TrimPrefix(srv.URL, "http://")); got > 4 {
		t.Fatalf("%d idle > MaxIdlePerHost", got)
	}
	t.Logf("%d requests over %d connections", workers*each, conns.Load())
}

func TestRequestCloseNotPooled(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "close=%v", r.Close)
	})
	tr := newTransport(t, Config{})
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Close = true
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp); got != "close=true" {
			t.Fatalf("server saw %q", got)
		}
		if n := conns.Load(); n != int32(i+1) {
			t.Fatalf("request %d: %d connections; a Connection: close request's connection was reused", i, n)
		}
	}
}

// A body that cannot be had again (no GetBody) is not resent.
func TestNoRetryWithoutGetBody(t *testing.T) {
	closed := make(chan struct{}, 2)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close()
		closed <- struct{}{}
	})
	tr := newTransport(t, Config{})
	resp, err := post(t, context.Background(), tr, srv.url(), "x")
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	<-closed
	req, _ := http.NewRequest(http.MethodPost, srv.url(), strings.NewReader("y"))
	req.GetBody = nil
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("stale connection without GetBody: no error")
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections: a spent body was resent", n)
	}
}

// A body longer than the write buffer is written whole, and an answer
// longer than the read buffer read whole.
func TestLargeBodies(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(bytes.Repeat(b, 2))
	})
	tr := newTransport(t, Config{WriteBufferSize: 512, ReadBufferSize: 512})
	big := strings.Repeat("0123456789", 10_000)
	for range 2 {
		resp, err := post(t, context.Background(), tr, srv.URL, big)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp); got != big+big {
			t.Fatalf("echo of %d bytes came back as %d", len(big), len(got))
		}
	}
}

type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// A request whose context has ended is not sent, and RoundTrip closes the
// request body on every path.
func TestCancelledBeforeAndBodyClosed(t *testing.T) {
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := newTransport(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := &closeCounter{Reader: strings.NewReader("x")}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.url(), b)
	req.ContentLength = 1
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	if srv.accepted.Load() != 0 || b.closed.Load() != 1 {
		t.Fatalf("cancelled request: %d connections, body closed %d times", srv.accepted.Load(), b.closed.Load())
	}
	b = &closeCounter{Reader: strings.NewReader("x")}
	req, _ = http.NewRequest(http.MethodPost, srv.url(), b)
	req.ContentLength = 1
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if b.closed.Load() != 1 {
		t.Fatalf("sent request: body closed %d times", b.closed.Load())
	}
}
