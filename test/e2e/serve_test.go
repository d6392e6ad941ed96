package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/testsupport"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const serveModel = "qwen2.5-0.5b-instruct"

// startServe runs `llmlab serve` on a free port with a simulated worker
// that loads in 0.3 s, and waits until the gateway answers.
func startServe(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	port := freePort(t)
	base := "http://127.0.0.1:" + itoa(port)
	all := append([]string{"serve", "--port", itoa(port), "--worker-startup-seconds", "0.3",
		"--log-dir", t.TempDir(), "--idle-timeout", "60s", "--stop-grace", "3s"}, args...)
	p := start(t, all...)
	waitHTTP(t, p, base+"/health", 10*time.Second)
	return p, base
}

// serveStatus is the part of GET /status the tests read.
type serveStatus struct {
	Worker struct {
		State     string  `json:"state"`
		PID       int     `json:"pid"`
		URL       string  `json:"url"`
		Starts    int     `json:"starts"`
		LastError string  `json:"last_error"`
		ColdStart float64 `json:"last_cold_start_seconds"`
	} `json:"worker"`
	Queue struct {
		Depth    int `json:"depth"`
		InFlight int `json:"in_flight"`
	} `json:"queue"`
}

func getStatus(t *testing.T, base string) serveStatus {
	t.Helper()
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st serveStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func waitState(t *testing.T, base, state string, timeout time.Duration) serveStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := getStatus(t, base)
		if st.Worker.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s after %v, want %s", st.Worker.State, timeout, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitPidGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("worker pid %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func client(base string) oai.Client {
	return oai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample (exact name with labels prefix) from a /metrics page.
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return -1
}

func metricMatching(t *testing.T, url string, re *regexp.Regexp) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no metric matching %s", re)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestServeColdStartHoldsConcurrentRequests(t *testing.T) {
	_, base := startServe(t)
	if st := getStatus(t, base); st.Worker.State != "STOPPED" {
		t.Fatalf("worker %s before any request", st.Worker.State)
	}
	c := client(base)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0: // official client, completions
				r, err := c.Completions.New(ctx, oai.CompletionNewParams{
					Model: serveModel, Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("hello")}, MaxTokens: oai.Int(8),
				})
				if err == nil && (len(r.Choices) != 1 || r.Usage.CompletionTokens == 0) {
					err = errors.New("empty completion")
				}
				errs <- err
			case 1: // official client, streaming chat
				s := c.Chat.Completions.NewStreaming(ctx, oai.ChatCompletionNewParams{
					Model: serveModel, Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")}, MaxTokens: oai.Int(8),
				})
				n := 0
				for s.Next() {
					n++
				}
				err := s.Err()
				if err == nil && n == 0 {
					err = errors.New("no chunks")
				}
				errs <- err
			default: // plain HTTP, /generate
				code, body := postJSON(t, base+"/generate", `{"prompt":"hi","max_new_tokens":4}`)
				if code != 200 {
					errs <- errors.New(body)
				} else {
					errs <- nil
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("held request failed: %v", err)
		}
	}
	st := getStatus(t, base)
	if st.Worker.State != "READY" || st.Worker.Starts != 1 {
		t.Fatalf("after cold start: state %s starts %d, want READY 1", st.Worker.State, st.Worker.Starts)
	}
	if st.Worker.ColdStart < 0.3 || st.Worker.ColdStart > 5 {
		t.Fatalf("cold start %.3fs; the worker models 0.3s", st.Worker.ColdStart)
	}
	// /v1/models answers from the profile.
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), serveModel) {
		t.Fatalf("models: %s", b)
	}
}

func TestServeIdleStopEndsWorkerProcess(t *testing.T) {
	_, base := startServe(t, "--idle-timeout", "1s")
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	pid := getStatus(t, base).Worker.PID
	if pid == 0 || !pidAlive(pid) {
		t.Fatalf("worker pid %d not running", pid)
	}
	waitState(t, base, "STOPPED", 10*time.Second)
	waitPidGone(t, pid)
	if v := metric(t, base+"/metrics", "llmlab_worker_stops_total"); v != 1 {
		t.Fatalf("llmlab_worker_stops_total = %v, want 1", v)
	}
	// Scale from zero again.
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("after idle stop: %d %s", code, body)
	}
}

func TestServeKilledWorkerIsRestartedOnDemand(t *testing.T) {
	_, base := startServe(t)
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	pid := getStatus(t, base).Worker.PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, base, "FAILED", 2*time.Second) // noticed at once, without traffic
	if st.Worker.LastError != "worker killed by signal 9 (SIGKILL)" {
		t.Fatalf("last error %q", st.Worker.LastError)
	}
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("after crash: %d %s", code, body)
	}
	st = getStatus(t, base)
	if st.Worker.State != "READY" || st.Worker.Starts != 2 || st.Worker.PID == pid {
		t.Fatalf("after restart: %+v", st.Worker)
	}
	if v := metric(t, base+"/metrics", "llmlab_worker_crashes_total"); v != 1 {
		t.Fatalf("llmlab_worker_crashes_total = %v", v)
	}
}

func TestServeWorkerThatCannotStartGives503(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "oom.yaml")
	// 256 seqs × 16384 batched tokens at util 0.35 does not fit the default 4 GB card.
	if err := os.WriteFile(prof, []byte(`name: oom
engine: sim
model: Qwen/Qwen2.5-0.5B-Instruct
served_model_name: qwen2.5-0.5b-instruct
engine_args:
  max_model_len: 512
  gpu_memory_utilization: 0.35
  max_num_seqs: 256
  max_num_batched_tokens: 16384
gateway:
  restart_backoff: 30s
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, base := startServe(t, "--profile", prof)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`)
			if code != 503 || !strings.Contains(body, "No available memory for the cache blocks") {
				t.Errorf("want 503 with the worker's error, got %d %s", code, body)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("failing start took %v", d)
	}
	// Inside the back-off: answered at once, with Retry-After, no new start.
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := getStatus(t, base)
	if st.Worker.State != "FAILED" || st.Worker.Starts > 2 {
		t.Fatalf("crash loop? %+v", st.Worker)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("during back-off: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestServeDisconnectCancelsUpstream(t *testing.T) {
	_, base := startServe(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 480 tokens take the modelled 4 GB card over 2 s.
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/completions",
		strings.NewReader(`{"prompt":"hi","max_tokens":480,"ignore_eos":true,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	worker := getStatus(t, base).Worker.URL + "/metrics"
	running := regexp.MustCompile(`(?m)^vllm:num_requests_running\{[^}]*\} (\S+)`)
	if v := metricMatching(t, worker, running); v != 1 {
		t.Fatalf("worker running %v, want 1", v)
	}
	t0 := time.Now()
	cancel()
	resp.Body.Close()
	for metricMatching(t, worker, running) != 0 {
		if time.Since(t0) > 1500*time.Millisecond {
			t.Fatal("worker still running the request after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	finished := regexp.MustCompile(`(?m)^vllm:request_success_total\{[^}]*finished_reason="length"[^}]*\} (\S+)`)
	if v := metricMatching(t, worker, finished); v != 0 {
		t.Fatalf("the request ran to its end (%v finished): not cancelled", v)
	}
	st := getStatus(t, base)
	if st.Queue.InFlight != 0 {
		t.Fatalf("gateway still counts %d in flight", st.Queue.InFlight)
	}
}

// fastStreamWorker is an external vLLM-shaped worker that streams tokens
// as fast as it can until its client leaves: more than any socket buffer
// holds. (The simulated engine cannot stand in: 480 tokens of its events
// are ~100 KiB, which the loopback send buffer, autotuned to MiBs, takes
// whole, so no write to a stalled client would ever block.) It reports
// vllm:num_requests_running as vLLM does.
func fastStreamWorker(t *testing.T) *httptest.Server {
	var running, finished atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			return
		case "/metrics":
			fmt.Fprintf(w, "vllm:num_requests_running{engine=\"0\",model_name=\"%s\"} %d\n", serveModel, running.Load())
			fmt.Fprintf(w, "vllm:request_success_total{engine=\"0\",finished_reason=\"length\",model_name=\"%s\"} %d\n", serveModel, finished.Load())
			return
		}
		running.Add(1)
		defer running.Add(-1)
		w.Header().Set("Content-Type", "text/event-stream")
		event := []byte(`data: {"id":"cmpl-1","object":"text_completion","model":"` + serveModel + `","choices":[{"index":0,"text":" token","logprobs":null,"finish_reason":null}]}` + "\n\n")
		for range 1 << 20 { // 150 MiB: far beyond any buffer
			if _, err := w.Write(event); err != nil || r.Context().Err() != nil {
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
		finished.Add(1)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// TestServeStalledClientIsCutOff: a client that keeps its connection open
// but stops reading must not hold its place and the worker's sequence
// forever. Once the socket buffers are full, a write blocks; after
// --stream-write-timeout the gateway ends the request, which cancels the
// worker's.
func TestServeStalledClientIsCutOff(t *testing.T) {
	const timeout = 500 * time.Millisecond
	worker := fastStreamWorker(t)
	prof := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(prof, []byte("name: fast\nengine: external\nurl: "+worker.URL+"\nmodel: Qwen/Qwen2.5-0.5B-Instruct\nserved_model_name: "+serveModel+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, base := startServe(t, "--profile", prof, "--stream-write-timeout", timeout.String())
	addr := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A small receive window, and no reads: the gateway's writes block once
	// its send buffer is full.
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	body := `{"prompt":"hi","max_tokens":480,"ignore_eos":true,"stream":true}`
	if _, err := fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		addr, len(body), body); err != nil {
		t.Fatal(err)
	}
	running := regexp.MustCompile(`(?m)^vllm:num_requests_running\{[^}]*\} (\S+)`)
	t0 := time.Now()
	for getStatus(t, base).Queue.InFlight != 1 || metricMatching(t, worker.URL+"/metrics", running) != 1 {
		if time.Since(t0) > 10*time.Second {
			t.Fatal("the request never reached the worker")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The buffers fill within milliseconds; the stall is cut timeout later.
	t0 = time.Now()
	for getStatus(t, base).Queue.InFlight != 0 || metricMatching(t, worker.URL+"/metrics", running) != 0 {
		if time.Since(t0) > timeout+3*time.Second {
			t.Fatal("a client that stopped reading still holds its place or the worker's sequence")
		}
		time.Sleep(10 * time.Millisecond)
	}
	finished := regexp.MustCompile(`(?m)^vllm:request_success_total\{[^}]*finished_reason="length"[^}]*\} (\S+)`)
	if v := metricMatching(t, worker.URL+"/metrics", finished); v != 0 {
		t.Fatalf("the request ran to its end (%v finished): not cut off", v)
	}
	if v := metric(t, base+"/metrics", `llmlab_request_errors_total{code="499",reason="client_stalled"}`); v != 1 {
		t.Fatalf("client_stalled errors %v, want 1", v)
	}
}

func TestServeSIGTERMDrainsInFlight(t *testing.T) {
	p, base := startServe(t, "--shutdown-timeout", "20s")
	br, pid := streamThenSIGTERM(t, p, base, 200)
	// New connections are refused while the stream goes on.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Second)
	for {
		r, err := fresh.Get(base + "/health")
		if err != nil {
			break
		}
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("gateway still accepts connections after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream cut during drain: %v", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(rest)), "data: [DONE]") || strings.Contains(string(rest), `"error"`) {
		t.Fatalf("stream did not finish cleanly: ...%s", tail(string(rest), 300))
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	waitPidGone(t, pid)
}

func TestServeBadInput(t *testing.T) {
	_, base := startServe(t, "--max-body-bytes", "2000")
	cases := []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/completions", `{"prompt": "hi"`, 400},
		{"POST", "/v1/completions", `{"prompt": 7}`, 400},
		{"POST", "/v1/chat/completions", `{"messages":"hi"}`, 400},
		{"POST", "/v1/completions", `{"prompt":"` + strings.Repeat("a", 3000) + `"}`, 413},
		{"GET", "/nope", "", 404},
		{"DELETE", "/v1/models", "", 405},
		{"POST", "/v1/completions", `{"model":"other","prompt":"hi"}`, 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.code || err != nil || e.Error.Message == "" || e.Error.Code != c.code {
			t.Errorf("%s %s %.40q: status %d %+v, want %d with an OpenAI error", c.method, c.path, c.body, resp.StatusCode, e, c.code)
		}
	}
	// The official client sees the same errors as typed API errors.
	c := client(base)
	_, err := c.Completions.New(context.Background(), oai.CompletionNewParams{
		Model: "gpt-unknown", Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("hi")},
	})
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("official client: %v", err)
	}
	if st := getStatus(t, base); st.Worker.Starts != 0 {
		t.Fatal("bad input started the worker")
	}
}

func TestServeAdminStartStop(t *testing.T) {
	_, base := startServe(t)
	if code, body := postJSON(t, base+"/admin/worker/start", ""); code != 202 {
		t.Fatalf("start: %d %s", code, body)
	}
	st := waitState(t, base, "READY", 10*time.Second)
	if code, body := postJSON(t, base+"/admin/worker/stop", ""); code != 200 || !strings.Contains(body, `"STOPPED"`) {
		t.Fatalf("stop: %d %s", code, body)
	}
	waitPidGone(t, st.Worker.PID)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// TestServeOverheadVsDirect measures, in one run, the same fast simulated
// worker (an H100, no load time) straight and through `llmlab serve`:
// added latency per request and per streamed token, and throughput ratio.
//
//	LLMLAB_BENCH=1 go test ./test/e2e -run TestServeOverheadVsDirect -v
func TestServeOverheadVsDirect(t *testing.T) {
	if os.Getenv("LLMLAB_BENCH") == "" {
		t.Skip("set LLMLAB_BENCH=1 to measure the gateway against the worker")
	}
	wport := freePort(t)
	worker := "http://127.0.0.1:" + itoa(wport)
	wp := start(t, "sim", "--port", itoa(wport), "--gpu", "h100-80gb", "--startup-seconds", "0",
		"--served-model-name", serveModel, "--max-num-seqs", "256", "--max-num-batched-tokens", "8192", "--log-level", "warn")
	waitHTTP(t, wp, worker+"/health", 10*time.Second)
	prof := filepath.Join(t.TempDir(), "ext.yaml")
	if err := os.WriteFile(prof, []byte("name: bench\nengine: external\nurl: "+worker+
		"\nmodel: Qwen/Qwen2.5-0.5B-Instruct\nserved_model_name: "+serveModel+
		"\nengine_args:\n  max_num_seqs: 256\n  max_num_batched_tokens: 8192\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, gw := startServe(t, "--profile", prof, "--log-level", "warn")

	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	do := func(base, body string) (total, ttft time.Duration, events int) {
		t0 := time.Now()
		resp, err := hc.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s", base, resp.StatusCode, b)
		}
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "data: ") {
				if events == 0 {
					ttft = time.Since(t0)
				}
				events++
			}
			if err != nil {
				break
			}
		}
		return time.Since(t0), ttft, events
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		sortDurations(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	plain := `{"model":"` + serveModel + `","prompt":"hello","max_tokens":1}`
	stream := `{"model":"` + serveModel + `","prompt":"hello","max_tokens":200,"ignore_eos":true,"stream":true}`
	for range 100 {
		do(worker, plain)
		do(gw, plain)
	}
	const n = 1000
	var dl, gl []time.Duration
	for range n { // interleaved: both see the same noise
		a, _, _ := do(worker, plain)
		b, _, _ := do(gw, plain)
		dl, gl = append(dl, a), append(gl, b)
	}
	t.Logf("request (max_tokens 1), %d sequential: direct p50 %v p99 %v | gateway p50 %v p99 %v | added p50 %v p99 %v",
		n, pct(dl, .5), pct(dl, .99), pct(gl, .5), pct(gl, .99), pct(gl, .5)-pct(dl, .5), pct(gl, .99)-pct(dl, .99))

	const ns = 40
	dl, gl = dl[:0], gl[:0]
	var dt, gt []time.Duration
	for range ns {
		a, at, _ := do(worker, stream)
		b, bt, _ := do(gw, stream)
		dl, gl, dt, gt = append(dl, a), append(gl, b), append(dt, at), append(gt, bt)
	}
	t.Logf("stream of 200 tokens, %d sequential: direct p50 %v | gateway p50 %v | added TTFT p50 %v | added per token p50 %v",
		ns, pct(dl, .5), pct(gl, .5), pct(gt, .5)-pct(dt, .5), (pct(gl, .5)-pct(dl, .5))/200)

	rate := func(base, body string, conc int, dur time.Duration) (reqs, events float64) {
		var ne atomic.Int64
		nr, _ := testsupport.ClosedLoop(context.Background(), conc, dur, func(context.Context) error {
			_, _, ev := do(base, body)
			ne.Add(int64(ev))
			return nil
		})
		return float64(nr) / dur.Seconds(), float64(ne.Load()) / dur.Seconds()
	}
	streamShort := `{"model":"` + serveModel + `","prompt":"hello","max_tokens":64,"ignore_eos":true,"stream":true}`
	for _, c := range []struct {
		name, body string
		conc       int
	}{
		{"non-stream max_tokens 1", plain, 32},
		{"non-stream 32 tokens", `{"model":"` + serveModel + `","prompt":"hello","max_tokens":32,"ignore_eos":true}`, 32},
		{"stream 64 tokens", streamShort, 32},
	} {
		dr, de := rate(worker, c.body, c.conc, 4*time.Second)
		gr, ge := rate(gw, c.body, c.conc, 4*time.Second)
		t.Logf("throughput %s, %d clients: direct %.0f req/s (%.0f events/s), gateway %.0f req/s (%.0f events/s), ratio %.3f",
			c.name, c.conc, dr, de, gr, ge, gr/dr)
	}
}

func sortDurations(s []time.Duration) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestServeWorkerDeathMidStreamEndsWithError(t *testing.T) {
	_, base := startServe(t)
	resp, err := http.Post(base+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":480,"ignore_eos":true,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(getStatus(t, base).Worker.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() { b, _ := io.ReadAll(br); done <- string(b) }()
	select {
	case rest := <-done:
		evs := strings.Split(strings.TrimSpace(rest), "\n\n")
		if len(evs) < 2 || !strings.Contains(evs[len(evs)-2], `"error"`) || evs[len(evs)-1] != "data: [DONE]" {
			t.Fatalf("stream should end with an error event and [DONE]: ...%s", tail(rest, 400))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client hangs after the worker died")
	}
	// A non-streamed request now restarts the worker and succeeds.
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("after death: %d %s", code, body)
	}
}

func TestServeSettingsPrecedence(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(prof, []byte(`name: prec
engine: sim
model: Qwen/Qwen2.5-0.5B-Instruct
gateway:
  queue_max: 5
  max_in_flight: 3
  idle_timeout: 42s
  cold_start_timeout: 9s
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LLMLAB_QUEUE_MAX", "7")                                   // env beats profile
	t.Setenv("LLMLAB_COLD_START_TIMEOUT", "")                           // empty: ignored
	t.Setenv("LLMLAB_MAX_IN_FLIGHT", "9")                               // the flag beats env
	t.Setenv("LLMLAB_IDLE_TIMEOUT", "30s")                              // the flag beats env
	_, base := startServe(t, "--profile", prof, "--max-in-flight", "4") // flags beat both; startServe sets --idle-timeout 60s
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Queue struct {
			Max         int `json:"max"`
			MaxInFlight int `json:"max_in_flight"`
		} `json:"queue"`
		Idle float64 `json:"idle_timeout_seconds"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Queue.Max != 7 || st.Queue.MaxInFlight != 4 || st.Idle != 60 {
		t.Fatalf("got queue_max %d max_in_flight %d idle %v; want 7 (env), 4 (flag), 60 (flag)", st.Queue.Max, st.Queue.MaxInFlight, st.Idle)
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--idle-timeout", "soon"},
		{"serve", "--profile", "no-such-profile"},
		{"serve", "extra-arg"},
	} {
		p := start(t, args...)
		if code := p.wait(t, 10*time.Second); code != 2 {
			t.Errorf("llmlab %v: exit %d, want 2; output:\n%s", args, code, p.out.String())
		}
	}
}

// A request held for a cold start when SIGTERM arrives is still served.
func TestServeSIGTERMWhileHeldServesIt(t *testing.T) {
	p, base := startServe(t, "--worker-startup-seconds", "1.5")
	got := make(chan string, 1)
	go func() {
		resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	waitState(t, base, "STARTING", 5*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := <-got; !strings.HasPrefix(r, "200 ") {
		t.Fatalf("held request at SIGTERM: %s", r)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// A stream still running when the shutdown grace runs out ends with an
// error event and [DONE], not a cut connection, and the gateway exits 0.
func TestServeShutdownGraceExpiryEndsStreamExplicitly(t *testing.T) {
	p, base := startServe(t, "--shutdown-timeout", "500ms")
	br, pid := streamThenSIGTERM(t, p, base, 480)
	rest, _ := io.ReadAll(br)
	evs := strings.Split(strings.TrimSpace(string(rest)), "\n\n")
	if len(evs) < 2 || !strings.Contains(evs[len(evs)-2], `"error"`) || evs[len(evs)-1] != "data: [DONE]" {
		t.Fatalf("stream should end with an error event and [DONE]: ...%s", tail(string(rest), 400))
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	waitPidGone(t, pid)
}

// procGone reports whether pid has ended: no such process, or a zombie
// that only waits for whoever inherited it to reap it.
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return !pidAlive(pid)
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// fakeVLLM behaves as vLLM does towards its children: its engine runs in a
// child process, which it stops on SIGTERM; on SIGKILL it cannot, and the
// child lives on holding the GPU (vllm-project/vllm#55510).
const fakeVLLM = `#!/bin/sh
port=""; prev=""
for a in "$@"; do [ "$prev" = "--port" ] && port="$a"; prev="$a"; done
"$FAKE_VLLM_LLMLAB" sim --port "$port" --startup-seconds 0 --served-model-name ` + serveModel + ` --log-level warn &
child=$!
echo "$child" > "$FAKE_VLLM_CHILD_PIDFILE"
trap 'kill -TERM $child; wait $child; exit 0' TERM
wait $child
`

// A gateway killed with SIGKILL runs no shutdown code; its worker, and the
// worker's own children, must still not outlive it.
func TestServeGatewaySIGKILLLeavesNoWorker(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vllm"), []byte(fakeVLLM), 0o755); err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "vllm.yaml")
	if err := os.WriteFile(prof, []byte("name: fake-vllm\nengine: vllm\nmodel: Qwen/Qwen2.5-0.5B-Instruct\nserved_model_name: "+serveModel+
		"\nengine_args:\n  max_model_len: 512\n  max_num_seqs: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "child.pid")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_VLLM_LLMLAB", binPath)
	t.Setenv("FAKE_VLLM_CHILD_PIDFILE", pidFile)
	p, base := startServe(t, "--profile", prof)
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	leader := getStatus(t, base).Worker.PID
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if leader == 0 || child == 0 || procGone(child) {
		t.Fatalf("worker %d, engine child %d not running", leader, child)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !procGone(leader) || !procGone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("after the gateway's SIGKILL: worker gone %v, its engine child gone %v", procGone(leader), procGone(child))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamThenSIGTERM opens a stream of maxTokens tokens through the gateway,
// waits for its first event, and sends the gateway SIGTERM. It returns the
// rest of the stream and the worker's pid.
func streamThenSIGTERM(t *testing.T, p *proc, base string, maxTokens int) (*bufio.Reader, int) {
	t.Helper()
	resp, err := http.Post(base+"/v1/completions", "application/json",
		strings.NewReader(fmt.Sprintf(`{"prompt":"hi","max_tokens":%d,"ignore_eos":true,"stream":true}`, maxTokens)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	pid := getStatus(t, base).Worker.PID
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return br, pid
}

// TestServeWorkerAPIKey: with VLLM_API_KEY in llmlab serve's environment
// the managed sim worker inherits it and requires it on /v1/*, as vllm
// serve does; the gateway sends it in place of the client's header, so
// clients (with or without a header of their own) are answered.
func TestServeWorkerAPIKey(t *testing.T) {
	port := freePort(t)
	base := "http://127.0.0.1:" + itoa(port)
	p := startProgram(t, []string{"VLLM_API_KEY=worker-s3cret"}, binPath, "serve", "--port", itoa(port),
		"--worker-startup-seconds", "0.3", "--log-dir", t.TempDir(), "--idle-timeout", "60s", "--stop-grace", "3s")
	waitHTTP(t, p, base+"/health", 10*time.Second)
	body := `{"prompt":"hello","max_tokens":2}`
	for _, auth := range []string{"", "Bearer client-key"} {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("client auth %q: %d %s", auth, resp.StatusCode, b)
		}
	}
	// The worker does require the key: straight to it without one is 401.
	st := getStatus(t, base)
	if st.Worker.URL == "" {
		t.Fatal("no worker URL in /status")
	}
	if code, b := postJSON(t, st.Worker.URL+"/v1/completions", body); code != http.StatusUnauthorized {
		t.Fatalf("worker without key: %d %s, want 401", code, b)
	}
}
