package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSendWritesCall checks what Send puts on the wire: method, target,
// Host, the fields in order, Content-Length and the body; and that the
// connection is pooled and reused.
func TestSendWritesCall(t *testing.T) {
	type seen struct {
		line, host, body string
		header           http.Header
	}
	got := make(chan seen, 4)
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, body, ok := readReq(br)
			if !ok {
				return
			}
			got <- seen{req.Method + " " + req.RequestURI, req.Host, body, req.Header}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{ok}")
		}
	})
	tr := newTransport(t, Config{})
	addr := srv.ln.Addr().String()
	for i := range 2 {
		call := &Call{Method: http.MethodPost, Addr: addr, Target: "/v1/completions?x=1",
			Header: []Field{{"Content-Type", "application/json"}, {"X-Request-Id", fmt.Sprint("r", i)}},
			Body:   []byte(`{"prompt":"hi"}`)}
		resp, err := tr.Send(context.Background(), call)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if resp.Request != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("send %d: status %d header %v request %v", i, resp.StatusCode, resp.Header, resp.Request)
		}
		if b := readBody(t, resp); b != "{ok}" {
			t.Fatalf("send %d: body %q", i, b)
		}
		s := <-got
		if s.line != "POST /v1/completions?x=1" || s.host != addr || s.body != `{"prompt":"hi"}` ||
			s.header.Get("X-Request-Id") != fmt.Sprint("r", i) || s.header.Get("Content-Length") != "15" {
			t.Fatalf("send %d: server saw %+v", i, s)
		}
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for two sends, want 1 (pooled)", n)
	}
}

// TestSendRetriesStaleConnection: Send's body is bytes, so a request on a
// connection the worker had closed is always resent, once.
func TestSendRetriesStaleConnection(t *testing.T) {
	srv, requests, closed := closingEchoServer(t)
	tr := newTransport(t, Config{})
	for i := range 3 {
		resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: []byte(fmt.Sprint("req", i))})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if b := readBody(t, resp); b != fmt.Sprint("req", i) {
			t.Fatalf("send %d: %q", i, b)
		}
		<-closed
	}
	if n, r := srv.accepted.Load(), requests.Load(); n != 3 || r != 3 {
		t.Fatalf("%d connections, %d requests; want 3 and 3", n, r)
	}
}

// TestSendRefusesBadCalls: fields the transport writes itself, and a
// method, host, target or field that would break the request's framing,
// are refused before anything is sent.
func TestSendRefusesBadCalls(t *testing.T) {
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, _, ok := readReq(br); ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	tr := newTransport(t, Config{})
	addr := srv.ln.Addr().String()
	for name, c := range map[string]Call{
		"content-length field": {Method: "POST", Target: "/", Header: []Field{{"Content-Length", "1"}}},
		"connection field":     {Method: "POST", Target: "/", Header: []Field{{"Connection", "close"}}},
		"space in target":      {Method: "POST", Target: "/a b"},
		"newline in value":     {Method: "POST", Target: "/", Header: []Field{{"X-A", "1\r\nX-B: 2"}}},
		"bad field name":       {Method: "POST", Target: "/", Header: []Field{{"X A", "1"}}},
		"bad method":           {Method: "PO ST", Target: "/"},
		"bad host":             {Method: "POST", Target: "/", Host: "a\nb"},
	} {
		c.Addr = addr
		if _, err := tr.Send(context.Background(), &c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A good call after them still works (the refusals closed their
	// connections, nothing was left half-written on a pooled one).
	resp, err := tr.Send(context.Background(), &Call{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
}

// TestSendCancelled: a cancelled context ends Send with its cause, and a
// HEAD's answer has no body whatever its Content-Length says (net/http's
// reader is given the method when it reads).
func TestSendCancelledAndHead(t *testing.T) {
	got := make(chan struct{})
	srv := newRawServer(t, func(n int, c net.Conn, br *bufio.Reader) {
		req, _, ok := readReq(br)
		if !ok {
			return
		}
		if req.Method == http.MethodHead {
			// Two Content-Length fields: not the lean reader's, so
			// net/http's reads it.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
			return
		}
		close(got)
		waitClosed(c)
	})
	tr := newTransport(t, Config{})
	addr := srv.ln.Addr().String()
	resp, err := tr.Send(context.Background(), &Call{Method: http.MethodHead, Addr: addr, Target: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if b := readBody(t, resp); b != "" {
		t.Fatalf("HEAD body %q", b)
	}
	errStop := errors.New("client left")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-got; cancel(errStop) }()
	_, err = tr.Send(ctx, &Call{Method: "POST", Addr: addr, Target: "/", Body: []byte(strings.Repeat("x", 10))})
	if !errors.Is(err, errStop) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the cause and context.Canceled", err)
	}
}

// TestHeldBytesLargerThanTheSocket: a request whose held bytes (the last
// buffer's worth, wait.go) do not fit in the socket is sent whole: the
// socket takes part in the first step, the rest is written the usual way
// before the answer is read. The write buffer is larger than loopback's
// socket buffers so the first write must come up short.
func TestHeldBytesLargerThanTheSocket(t *testing.T) {
	const size = 24 << 20
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			_, body, ok := readReq(br)
			if !ok {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(fmt.Sprint(len(body))), len(body))
		}
	})
	tr := newTransport(t, Config{WriteBufferSize: 32 << 20})
	body := []byte(strings.Repeat("x", size))
	for i := range 2 {
		resp, err := tr.Send(context.Background(), &Call{Method: "POST", Addr: srv.ln.Addr().String(), Target: "/", Body: body})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if got := readBody(t, resp); got != fmt.Sprint(size) {
			t.Fatalf("send %d: the worker read %s bytes, want %d", i, got, size)
		}
	}
}

// TestEarlyAnswerToALargeRequest: a worker that answers a request before
// reading all of it (an early refusal) and keeps the connection open.
// Part of the request went out before its end (it is larger than the
// write buffer), so its last bytes are not held (wait.go): were they, the
// answer's readiness, seen while the body was still being read, would be
// reset when they are written, and the answer waited for forever. The
// body holds its last bytes back until the answer has arrived.
func TestEarlyAnswerToALargeRequest(t *testing.T) {
	answered, done := make(chan struct{}, 1), make(chan struct{})
	srv := newRawServer(t, func(_ int, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
		answered <- struct{}{}
		io.Copy(io.Discard, req.Body)
		<-done // the connection stays open: nothing else will wake the client
	})
	t.Cleanup(func() { close(done) })
	tr := newTransport(t, Config{WriteBufferSize: 512})
	body := &gatedReader{first: strings.Repeat("x", 1000), rest: strings.Repeat("y", 100), gate: answered}
	req, _ := http.NewRequest(http.MethodPost, srv.url(), body)
	req.ContentLength = 1100
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%v (the early answer was not seen)", err)
	}
	if b := readBody(t, resp); resp.StatusCode != 413 || b != "big" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
}

// gatedReader reads first, then waits for gate (and a moment for what
// gate announces to reach the other end's poller), then reads rest.
type gatedReader struct {
	first, rest string
	gate        chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.first != "" {
		n := copy(p, g.first)
		g.first = g.first[n:]
		return n, nil
	}
	if g.gate != nil {
		<-g.gate
		g.gate = nil
		time.Sleep(50 * time.Millisecond)
	}
	if g.rest == "" {
		return 0, io.EOF
	}
	n := copy(p, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}
