package http1_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
	"github.com/llmlab/llmlab/internal/testsupport"
)

func TestInformational(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	}))
	rc := ts.dial(t)
	r := rc.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != http.StatusEarlyHints || r.Header.Get("Link") == "" {
		t.Fatalf("first answer %d %v, want 103 with Link", r.StatusCode, r.Header)
	}
	r = rc.read("GET")
	if r.StatusCode != 200 || r.body != "final" || r.Header.Get("Link") != "" {
		t.Fatalf("final answer %d %q %v", r.StatusCode, r.body, r.Header)
	}
	// No 1xx to an HTTP/1.0 client, which would not expect one.
	rc = ts.dial(t)
	r = rc.roundTrip("GET", "GET / HTTP/1.0\r\n\r\n")
	if r.StatusCode != 200 || r.body != "final" {
		t.Fatalf("HTTP/1.0: %d %q, want the final answer only", r.StatusCode, r.body)
	}
}

// A handler's header values cannot add fields or break the head.
func TestResponseHeaderInjection(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Evil", "a\r\nSet-Cookie: stolen=1")
		w.Header()["Bad Name"] = []string{"v"}
		w.Header()["X-Lf"] = []string{"b\nX-Injected: 1"}
		io.WriteString(w, "body")
	}))
	rc := ts.dial(t)
	r := rc.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.Header.Get("Set-Cookie") != "" || r.Header.Get("X-Injected") != "" {
		t.Fatalf("a header value injected fields: %v", r.Header)
	}
	if got := r.Header.Get("X-Evil"); !strings.HasPrefix(got, "a") || strings.ContainsAny(got, "\r\n") {
		t.Fatalf("X-Evil %q", got)
	}
	if r.body != "body" {
		t.Fatalf("body %q", r.body)
	}
	rc.expectOpen()
}

// WatchAfter passing while the body is still arriving defers the watch
// until the body is read; a client leaving then still cancels.
func TestClientGoneAfterSlowBody(t *testing.T) {
	entered := newSignal()
	causes := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || string(b) != "abcdef" {
			causes <- fmt.Errorf("body %q: %v", b, err)
			return
		}
		entered.fire()
		if !waitCtx(r.Context()) {
			causes <- errors.New("context not cancelled")
			return
		}
		causes <- context.Cause(r.Context())
	}))
	rc := ts.dial(t)
	rc.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
	time.Sleep(50 * time.Millisecond) // past WatchAfter with the body unread
	rc.send("def")
	entered.wait(t, "the handler reading its body")
	rc.c.Close()
	select {
	case cause := <-causes:
		if !errors.Is(cause, http1.ErrClientGone) {
			t.Fatalf("cause %v, want ErrClientGone", cause)
		}
	case <-time.After(2 * wait):
		t.Fatal("handler never returned")
	}
}

// Many net/http clients at once, with bodies of every framing size class,
// all get their own answers back.
func TestConcurrentNetHTTPClients(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("X-Len", fmt.Sprint(len(b)))
		w.Write(b) // echoed: small answers held, large ones chunked
	}))
	cl := ts.client()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range each {
				n := []int{0, 1, 100, 8192, 8193, 70000}[rng.IntN(6)]
				body := bytes.Repeat([]byte{byte('a' + g)}, n)
				resp, err := cl.Post(ts.url(fmt.Sprintf("/%d/%d", g, i)), "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, body) || resp.Header.Get("X-Len") != fmt.Sprint(n) {
					errs <- fmt.Errorf("worker %d request %d: %d bytes back of %d, %v", g, i, len(got), n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStatusCodes(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/599":
			w.WriteHeader(599)
		case "/invalid":
			w.WriteHeader(42) // panics, as net/http's does
		case "/twice":
			w.WriteHeader(201)
			w.WriteHeader(500) // ignored
		}
		io.WriteString(w, "x")
	}))
	rc := ts.dial(t)
	rc.send("GET /599 HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	line, _ := rc.br.Peek(len("HTTP/1.1 599 status code 599\r\n"))
	if string(line) != "HTTP/1.1 599 status code 599\r\n" {
		t.Fatalf("status line %q", line)
	}
	if r := rc.read("GET"); r.StatusCode != 599 || r.body != "x" {
		t.Fatalf("%d %q", r.StatusCode, r.body)
	}
	if r := rc.roundTrip("GET", "GET /twice HTTP/1.1\r\nHost: x\r\n\r\n"); r.StatusCode != 201 {
		t.Fatalf("second WriteHeader not ignored: %d", r.StatusCode)
	}
	rc.send("GET /invalid HTTP/1.1\r\nHost: x\r\n\r\n")
	rc.expectClosed()
	if !strings.Contains(ts.logs.String(), "invalid WriteHeader code 42") {
		t.Fatalf("log %q", ts.logs.String())
	}
}

// flakyListener fails its first Accept calls with a temporary error, then
// with a permanent one once told to.
type flakyListener struct {
	net.Listener
	mu        sync.Mutex
	temporary int
	permanent error
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "accept timed out" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.temporary > 0 {
		l.temporary--
		l.mu.Unlock()
		return nil, timeoutErr{}
	}
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.permanent != nil {
		if c != nil {
			c.Close()
		}
		return nil, l.permanent
	}
	return c, err
}

func TestAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, temporary: 3}
	logs := &testsupport.SyncBuffer{}
	srv := &http1.Server{Handler: http.HandlerFunc(okHandler), ErrorLog: log.New(logs, "", 0)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(fl) }()
	defer srv.Close()
	// Temporary errors pass: the server still accepts.
	rc := dialAddr(t, ln.Addr().String())
	if r := rc.roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.body != "ok" {
		t.Fatalf("%q", r.body)
	}
	if n := strings.Count(logs.String(), "accept timed out"); n != 3 {
		t.Fatalf("%d temporary accept errors logged, want 3: %q", n, logs.String())
	}
	// A permanent one ends Serve with it.
	boom := errors.New("listener broken")
	fl.mu.Lock()
	fl.permanent = boom
	fl.mu.Unlock()
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		defer c.Close()
	}
	select {
	case err := <-served:
		if !errors.Is(err, boom) {
			t.Fatalf("Serve returned %v, want the listener's error", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return on a permanent accept error")
	}
	ln.Close()
}
