// Command floorproxy is the floor of the side-by-side runs
// (scripts/perf/sidebyside): the least a proxy built like `llmlab serve`
// (net/http's server, internal/upstream to the backend) can cost, with none
// of the gateway's work: no validation, admission, metrics, deadlines or
// logs. It takes the arguments sidebyside gives `llmlab serve` (a profile
// file whose `url:` line is the backend, --host, --port; the rest is
// ignored) and prints the same "listening on" line, so it can stand in for
// llmlab: `sidebyside --llmlab floorproxy`. FLOOR_SERVER=http1 in the
// environment serves with internal/http1 (the gateway's default server)
// instead of net/http's.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/llmlab/llmlab/internal/http1"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floorproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("floorproxy", flag.ContinueOnError)
	prof := fs.String("profile", "", "profile YAML whose url names the backend")
	host := fs.String("host", "127.0.0.1", "listen host")
	port := fs.String("port", "0", "listen port")
	fs.String("log-level", "", "ignored")
	fs.Bool("pprof", false, "ignored")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	backend, err := backendURL(*prof)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, *port))
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	tr := upstream.New(upstream.Config{MaxIdlePerHost: 4096})
	readers := sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = http.NoBody
		if r.ContentLength > 0 {
			b := make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, b); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.Path, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header["Content-Type"] = r.Header["Content-Type"]
		resp, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			if k != "Connection" && k != "Transfer-Encoding" && k != "Keep-Alive" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		// Event by event for streams, as a proxy of SSE must.
		rc := http.NewResponseController(w)
		br := readers.Get().(*bufio.Reader)
		br.Reset(resp.Body)
		defer func() { br.Reset(nil); readers.Put(br) }()
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				if _, werr := w.Write(line); werr != nil {
					return
				}
			}
			if err == nil && br.Buffered() > 0 {
				continue
			}
			_ = rc.Flush()
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
		}
	})
	if os.Getenv("FLOOR_SERVER") == "http1" {
		return (&http1.Server{Handler: h}).Serve(ln)
	}
	return http.Serve(ln, h)
}

func backendURL(file string) (string, error) {
	p, err := profile.Load(file)
	if err != nil {
		return "", err
	}
	if p.URL == "" {
		return "", fmt.Errorf("%s: no url", file)
	}
	return strings.TrimSuffix(p.URL, "/"), nil
}
