package http1_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
)

// The benchmarks serve one handler with http1 and with net/http's server
// over loopback keep-alive connections; the client side is the same
// allocation-free loop for both, so the difference in ns/op and allocs/op
// is the servers'; BenchmarkServeCanned is the floor without a server.
// Run:
//
//	go test -run '^$' -bench 'Serve' -benchmem ./internal/http1/
//
// Nothing asserts speed: the figures are for docs/results.md.

var benchAnswer = []byte(`{"object":"list","data":[]}`)

func benchHandler(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(benchAnswer)
}

var benchRequests = []struct{ name, req string }{
	{"GET", "GET /v1/models HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n"},
	{"POST1KB", fmt.Sprintf("POST /v1/completions HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1024\r\n\r\n%s", strings.Repeat("x", 1024))},
}

func BenchmarkServeHTTP1(b *testing.B) {
	benchServers(b, func(ln net.Listener) func() {
		srv := &http1.Server{Handler: http.HandlerFunc(benchHandler)}
		done := make(chan struct{})
		go func() { _ = srv.Serve(ln); close(done) }()
		return func() { _ = srv.Close(); <-done }
	})
}

func BenchmarkServeNetHTTP(b *testing.B) {
	benchServers(b, func(ln net.Listener) func() {
		srv := &http.Server{Handler: http.HandlerFunc(benchHandler)}
		done := make(chan struct{})
		go func() { _ = srv.Serve(ln); close(done) }()
		return func() { _ = srv.Close(); <-done }
	})
}

// BenchmarkServeCanned is the floor: a loop that reads each request's
// head and body and writes a fixed answer, no HTTP server at all, so that
// what the two servers add over loopback and the client can be read off.
func BenchmarkServeCanned(b *testing.B) {
	benchServers(b, func(ln net.Listener) func() {
		answer := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			len(benchAnswer), benchAnswer))
		var conns sync.WaitGroup
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					defer c.Close()
					cannedServe(c, answer)
				}()
			}
		}()
		return func() { _ = ln.Close(); <-done; conns.Wait() }
	})
}

func cannedServe(c net.Conn, answer []byte) {
	br := bufio.NewReader(c)
	for {
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

func benchServers(b *testing.B, serve func(net.Listener) (stop func())) {
	for _, br := range benchRequests {
		b.Run(br.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			stop := serve(ln)
			defer stop()
			c := benchDial(b, ln.Addr().String())
			defer c.close()
			req := []byte(br.req)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := c.roundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(br.name+"/parallel", func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			stop := serve(ln)
			defer stop()
			req := []byte(br.req)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := benchDial(b, ln.Addr().String())
				defer c.close()
				for pb.Next() {
					if err := c.roundTrip(req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchConn is a keep-alive client that reads answers without allocating.
type benchConn struct {
	c  net.Conn
	br *bufio.Reader
}

func benchDial(b *testing.B, addr string) *benchConn {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		b.Fatal(err)
	}
	return &benchConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}
}

func (c *benchConn) close() { _ = c.c.Close() }

var errBench = errors.New("bench: unexpected answer")

// roundTrip sends req and reads a 200 answer framed by Content-Length.
func (c *benchConn) roundTrip(req []byte) error {
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("%w: %q", errBench, line)
	}
	n := -1
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return err
			}
		}
	}
	if n != len(benchAnswer) {
		return fmt.Errorf("%w: Content-Length %d", errBench, n)
	}
	_, err = c.br.Discard(n)
	return err
}

// TestBenchClient checks the benchmark's client against both servers, so
// the benchmark measures answers that are right.
func TestBenchClient(t *testing.T) {
	for name, serve := range map[string]func(net.Listener) http.Handler{
		"http1": func(ln net.Listener) http.Handler {
			srv := &http1.Server{Handler: http.HandlerFunc(benchHandler)}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return nil
		},
		"net/http": func(ln net.Listener) http.Handler {
			srv := &http.Server{Handler: http.HandlerFunc(benchHandler), ReadHeaderTimeout: wait}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			ln := newListener(t)
			serve(ln)
			c, err := net.DialTimeout("tcp", ln.Addr().String(), wait)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(wait))
			bc := &benchConn{c: c, br: bufio.NewReader(c)}
			for range 3 {
				for _, br := range benchRequests {
					if err := bc.roundTrip([]byte(br.req)); err != nil {
						t.Fatalf("%s: %v", br.name, err)
					}
				}
			}
		})
	}
}
