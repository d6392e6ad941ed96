package http1_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
)

func okHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/echo-header" {
		io.WriteString(w, r.Header.Get("X-Long"))
		return
	}
	io.WriteString(w, "ok")
}

// TestHostileRequests sends each malformed request on its own connection
// and checks the exact status, that the server closes that connection, and
// that it still answers another client.
func TestHostileRequests(t *testing.T) {
	reached := make(chan string, 100)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/alive" {
			reached <- r.Method + " " + r.RequestURI
		}
		okHandler(w, r)
	}), func(s *http1.Server) { s.MaxHeaderBytes = 4096 })
	const h = "Host: x\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"no target nor version", "GET\r\n" + h + "\r\n", 400},
		{"no version", "GET /\r\n" + h + "\r\n", 400},
		{"too many spaces", "GET / x HTTP/1.1\r\n" + h + "\r\n", 400},
		{"trailing space", "GET / HTTP/1.1 \r\n" + h + "\r\n", 400},
		{"empty target", "GET  HTTP/1.1\r\n" + h + "\r\n", 400},
		{"control byte in target", "GET /a\x01b HTTP/1.1\r\n" + h + "\r\n", 400},
		{"bad method token", "G(T / HTTP/1.1\r\n" + h + "\r\n", 400},
		{"method with a slash", "GE/T / HTTP/1.1\r\n" + h + "\r\n", 400},
		{"empty method", " / HTTP/1.1\r\n" + h + "\r\n", 400},
		{"CONNECT with a path", "CONNECT /p HTTP/1.1\r\n" + h + "\r\n", 400},
		{"invalid escape in path", "GET /a%zz HTTP/1.1\r\n" + h + "\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n" + h + "\r\n", 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\n" + h + "\r\n", 505},
		{"HTTP/0.9 as 0.9", "GET / HTTP/0.9\r\n" + h + "\r\n", 505},
		{"h2 prior knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		// "HTTP/3" and "HTTP/2" do not match HTTP-version = HTTP-name "/"
		// DIGIT "." DIGIT (RFC 9112 §2.3): malformed, 400, as net/http.
		{"HTTP/3 without minor", "GET / HTTP/3\r\n" + h + "\r\n", 400},
		{"HTTP/2 without minor", "GET / HTTP/2\r\n" + h + "\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\n" + h + "\r\n", 400},
		{"version letters", "GET / HTTP/1.x\r\n" + h + "\r\n", 400},
		{"version too long", "GET / HTTP/1.1.1\r\n" + h + "\r\n", 400},
		{"version garbage", "GET / FTP/1.1\r\n" + h + "\r\n", 400},
		{"missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"control byte in header name", "GET / HTTP/1.1\r\n" + h + "X-A\x01: b\r\n\r\n", 400},
		{"space in header name", "GET / HTTP/1.1\r\n" + h + "X-A : b\r\n\r\n", 400},
		{"NUL in header value", "GET / HTTP/1.1\r\n" + h + "X-A: b\x00c\r\n\r\n", 400},
		{"bare CR in header value", "GET / HTTP/1.1\r\n" + h + "X-A: b\rc\r\n\r\n", 400},
		{"DEL in header value", "GET / HTTP/1.1\r\n" + h + "X-A: b\x7f\r\n\r\n", 400},
		{"escape in header value", "GET / HTTP/1.1\r\n" + h + "X-A: \x1b[31m\r\n\r\n", 400},
		{"obs-fold space", "GET / HTTP/1.1\r\n" + h + "X-A: b\r\n  folded\r\n\r\n", 400},
		{"obs-fold tab", "GET / HTTP/1.1\r\n" + h + "X-A: b\r\n\tfolded\r\n\r\n", 400},
		{"header without colon", "GET / HTTP/1.1\r\n" + h + "NoColonHere\r\n\r\n", 400},
		{"header with empty name", "GET / HTTP/1.1\r\n" + h + ": value\r\n\r\n", 400},
		{"space before first header", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400},
		{"Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"Transfer-Encoding gzip", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n", 501},
		{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"Transfer-Encoding twice", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"Transfer-Encoding identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n", 501},
		{"Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 4\r\n\r\nabcd", 400},
		{"non-numeric Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: abc\r\n\r\n", 400},
		{"hex Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x10\r\n\r\n", 400},
		{"negative Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", 400},
		{"signed Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: +3\r\n\r\nabc", 400},
		{"empty Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: \r\n\r\n", 400},
		{"huge Content-Length", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n", 400},
		{"unsupported Expect", "POST / HTTP/1.1\r\n" + h + "Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
		{"headers over MaxHeaderBytes", "GET / HTTP/1.1\r\n" + h + strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 100) + "\r\n", 431},
		{"one line over MaxHeaderBytes", "GET / HTTP/1.1\r\n" + h + "X-Long: " + strings.Repeat("l", 20000) + "\r\n\r\n", 431},
		{"request line over MaxHeaderBytes", "GET /" + strings.Repeat("l", 20000) + " HTTP/1.1\r\n" + h + "\r\n", 431},
		{"binary garbage", "\x00\x01\x02\xfe\xff garbage\r\n\r\n", 400},
		{"two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.send(tc.req)
			r := rc.read("GET")
			if r.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", r.StatusCode, r.body, tc.status)
			}
			if !r.Close {
				t.Fatalf("error answer without Connection: close")
			}
			if r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.HasPrefix(r.body, fmt.Sprint(tc.status)) {
				t.Fatalf("error answer %q %q", r.Header.Get("Content-Type"), r.body)
			}
			rc.expectClosed()
			select {
			case got := <-reached:
				t.Fatalf("a refused request reached the handler: %s", got)
			default:
			}
			ts.stillServes(t)
		})
	}
}

// TestTolerated checks requests that are odd but valid are served.
func TestTolerated(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s|%s|%q|%q|%d", r.Method, r.Host, r.URL.Path, r.Header.Get("X-A"), b, r.ProtoMinor)
	}))
	for _, tc := range []struct{ name, req, want string }{
		{"bare LF line ends", "GET /lf HTTP/1.1\nHost: x\nX-A: b\n\n", `GET|x|/lf|"b"|""|1`},
		{"one empty line before the request", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", `GET|x|/|""|""|1`},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", `GET||/|""|""|0`},
		{"absolute-form target, no Host", "GET http://abs.example/p HTTP/1.1\r\n\r\n", `GET|abs.example|/p|""|""|1`},
		{"absolute-form target wins over Host", "GET http://abs.example/p HTTP/1.1\r\nHost: other\r\n\r\n", `GET|abs.example|/p|""|""|1`},
		{"tab and spaces around a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: \t b c \t\r\n\r\n", `GET|x|/|"b c"|""|1`},
		{"lower-case names", "GET / HTTP/1.1\r\nhost: x\r\nx-a: v\r\n\r\n", `GET|x|/|"v"|""|1`},
		{"equal Content-Length twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", `POST|x|/|""|"abc"|1`},
		{"Content-Length 0", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `POST|x|/|""|""|1`},
		{"Transfer-Encoding case", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n1\r\nz\r\n0\r\n\r\n", `POST|x|/|""|"z"|1`},
		{"extension method", "PURGE /p HTTP/1.1\r\nHost: x\r\n\r\n", `PURGE|x|/p|""|""|1`},
		{"escaped path", "GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", `GET|x|/a b|""|""|1`},
		{"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", `OPTIONS|x|*|""|""|1`},
		{"authority-form CONNECT", "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", `CONNECT|example.test:443||""|""|1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := ts.dial(t)
			r := rc.roundTrip("GET", tc.req)
			if r.StatusCode != 200 || r.body != tc.want {
				t.Fatalf("%d %q, want 200 %q", r.StatusCode, r.body, tc.want)
			}
		})
	}
}

func TestLongHeaderLineWithinLimit(t *testing.T) {
	ts := start(t, http.HandlerFunc(okHandler))
	rc := ts.dial(t)
	long := strings.Repeat("0123456789abcdef", 1024) // 16 KiB: four times the read buffer
	for range 2 {                                    // and the buffer's reuse on the next request
		r := rc.roundTrip("GET", "GET /echo-header HTTP/1.1\r\nHost: x\r\nX-Long: "+long+"\r\nX-After: 1\r\n\r\n")
		if r.StatusCode != 200 || r.body != long {
			t.Fatalf("status %d, value of %d bytes (want %d)", r.StatusCode, len(r.body), len(long))
		}
	}
	// A long request line too.
	path := "/" + strings.Repeat("p", 6000)
	r := rc.roundTrip("GET", "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if r.StatusCode != 200 {
		t.Fatalf("6 KB request line: %d", r.StatusCode)
	}
}

func TestByteByByte(t *testing.T) {
	ts := start(t, http.HandlerFunc(echo))
	rc := ts.dial(t)
	rc.c.(*net.TCPConn).SetNoDelay(true)
	for _, req := range []string{
		"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nab\r\n0\r\nT: v\r\n\r\n",
	} {
		for i := range len(req) {
			rc.send(req[i : i+1])
		}
		r := rc.read("POST")
		if r.StatusCode != 200 || !strings.HasPrefix(r.body, "POST /") {
			t.Fatalf("%d %q", r.StatusCode, r.body)
		}
	}
}

func TestErrorBodyFormatter(t *testing.T) {
	type call struct {
		status int
		msg    string
	}
	calls := make(chan call, 1)
	ts := start(t, http.HandlerFunc(okHandler), func(s *http1.Server) {
		s.ErrorBody = func(status int, msg string) (string, []byte) {
			calls <- call{status, msg}
			return "application/json", []byte(fmt.Sprintf(`{"error":{"code":%d}}`, status))
		}
	})
	rc := ts.dial(t)
	r := rc.roundTrip("GET", "GET / HTTP/1.1\r\n\r\n")
	if r.StatusCode != 400 || r.Header.Get("Content-Type") != "application/json" || r.body != `{"error":{"code":400}}` {
		t.Fatalf("%d %q %q", r.StatusCode, r.Header.Get("Content-Type"), r.body)
	}
	if c := <-calls; c.status != 400 || !strings.Contains(c.msg, "Host") {
		t.Fatalf("ErrorBody called with %d %q", c.status, c.msg)
	}
	if r.ContentLength != int64(len(r.body)) {
		t.Fatalf("Content-Length %d for %d bytes", r.ContentLength, len(r.body))
	}
}

func TestBadChunkSize(t *testing.T) {
	errs := make(chan error, 1)
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" {
			return
		}
		_, err := io.ReadAll(r.Body)
		errs <- err
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	}))
	for name, body := range map[string]string{
		"letters":          "zz\r\nab\r\n0\r\n\r\n",
		"negative":         "-1\r\nab\r\n0\r\n\r\n",
		"overflow":         "fffffffffffffffffff\r\nab\r\n0\r\n\r\n",
		"missing CRLF":     "2\r\nabX0\r\n\r\n",
		"length too short": "1\r\nab\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
			if err := <-errs; err == nil {
				t.Fatalf("the handler read a malformed chunked body without an error")
			}
			r := rc.read("POST")
			if r.StatusCode != 400 || !r.Close {
				t.Fatalf("%d Close %v", r.StatusCode, r.Close)
			}
			rc.expectClosed()
			ts.stillServes(t)
		})
	}
}

func TestSlowlorisHead(t *testing.T) {
	ts := start(t, http.HandlerFunc(okHandler), func(s *http1.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = time.Hour // the head's bound must not be the idle one
	})
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first request %v", first), func(t *testing.T) {
			rc := ts.dial(t)
			if !first {
				rc.expectOpen()
			}
			rc.send("GET / HTTP/1.1\r\nHost: x\r\n")
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := io.WriteString(rc.c, "X-Drip: 1\r\n"); err != nil {
						return
					}
				}
			}()
			_ = rc.c.SetReadDeadline(time.Now().Add(wait))
			b, err := io.ReadAll(rc.br)
			close(stop)
			<-trickled
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("a head trickling for %v is still being read", wait)
			}
			// Closing with or without a 400 is fine; nothing else is.
			if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
				t.Fatalf("unexpected answer %q", b)
			}
			ts.stillServes(t)
		})
	}
}

func TestIdleAndSilentConnectionsClosed(t *testing.T) {
	ts := start(t, http.HandlerFunc(okHandler), func(s *http1.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		rc := ts.dial(t)
		rc.expectOpen()
		rc.expectClosed()
	})
	t.Run("sends nothing", func(t *testing.T) {
		rc := ts.dial(t)
		rc.expectClosed()
	})
	t.Run("TLS hello to a plain listener", func(t *testing.T) {
		rc := ts.dial(t)
		rc.send("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 64))
		_ = rc.c.SetReadDeadline(time.Now().Add(wait))
		b, err := io.ReadAll(rc.br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open")
		}
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
			t.Fatalf("unexpected answer %q", b)
		}
	})
	ts.stillServes(t)
}

func TestIdleTimeoutDefaultsToReadHeaderTimeout(t *testing.T) {
	ts := start(t, http.HandlerFunc(okHandler), func(s *http1.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
	})
	rc := ts.dial(t)
	rc.expectOpen()
	rc.expectClosed()
}
