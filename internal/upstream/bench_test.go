package upstream

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkRoundTrip sends the gateway's kind of request (a POST with a
// bytes.Reader body of known length, the answer read to EOF) through this
// transport and through net/http's Transport, in parallel, against the
// same loopback server. Run:
//
//	go test -run '^$' -bench RoundTrip -benchmem ./internal/upstream/
func BenchmarkRoundTrip(b *testing.B) {
	answer := []byte(`{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" a b c d","finish_reason":"length"}],"usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Write(answer)
	}))
	defer srv.Close()
	body := []byte(`{"model":"m","prompt":"hello there, how are you","max_tokens":4}`)
	ct := []string{"application/json"}
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		b.SetParallelism(4) // several requests in flight per core, as behind a gateway
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/completions", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header["Content-Type"] = ct
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
	b.Run("upstream", func(b *testing.B) {
		tr := New(Config{MaxIdlePerHost: 64})
		defer tr.CloseIdleConnections()
		run(b, tr)
	})
	b.Run("http.Transport", func(b *testing.B) {
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		}
		defer tr.CloseIdleConnections()
		run(b, tr)
	})
}
