package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/sim/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testModel = "Qwen/Qwen2.5-0.5B-Instruct"

// testConfig is the default GPU and model with max_model_len 512, as the
// lab runs it.
func testConfig() Config {
	return Config{
		Engine: engine.Config{
			GPU: "rtx3050-4gb-laptop", ModelSpec: "qwen2.5-0.5b", MaxModelLen: 512,
			GPUMemoryUtilization: 0.9, MaxNumSeqs: 64, MaxNumBatchedTokens: 2048,
			EnableChunkedPrefill: true, BlockSize: 16,
		},
		Model: testModel, Seed: 1,
	}
}

// testServer is a server with its engine loop running behind a real
// loopback listener.
type testServer struct {
	*server
	url    string
	client *http.Client
	stop   func() // stops the engine loop (idempotent)
}

func startServer(t testing.TB, cfg Config, observe stepObserver) *testServer {
	t.Helper()
	plan, err := engine.NewPlan(cfg.Engine)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	s := newServer(cfg, plan, observe)
	ctx, cancel := context.WithCancel(context.Background())
	go s.loop.run(ctx)
	hs := httptest.NewServer(s.handler())
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	ts := &testServer{server: s, url: hs.URL, client: &http.Client{Transport: tr}, stop: cancel}
	t.Cleanup(func() {
		// Stop the engine first so that streams still open end, then
		// close the listener (which waits for the handlers).
		cancel()
		<-s.loop.done
		tr.CloseIdleConnections()
		hs.Close()
	})
	return ts
}

// post sends body as JSON and returns the status and response body.
func (ts *testServer) post(t testing.TB, path string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := ts.client.Post(ts.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, out
}

// streamEvent is one SSE event and when it was read.
type streamEvent struct {
	data []byte
	at   time.Time
}

// postStream sends a streaming request and reads all events until [DONE].
func (ts *testServer) postStream(t testing.TB, path string, body any) []streamEvent {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.client.Post(ts.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		out, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: status %d: %s", path, resp.StatusCode, out)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	rd := openai.NewSSEReader(resp.Body)
	var evs []streamEvent
	for {
		d, err := rd.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("stream ended without [DONE] after %d events", len(evs))
		}
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if string(d) == openai.Done {
			return evs
		}
		evs = append(evs, streamEvent{data: bytes.Clone(d), at: time.Now()})
	}
}

// scrape reads /metrics and parses it.
func (ts *testServer) scrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := ts.client.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the single series of a gauge or counter.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	m := f.GetMetric()[0]
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

func intp(i int) *int           { return &i }
func floatp(f float64) *float64 { return &f }
func ptr[T any](v T) *T         { return &v }
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}
