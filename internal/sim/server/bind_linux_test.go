package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunBusyPortFailsAtOnce: like vLLM, which binds its socket before it
// loads the model, a port in use fails Run at once with Python's wording,
// not after the modelled start-up.
func TestRunBusyPortFailsAtOnce(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig()
	cfg.Host, cfg.Port, cfg.StartupSeconds = "127.0.0.1", busy.Addr().(*net.TCPAddr).Port, 5
	var stderr bytes.Buffer
	cfg.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	err = Run(ctx, cfg)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Run took %v to report the busy port (start-up is 5 s)", took)
	}
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "[Errno 98] Address already in use") {
		t.Fatalf("Run: %v, want EADDRINUSE worded as vLLM", err)
	}
	if got := stderr.String(); !strings.Contains(got, "OSError: [Errno 98] Address already in use") {
		t.Fatalf("stderr %q lacks vLLM's OSError line", got)
	}
}

// TestBoundSocketRefusesUntilListen: the bound, not yet listening socket
// holds the port (a second bind fails) and refuses connections; after
// listen it accepts them.
func TestBoundSocketRefusesUntilListen(t *testing.T) {
	for _, host := range []string{"127.0.0.1", ""} {
		port := freePort(t)
		b, err := bindPort(host, port)
		if err != nil {
			t.Fatalf("%q: bind: %v", host, err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			b.close()
			t.Fatalf("%q: bound socket accepted a connection", host)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			b.close()
			t.Fatalf("%q: dial: %v, want connection refused", host, err)
		}
		ln, err := b.listen()
		if err != nil {
			t.Fatalf("%q: listen: %v", host, err)
		}
		if got := ln.Addr().(*net.TCPAddr).Port; got != port {
			t.Errorf("%q: listening on port %d, want %d", host, got, port)
		}
		if _, err := net.Listen("tcp", addr); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%q: second listen: %v, want EADDRINUSE", host, err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("%q: dial after listen: %v", host, err)
		}
		c.Close()
		ln.Close()
	}
}
