package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/http1"
	"github.com/llmlab/llmlab/internal/openai"
)

// The gateway's own cost, measured against a worker that costs nothing: an
// in-process server answering at once. Every number is gateway minus
// direct, in the same run, on the same loopback. Run with
//
//	LLMLAB_BENCH=1 go test ./internal/gateway -run TestOverheadReport -v
//	go test ./internal/gateway -run '^$' -bench . -benchtime 2000x

const benchTokens = 200

var completionBody = []byte(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" a b c d","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":200,"completion_tokens":4,"total_tokens":204}}`)

func instantWorker() *httptest.Server {
	ev := []byte(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":null}]}`)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		b, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(b), `"stream":true`) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(completionBody)
			return
		}
		sw := openai.NewSSEWriter(w)
		for range benchTokens {
			_ = sw.WriteData(ev)
		}
		_ = sw.WriteDone()
	}))
}

type benchEnv struct {
	direct, gateway string
	client          *http.Client
	close           func()
}

func newBenchEnv(tb testing.TB) *benchEnv { return newBenchEnvOn(tb, "lean") }

// newBenchEnvOn serves the gateway with the server Run would use for
// http_server (lean: internal/http1; net/http).
func newBenchEnvOn(tb testing.TB, server string) *benchEnv {
	w := instantWorker()
	set := Defaults()
	set.IdleTimeout = 0
	set.MaxInFlight = 256
	s, err := New(set, testProfile(w.URL), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var g interface {
		Serve(net.Listener) error
		Close() error
	}
	if server == "lean" {
		g = &http1.Server{Handler: s.Handler(), BaseContext: s.BaseContext}
	} else {
		g = &http.Server{Handler: s.Handler(), BaseContext: s.BaseContext}
	}
	served := make(chan struct{})
	go func() { _ = g.Serve(ln); close(served) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	return &benchEnv{direct: w.URL, gateway: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr}, close: func() {
		_ = g.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
		w.Close()
		tr.CloseIdleConnections()
	}}
}

const (
	reqPlain  = `{"model":"m","prompt":"hello","max_tokens":4}`
	reqStream = `{"model":"m","prompt":"hello","max_tokens":200,"stream":true}`
)

func (e *benchEnv) do(base, body string) (time.Duration, error) {
	t0 := time.Now()
	resp, err := e.client.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(t0), err
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// throughput runs conc closed-loop clients for dur and returns requests/s.
func (e *benchEnv) throughput(base, body string, conc int, dur time.Duration) float64 {
	var n atomic.Int64
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := e.do(base, body); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / dur.Seconds()
}

func TestOverheadReport(t *testing.T) {
	if os.Getenv("LLMLAB_BENCH") == "" {
		t.Skip("set LLMLAB_BENCH=1 to measure the gateway's overhead")
	}
	e := newBenchEnv(t)
	defer e.close()
	for range 200 { // warm connections and code paths
		_, _ = e.do(e.direct, reqPlain)
		_, _ = e.do(e.gateway, reqPlain)
	}
	// Interleaved so both see the same machine noise.
	const n = 3000
	var d, g []time.Duration
	for range n {
		a, err1 := e.do(e.direct, reqPlain)
		b, err2 := e.do(e.gateway, reqPlain)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		d, g = append(d, a), append(g, b)
	}
	t.Logf("request (non-stream), %d sequential: direct p50 %v p99 %v | gateway p50 %v p99 %v | added p50 %v p99 %v",
		n, pct(d, .5), pct(d, .99), pct(g, .5), pct(g, .99), pct(g, .5)-pct(d, .5), pct(g, .99)-pct(d, .99))

	const ns = 300
	d, g = d[:0], g[:0]
	for range ns {
		a, err1 := e.do(e.direct, reqStream)
		b, err2 := e.do(e.gateway, reqStream)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		d, g = append(d, a), append(g, b)
	}
	t.Logf("stream of %d events, %d sequential: direct p50 %v | gateway p50 %v | added per token p50 %v p99 %v",
		benchTokens, ns, pct(d, .5), pct(g, .5), (pct(g, .5)-pct(d, .5))/benchTokens, (pct(g, .99)-pct(d, .99))/benchTokens)

	for _, conc := range []int{1, 16} {
		rd := e.throughput(e.direct, reqPlain, conc, 2*time.Second)
		rg := e.throughput(e.gateway, reqPlain, conc, 2*time.Second)
		t.Logf("throughput, %d clients, instant worker in-process: direct %.0f req/s, gateway %.0f req/s, ratio %.2f", conc, rd, rg, rg/rd)
	}
}

func benchmarkPath(b *testing.B, gateway bool, body string) {
	benchmarkPathOn(b, gateway, body, "lean")
}

func benchmarkPathOn(b *testing.B, gateway bool, body, server string) {
	e := newBenchEnvOn(b, server)
	defer e.close()
	base := e.direct
	if gateway {
		base = e.gateway
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := e.do(base, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompletionDirect(b *testing.B)  { benchmarkPath(b, false, reqPlain) }
func BenchmarkCompletionGateway(b *testing.B) { benchmarkPath(b, true, reqPlain) }
func BenchmarkStream200Direct(b *testing.B)   { benchmarkPath(b, false, reqStream) }

// The same through net/http's server (http_server: net/http).
func BenchmarkCompletionGatewayNetHTTP(b *testing.B) {
	benchmarkPathOn(b, true, reqPlain, "net/http")
}
func BenchmarkStream200GatewayNetHTTP(b *testing.B) { benchmarkPathOn(b, true, reqStream, "net/http") }
func BenchmarkStream200Gateway(b *testing.B)        { benchmarkPath(b, true, reqStream) }

func BenchmarkCompletionGatewayParallel(b *testing.B) {
	e := newBenchEnv(b)
	defer e.close()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.do(e.gateway, reqPlain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
