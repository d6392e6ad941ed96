package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/testsupport"
)

// TestMain checks for leaked goroutines. Each supervisor's rotated worker log
// (lumberjack v2.2.1) keeps one mill goroutine that Close never stops
// (natefinch/lumberjack#56); see the supervisor package's TestMain.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// fakeWorker is a vLLM-shaped worker with knobs for the cases under test.
type fakeWorker struct {
	ts        *httptest.Server
	running   atomic.Int64  // requests inside a handler
	cancelled atomic.Int64  // requests whose context ended early
	lastBody  atomic.Value  // []byte
	gate      chan struct{} // if non-nil, streams wait on it between events
	block     chan struct{} // if non-nil, non-stream requests wait on it
	breakAt   int           // >0: kill the connection after this many events
	events    int           // events per stream (default 3)
	plainSize int           // >0: non-stream answers are this many bytes of JSON
}

func newFakeWorker(t *testing.T) *fakeWorker {
	f := &fakeWorker{events: 3}
	f.ts = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fakeWorker) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		return
	}
	f.running.Add(1)
	defer f.running.Add(-1)
	body, _ := io.ReadAll(r.Body)
	f.lastBody.Store(body)
	var req openai.CompletionRequest
	_ = json.Unmarshal(body, &req)
	if req.Prompt.Text == "too long" {
		openai.WriteError(w, http.StatusBadRequest, "This model's maximum context length is 512 tokens. However, your request has 900 input tokens.")
		return
	}
	if !req.Stream && f.plainSize > 0 {
		// A large answer, written in pieces so a client that stops
		// reading blocks the gateway's writes, not just this one.
		w.Header().Set("Content-Type", "application/json")
		piece := []byte(strings.Repeat(" ", 4096))
		_, _ = io.WriteString(w, `{"choices":[],"pad":"`)
		for n := 0; n < f.plainSize; n += len(piece) {
			if r.Context().Err() != nil {
				f.cancelled.Add(1)
				return
			}
			_, _ = w.Write(piece)
		}
		_, _ = io.WriteString(w, `"}`)
		return
	}
	if !req.Stream {
		if f.block != nil {
			select {
			case <-f.block:
			case <-r.Context().Done():
				f.cancelled.Add(1)
				return
			}
		}
		writeJSON(w, http.StatusOK, openai.CompletionResponse{
			ID: "cmpl-1", Object: openai.ObjectTextCompletion, Model: "m",
			Choices: []openai.CompletionChoice{{Text: "hello world", FinishReason: openai.StringPtr("length")}},
			Usage:   &openai.Usage{PromptTokens: 2, CompletionTokens: 2, TotalTokens: 4},
		})
		return
	}
	sw := openai.NewSSEWriter(w)
	for i := range f.events {
		if r.Context().Err() != nil {
			f.cancelled.Add(1)
			return
		}
		if f.breakAt > 0 && i == f.breakAt {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close() // the worker "dies" mid-stream
			return
		}
		if f.gate != nil && i > 0 {
			select {
			case <-f.gate:
			case <-r.Context().Done():
				f.cancelled.Add(1)
				return
			}
		}
		_ = sw.WriteData([]byte(fmt.Sprintf(`{"choices":[{"index":0,"text":"t%d"}]}`, i)))
	}
	_ = sw.WriteDone()
}

func testProfile(url string) profile.Profile {
	return profile.Profile{
		Name: "test", Engine: profile.EngineExternal, URL: url, Model: "org/m", ServedModelName: "m",
		EngineArgs: profile.EngineArgs{MaxModelLen: 512, MaxNumSeqs: 4, MaxNumBatchedTokens: 2048, BlockSize: 16, GPUMemoryUtilization: 0.9},
	}
}

// newGateway serves a gateway over url on an httptest server.
func newGateway(t *testing.T, url string, tweak func(*Settings)) (*Server, string) {
	t.Helper()
	set := Defaults()
	set.IdleTimeout = 0
	if tweak != nil {
		tweak(&set)
	}
	s, err := New(set, testProfile(url), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, ts.URL
}

func post(t *testing.T, url, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func errorOf(t *testing.T, body string) openai.ErrorBody {
	t.Helper()
	var e openai.ErrorResponse
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error body: %q", body)
	}
	return e.Error
}

func TestEdgeValidation(t *testing.T) {
	f := newFakeWorker(t)
	s, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.MaxBodyBytes = 1000 })
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"unknown route", "GET", "/v2/nothing", "", 404, "unknown route"},
		{"wrong method", "GET", "/v1/completions", "", 405, "not allowed"},
		{"malformed", "POST", "/v1/completions", `{"prompt": "x",`, 400, "Invalid JSON"},
		{"wrong type", "POST", "/v1/completions", `{"prompt":"x","max_tokens":"many"}`, 400, "max_tokens"},
		{"no prompt", "POST", "/v1/completions", `{"model":"m"}`, 400, "'prompt' is required"},
		{"empty body", "POST", "/v1/chat/completions", ``, 400, "empty"},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, 400, "messages"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "gpt-9"},
		{"too large", "POST", "/v1/completions", `{"prompt":"` + strings.Repeat("x", 2000) + `"}`, 413, "larger than 1000"},
		{"generate without tokens", "POST", "/generate", `{"prompt":"x"}`, 400, "max_new_tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, gw+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, b)
			}
			if e := errorOf(t, string(b)); !strings.Contains(e.Message, c.msg) || e.Code != c.status {
				t.Fatalf("error %+v should mention %q", e, c.msg)
			}
		})
	}
	if f.running.Load() != 0 || s.Supervisor().State().String() != "STOPPED" {
		t.Fatal("bad input reached the worker or started it")
	}
}

func TestModelsDoesNotStartWorker(t *testing.T) {
	f := newFakeWorker(t)
	s, gw := newGateway(t, f.ts.URL, nil)
	resp, err := http.Get(gw + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var ml openai.ModelList
	_ = json.NewDecoder(resp.Body).Decode(&ml)
	resp.Body.Close()
	if len(ml.Data) != 1 || ml.Data[0].ID != "m" || ml.Data[0].MaxModelLen != 512 {
		t.Fatalf("models %+v", ml)
	}
	if st := s.Supervisor().State().String(); st != "STOPPED" {
		t.Fatalf("worker %s after /v1/models", st)
	}
}

func TestProxyKeepsBodyAndPassesErrors(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	body := `{"model":"m",  "prompt":"hi", "max_tokens":2, "vendor_field":{"x":1}}`
	resp, out := post(t, gw+"/v1/completions", body)
	if resp.StatusCode != 200 || !strings.Contains(out, "hello world") {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	if got := string(f.lastBody.Load().([]byte)); got != body {
		t.Fatalf("worker got %q, want the client's bytes %q", got, body)
	}
	resp, out = post(t, gw+"/v1/completions", `{"model":"m","prompt":"too long"}`)
	if resp.StatusCode != 400 || !strings.Contains(errorOf(t, out).Message, "maximum context length") {
		t.Fatalf("upstream 400 not passed through: %d %s", resp.StatusCode, out)
	}
}

func TestGenerate(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	resp, out := post(t, gw+"/generate", `{"prompt":"hi","max_new_tokens":2,"temperature":0}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	var g generateResponse
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	if g.Text != "hello world" || g.Usage == nil || g.Usage.CompletionTokens != 2 || g.Timings.TotalSeconds <= 0 {
		t.Fatalf("generate %+v", g)
	}
	var up openai.CompletionRequest
	_ = json.Unmarshal(f.lastBody.Load().([]byte), &up)
	if up.Model != "m" || *up.MaxTokens != 2 || up.Prompt.Text != "hi" || up.Stream {
		t.Fatalf("upstream request %+v", up)
	}
}

// readEvent reads one SSE event's data line.
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			return d
		}
	}
}

func TestStreamIsRelayedEventByEvent(t *testing.T) {
	f := newFakeWorker(t)
	f.gate = make(chan struct{})
	_, gw := newGateway(t, f.ts.URL, nil)
	// A buffering proxy makes this time out instead of hanging the suite.
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post(gw+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	// The worker holds event 1 until we have event 0: a buffering proxy
	// would deadlock here (and fail on the test timeout).
	for i := range 3 {
		if got := readEvent(t, br); !strings.Contains(got, fmt.Sprintf("t%d", i)) {
			t.Fatalf("event %d: %s", i, got)
		}
		if i < 2 {
			f.gate <- struct{}{}
		}
	}
	if got := readEvent(t, br); got != "[DONE]" {
		t.Fatalf("want [DONE], got %s", got)
	}
}

func TestWorkerDeathMidStream(t *testing.T) {
	f := newFakeWorker(t)
	f.breakAt = 2
	_, gw := newGateway(t, f.ts.URL, nil)
	resp, out := post(t, gw+"/v1/completions", `{"prompt":"hi","stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	evs := strings.Split(strings.TrimSpace(out), "\n\n")
	if len(evs) != 4 || !strings.Contains(evs[2], `"error"`) || evs[3] != "data: [DONE]" {
		t.Fatalf("want 2 events, an error event and [DONE]; got %q", out)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	f := newFakeWorker(t)
	f.gate = make(chan struct{})
	s, gw := newGateway(t, f.ts.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", gw+"/v1/completions", strings.NewReader(`{"prompt":"hi","stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readEvent(t, bufio.NewReader(resp.Body))
	cancel()
	resp.Body.Close()
	testsupport.WaitFor(t, 0, func() bool { return f.cancelled.Load() == 1 && f.running.Load() == 0 })
	testsupport.WaitFor(t, 0, func() bool { _, in := s.disp.Stats(); return in == 0 })
}

// stalledClient sends a request on a raw connection with a small receive
// buffer and never reads the answer: a client that hung, not one that left.
func stalledClient(t *testing.T, gw, path, body string) {
	t.Helper()
	addr := strings.TrimPrefix(gw, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, addr, len(body), body); err != nil {
		t.Fatal(err)
	}
}

// TestStalledClientIsCutOff: a client that stops reading must not keep its
// place and the worker's sequence forever. After stream_write_timeout
// without progress the request ends, the upstream request is cancelled
// and the stall is counted.
func TestStalledClientIsCutOff(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"stream", `{"prompt":"hi","stream":true}`},
		{"plain", `{"prompt":"hi"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeWorker(t)
			f.events = 1 << 30    // far more than the socket buffers hold
			f.plainSize = 1 << 30 // likewise
			s, gw := newGateway(t, f.ts.URL, func(set *Settings) { set.StreamWriteTimeout = 300 * time.Millisecond })
			stalledClient(t, gw, "/v1/completions", tc.body)
			testsupport.WaitFor(t, 0, func() bool { _, in := s.disp.Stats(); return in == 1 })
			// The timeout counts from the last write that made progress, so
			// allow for filling the socket buffers before the stall (some 4
			// MB on loopback: seconds under -race on a busy machine).
			testsupport.WaitFor(t, 30*time.Second, func() bool { _, in := s.disp.Stats(); return in == 0 })
			testsupport.WaitFor(t, 0, func() bool { return f.running.Load() == 0 && f.cancelled.Load() == 1 })
			resp, err := http.Get(gw + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := `llmlab_request_errors_total{code="499",reason="client_stalled"} 1`; !strings.Contains(string(b), want) {
				t.Fatalf("metrics lack %q", want)
			}
		})
	}
}

// TestWriteDeadlineDoesNotOutliveItsRequest: the deadline a relay armed
// must not cut a later request on the same keep-alive connection (net/http
// clears it after each response; this guards that assumption).
func TestWriteDeadlineDoesNotOutliveItsRequest(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, func(set *Settings) { set.StreamWriteTimeout = 50 * time.Millisecond })
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	for i := range 2 {
		resp, err := c.Post(gw+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "[DONE]") {
			t.Fatalf("request %d: %q", i, b)
		}
		time.Sleep(150 * time.Millisecond) // past the first request's deadline
		resp, err = c.Get(gw + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d on a reused connection: %v %v", i, resp.StatusCode, err)
		}
	}
}

func TestQueueFullAndQueuedDisconnect(t *testing.T) {
	f := newFakeWorker(t)
	f.block = make(chan struct{})
	s, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.MaxInFlight = 1; s.QueueMax = 1 })
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	wg.Add(1)
	go func() { // in flight, blocked in the worker
		defer wg.Done()
		resp, _ := post(t, gw+"/v1/completions", `{"prompt":"a"}`)
		codes <- resp.StatusCode
	}()
	testsupport.WaitFor(t, 0, func() bool { return f.running.Load() == 1 })
	qctx, qcancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { // queued, then gives up
		defer wg.Done()
		req, _ := http.NewRequestWithContext(qctx, "POST", gw+"/v1/completions", strings.NewReader(`{"prompt":"b"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	testsupport.WaitFor(t, 0, func() bool { d, _ := s.disp.Stats(); return d == 1 })
	resp, out := post(t, gw+"/v1/completions", `{"prompt":"c"}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("want 429 with Retry-After, got %d %s", resp.StatusCode, out)
	}
	qcancel()
	testsupport.WaitFor(t, 0, func() bool { d, _ := s.disp.Stats(); return d == 0 })
	// The freed place is usable again.
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, _ := post(t, gw+"/v1/completions", `{"prompt":"d"}`)
		codes <- resp.StatusCode
	}()
	testsupport.WaitFor(t, 0, func() bool { d, _ := s.disp.Stats(); return d == 1 })
	close(f.block)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("status %d, want 200", c)
		}
	}
}

func TestHeldRequestTimesOut504(t *testing.T) {
	// A worker URL that never becomes healthy: nothing listens there.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	_, gw := newGateway(t, url, func(s *Settings) { s.ColdStartTimeout = 200 * time.Millisecond })
	t0 := time.Now()
	resp, out := post(t, gw+"/v1/completions", `{"prompt":"x"}`)
	if resp.StatusCode != 504 || !strings.Contains(errorOf(t, out).Message, "cold_start_timeout") {
		t.Fatalf("want 504, got %d %s", resp.StatusCode, out)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestFailedStart503(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	_, gw := newGateway(t, url, func(s *Settings) { s.StartupTimeout = 100 * time.Millisecond })
	resp, out := post(t, gw+"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(errorOf(t, out).Message, "start-up timeout") {
		t.Fatalf("want 503 with the reason, got %d %s", resp.StatusCode, out)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	post(t, gw+"/v1/completions", `{"prompt":"hi"}`)
	resp, err := http.Get(gw + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st statusBody
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Worker.State != "READY" || st.Profile.Name != "test" || st.Queue.MaxInFlight != 4 || st.Worker.Starts != 1 {
		t.Fatalf("status %+v", st)
	}
	resp, err = http.Get(gw + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`llmlab_requests_total{code="200",route="/v1/completions"} 1`,
		`llmlab_worker_state{state="READY"} 1`,
		`llmlab_worker_starts_total 1`,
		// A request that found a place at once waited 0 s; leaving it out
		// would make the mean and quantiles of the wait lie upwards.
		`llmlab_queue_wait_seconds_count 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestSettingsPrecedence(t *testing.T) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte("idle_timeout: 60s\nqueue_max: 10\nmax_in_flight: 3\n"), &node); err != nil {
		t.Fatal(err)
	}
	s := Defaults()
	if err := s.ApplyProfile(*node.Content[0]); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LLMLAB_QUEUE_MAX": "20", "LLMLAB_COLD_START_TIMEOUT": "7"}
	if err := s.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("max_in_flight", "5"); err != nil { // a flag
		t.Fatal(err)
	}
	if s.IdleTimeout != time.Minute || s.QueueMax != 20 || s.MaxInFlight != 5 || s.ColdStartTimeout != 7*time.Second || s.Port != 8080 {
		t.Fatalf("settings %+v", s)
	}
	if err := yaml.Unmarshal([]byte("bogus: 1\n"), &node); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyProfile(*node.Content[0]); err == nil {
		t.Fatal("unknown key accepted")
	}
	if err := s.Set("idle_timeout", "soon"); err == nil {
		t.Fatal("bad duration accepted")
	}
}

// TestShutdownGraceExpiryEndsRequestsExplicitly: requests still running when
// the shutdown grace runs out end with an explicit error (an error event
// and [DONE] mid-stream, a JSON 503 otherwise), not a silently cut
// connection; and they are told to retry: a 503 with Retry-After, and
// mid-stream an error event typed 503, not a worker (502) failure.
func TestShutdownGraceExpiryEndsRequestsExplicitly(t *testing.T) {
	f := newFakeWorker(t)
	f.gate = make(chan struct{}) // streams stall after their first event
	f.block = make(chan struct{})
	set := Defaults()
	set.IdleTimeout, set.ShutdownTimeout, set.StopGrace = 0, 300*time.Millisecond, time.Second
	s, err := New(set, testProfile(f.ts.URL), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, ln) }()

	resp, err := http.Post(gw+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readEvent(t, br)
	plain := make(chan string, 1)
	go func() {
		resp, err := http.Post(gw+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi"}`))
		if err != nil {
			plain <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		plain <- fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("Retry-After"), " ", string(b))
	}()
	testsupport.WaitFor(t, 0, func() bool { return f.running.Load() == 2 })
	cancel()

	rest, _ := io.ReadAll(br)
	evs := strings.Split(strings.TrimSpace(string(rest)), "\n\n")
	if len(evs) < 2 || !strings.Contains(evs[len(evs)-2], `"error"`) || evs[len(evs)-1] != "data: [DONE]" {
		t.Errorf("stream cut at shutdown without an error event and [DONE]: %q", rest)
	}
	if !strings.Contains(string(rest), `"code":503`) || !strings.Contains(string(rest), "ServiceUnavailableError") {
		t.Errorf("stream cut by shutdown: %q, want a 503-typed error event", rest)
	}
	if got := <-plain; !strings.HasPrefix(got, "503 1 ") || !strings.Contains(got, "shutting down") {
		t.Errorf("non-stream request at shutdown: %s; want a 503 JSON error with Retry-After 1", got)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestSettingsRejectBadValues(t *testing.T) {
	for _, kv := range [][2]string{
		{"idle_timeout", "NaN"}, {"cold_start_timeout", "1e300"}, {"stop_grace", "Inf"},
		{"worker_startup_seconds", "NaN"}, {"worker_startup_seconds", "+Inf"},
	} {
		s := Defaults()
		if err := s.Set(kv[0], kv[1]); err == nil {
			t.Errorf("%s=%s accepted", kv[0], kv[1])
		}
	}
	for _, tweak := range []func(*Settings){
		func(s *Settings) { s.RestartBackoff = -time.Second },
		func(s *Settings) { s.RestartBackoff = 0 },
		func(s *Settings) { s.MaxRestartBackoff = -time.Second },
		func(s *Settings) { s.RestartBackoff, s.MaxRestartBackoff = time.Hour, time.Millisecond },
	} {
		s := Defaults()
		tweak(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("restart_backoff %v max_restart_backoff %v accepted", s.RestartBackoff, s.MaxRestartBackoff)
		}
	}
	if s := Defaults(); s.Set("stream_write_timeout", "-1s") != nil || s.Validate() == nil {
		t.Error("negative stream_write_timeout accepted")
	}
	if s := Defaults(); s.Validate() != nil {
		t.Fatalf("defaults invalid: %v", s.Validate())
	}
}

// While the worker starts, nothing leaves the queue, so a 429 must not
// invite a retry before the start-up is expected to end (the last cold
// start's duration), or clients that honour Retry-After hammer the gateway
// for the whole cold start.
func TestQueueFullRetryAfterCoversColdStart(t *testing.T) {
	var healthy atomic.Bool
	f := newFakeWorker(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable) // still loading
			return
		}
		f.serve(w, r)
	}))
	t.Cleanup(ts.Close)
	s, gw := newGateway(t, ts.URL, func(s *Settings) { s.MaxInFlight = 1; s.QueueMax = 0; s.ColdStartTimeout = 10 * time.Second })
	// A first cold start of about 3 s.
	time.AfterFunc(3*time.Second, func() { healthy.Store(true) })
	if resp, out := post(t, gw+"/v1/completions", `{"prompt":"a"}`); resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, out)
	}
	if err := s.sup.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	healthy.Store(false)
	held := make(chan int, 1)
	go func() { resp, _ := post(t, gw+"/v1/completions", `{"prompt":"b"}`); held <- resp.StatusCode }()
	testsupport.WaitFor(t, 0, func() bool { _, in := s.disp.Stats(); return in == 1 })
	resp, out := post(t, gw+"/v1/completions", `{"prompt":"c"}`)
	healthy.Store(true)
	if resp.StatusCode != 429 {
		t.Fatalf("want 429, got %d %s", resp.StatusCode, out)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 2 {
		t.Fatalf("Retry-After %q during a ~3 s cold start", resp.Header.Get("Retry-After"))
	}
	if code := <-held; code != 200 {
		t.Fatalf("held request: %d", code)
	}
}
