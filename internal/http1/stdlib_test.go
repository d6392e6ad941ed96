package http1_test

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The server serves the standard library's own handlers as net/http does.

func TestServeMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "item %s", r.PathValue("id"))
	})
	mux.HandleFunc("/dir/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dir") })
	mux.HandleFunc("example.test/host-only", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host") })
	ts := start(t, mux)
	rc := ts.dial(t)
	for _, tc := range []struct {
		req    string
		status int
		body   string
		loc    string
	}{
		{"GET /items/42 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "item 42", ""},
		{"POST /items/42 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "", ""},
		{"GET /dir HTTP/1.1\r\nHost: x\r\n\r\n", 3, "", "/dir/"}, // 3: a redirect (301 or 307 by Go version)
		{"GET /a/../dir/ HTTP/1.1\r\nHost: x\r\n\r\n", 3, "", "/dir/"},
		{"GET /host-only HTTP/1.1\r\nHost: example.test\r\n\r\n", 200, "host", ""},
		{"GET /host-only HTTP/1.1\r\nHost: other.test\r\n\r\n", 404, "", ""},
	} {
		r := rc.roundTrip("GET", tc.req)
		status := r.StatusCode
		if tc.status == 3 && (status == 301 || status == 307) {
			status = 3
		}
		if status != tc.status || tc.body != "" && r.body != tc.body || tc.loc != "" && r.Header.Get("Location") != tc.loc {
			t.Fatalf("%q: %d %q Location %q, want %d %q %q", tc.req, r.StatusCode, r.body, r.Header.Get("Location"), tc.status, tc.body, tc.loc)
		}
	}
}

func TestFileServer(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("0123456789", 3000) // 30 KB: past the hold buffer
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := start(t, http.FileServer(http.Dir(dir)))
	rc := ts.dial(t)
	r := rc.roundTrip("GET", "GET /f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != 200 || r.body != content || r.ContentLength != int64(len(content)) || len(r.TransferEncoding) > 0 {
		t.Fatalf("GET: %d, %d bytes, CL %d, TE %v", r.StatusCode, len(r.body), r.ContentLength, r.TransferEncoding)
	}
	if r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	lastMod := r.Header.Get("Last-Modified")
	r = rc.roundTrip("HEAD", "HEAD /f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != 200 || r.ContentLength != int64(len(content)) {
		t.Fatalf("HEAD: %d CL %d", r.StatusCode, r.ContentLength)
	}
	r = rc.roundTrip("GET", "GET /f.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n")
	if r.StatusCode != 206 || r.body != "0123456789" || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(content)) {
		t.Fatalf("Range: %d %q %q", r.StatusCode, r.body, r.Header.Get("Content-Range"))
	}
	r = rc.roundTrip("GET", "GET /f.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: "+lastMod+"\r\n\r\n")
	if r.StatusCode != 304 || r.body != "" {
		t.Fatalf("If-Modified-Since: %d %q", r.StatusCode, r.body)
	}
	r = rc.roundTrip("GET", "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != 404 {
		t.Fatalf("missing file: %d", r.StatusCode)
	}
}

// TestReverseProxyStreaming is the gateway's path: a ReverseProxy served by
// http1 in front of a streaming backend. Events arrive one by one through
// it, and a client that leaves cancels the backend's request (through
// ErrClientGone on the proxy's request context).
func TestReverseProxyStreaming(t *testing.T) {
	next := make(chan struct{})
	backendGone := newSignal()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				backendGone.fire()
				return
			case <-time.After(wait):
				return
			}
		}
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	proxy.Transport = tr
	ts := start(t, proxy)

	rc := ts.dial(t)
	rc.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{} // the backend sends the next only now
	}
	rc.c.Close()
	backendGone.wait(t, "the backend's request being cancelled after the client left")
}

// BUG #10 (SUGGESTED_FIXES.md): a backend that dies mid-stream must reach the
// client as a broken answer, not a complete one. ReverseProxy aborts with
// panic(http.ErrAbortHandler) only when the request's context carries
// http.ServerContextKey ("we seem to be running under an HTTP server");
// http1 does not set it, so the proxy returns normally and the server ends
// the chunked body cleanly: the client takes a truncated stream for a
// whole one. net/http's server is the control.
func TestReverseProxyBackendDiesMidStream(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 0\n\n")
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close() // mid-body: the chunked answer never ends
		}
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = tr
	proxy.ErrorLog = log.New(io.Discard, "", 0)

	fronts := map[string]func(t *testing.T) string{
		"net/http (control)": func(t *testing.T) string {
			front := httptest.NewUnstartedServer(proxy)
			front.Config.ErrorLog = log.New(io.Discard, "", 0)
			front.Start()
			t.Cleanup(front.Close)
			return front.Listener.Addr().String()
		},
		"http1": func(t *testing.T) string { return start(t, proxy).addr },
	}
	for _, name := range []string{"net/http (control)", "http1"} {
		t.Run(name, func(t *testing.T) {
			rc := dialAddr(t, fronts[name](t))
			rc.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			r, err := rc.tryRead("GET")
			if r.Response == nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.HasPrefix(r.body, "data: 0") {
				t.Fatalf("body %q", r.body)
			}
			if err == nil {
				t.Fatalf("BUG: a stream cut by the backend arrived as a complete answer (%q)", r.body)
			}
		})
	}
}

// The context keys net/http's server sets, which handlers and
// ReverseProxy read. Part of BUG #10.
func TestServerContextKeys(t *testing.T) {
	type keys struct{ srv, local any }
	got := make(chan keys, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- keys{r.Context().Value(http.ServerContextKey), r.Context().Value(http.LocalAddrContextKey)}
	}))
	ts.dial(t).roundTrip("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	k := <-got
	if a, ok := k.local.(net.Addr); !ok || a.String() != ts.addr {
		t.Errorf("BUG: LocalAddrContextKey %v, want %s", k.local, ts.addr)
	}
	if k.srv == nil {
		t.Errorf("BUG: no ServerContextKey value (ReverseProxy then never aborts a broken answer)")
	}
}
