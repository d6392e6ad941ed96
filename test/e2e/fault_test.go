package e2e

// The fault suite: each test puts a real `llmlab serve` (and its real
// worker process) through one failure, with loopback clients, and counts
// every request's end. A request is lost when it gets no answer, a cut
// connection, a stream without [DONE], or an error that is not an
// OpenAI-shaped body (or a 429/503 without Retry-After). Every test
// requires lost = 0. Scenarios already covered elsewhere in serve_test.go:
// idle stop, stalled readers, SIGTERM drain of one stream, gateway SIGKILL.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// outcome is how one request ended.
type outcome struct {
	kind   string // ok, error (explicit), lost
	status int
	detail string
}

// exchange sends one POST and classifies its end.
func exchange(ctx context.Context, base, path, body string) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return outcome{"lost", 0, err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return outcome{"lost", 0, "no answer: " + err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return outcome{"lost", resp.StatusCode, "answer cut: " + err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Message == "" || e.Error.Code != resp.StatusCode {
			return outcome{"lost", resp.StatusCode, "not an OpenAI error: " + string(b)}
		}
		if (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "" {
			return outcome{"lost", resp.StatusCode, "no Retry-After: " + e.Error.Message}
		}
		return outcome{"error", resp.StatusCode, e.Error.Message}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		evs := strings.Split(strings.TrimSpace(string(b)), "\n\n")
		if evs[len(evs)-1] != "data: [DONE]" {
			return outcome{"lost", 200, "stream without [DONE]: " + tail(string(b), 200)}
		}
		for _, ev := range evs {
			if strings.Contains(ev, `"error"`) {
				return outcome{"error", 200, ev}
			}
		}
		return outcome{"ok", 200, ""}
	}
	var r struct {
		Choices []json.RawMessage `json:"choices"`
	}
	if json.Unmarshal(b, &r) != nil || len(r.Choices) == 0 {
		return outcome{"lost", 200, "200 without choices: " + string(b)}
	}
	return outcome{"ok", 200, ""}
}

// tally counts outcomes of concurrent requests.
type tally struct {
	mu   sync.Mutex
	all  []outcome
	wg   sync.WaitGroup
	kind map[string]int
}

func (ty *tally) fire(f func() outcome) {
	ty.wg.Add(1)
	go func() {
		defer ty.wg.Done()
		o := f()
		ty.mu.Lock()
		ty.all = append(ty.all, o)
		ty.mu.Unlock()
	}()
}

// wait waits for every request and fails the test on any lost one.
func (ty *tally) wait(t *testing.T) map[string]int {
	t.Helper()
	ty.wg.Wait()
	ty.kind = map[string]int{}
	for _, o := range ty.all {
		ty.kind[o.kind]++
		ty.kind[fmt.Sprintf("%s %d", o.kind, o.status)]++
		if o.kind == "lost" {
			t.Errorf("lost request: status %d: %s", o.status, o.detail)
		}
	}
	t.Logf("outcomes: %v", ty.kind)
	return ty.kind
}

const (
	longStream = `{"prompt":"hi","max_tokens":480,"ignore_eos":true,"stream":true}`
	longPlain  = `{"prompt":"hi","max_tokens":480,"ignore_eos":true}`
	shortPlain = `{"prompt":"hi","max_tokens":8}`
)

// waitInFlight waits until the gateway has n requests in flight.
func waitInFlight(t *testing.T, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for getStatus(t, base).Queue.InFlight < n {
		if time.Now().After(deadline) {
			t.Fatalf("never %d requests in flight", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFaultColdStartUnderLoad(t *testing.T) {
	_, base := startServe(t, "--max-in-flight", "4", "--queue-max", "64")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ty tally
	for i := range 32 {
		body := shortPlain
		if i%2 == 1 {
			body = `{"prompt":"hi","max_tokens":8,"stream":true}`
		}
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", body) })
	}
	if k := ty.wait(t); k["ok"] != 32 {
		t.Fatalf("a cold start under load served %d of 32", k["ok"])
	}
	if st := getStatus(t, base); st.Worker.Starts != 1 {
		t.Fatalf("%d starts for one cold start", st.Worker.Starts)
	}
}

func TestFaultWorkerSIGKILLMidStream(t *testing.T) {
	_, base := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("warm-up: %+v", o)
	}
	var ty tally
	for range 6 {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", longStream) })
	}
	waitInFlight(t, base, 6)
	// Mid-stream: every stream has its first event (the worker answers a
	// stream's headers with its first token).
	deadline0 := time.Now().Add(20 * time.Second)
	for metric(t, base+"/metrics", `llmlab_time_to_first_token_seconds_count{route="/v1/completions"}`) < 6 {
		if time.Now().After(deadline0) {
			t.Fatal("streams never began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(getStatus(t, base).Worker.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if k := ty.wait(t); k["error 200"]+k["ok"] != 6 || k["error 200"] == 0 {
		t.Fatalf("streams at the kill: %v, want each to end with an error event (or complete)", k)
	}
	// The record says what happened, not the worker's last log line.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := getStatus(t, base)
		if st.Worker.LastError == "worker killed by signal 9 (SIGKILL)" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last error %q", st.Worker.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("after the kill: %+v", o)
	}
}

func TestFaultOOMAtStart(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "oom.yaml")
	writeProfile(t, prof, `name: oom
engine: sim
model: Qwen/Qwen2.5-0.5B-Instruct
served_model_name: qwen2.5-0.5b-instruct
engine_args:
  max_model_len: 512
  gpu_memory_utilization: 0.35
  max_num_seqs: 256
  max_num_batched_tokens: 16384
`)
	_, base := startServe(t, "--profile", prof, "--restart-backoff", "30s", "--max-restart-backoff", "30s")
	if code, _, _ := get(t, base+"/ready"); code != 200 {
		t.Fatalf("/ready before any start: %d; STOPPED is ready", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ty tally
	for range 6 {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", shortPlain) })
	}
	k := ty.wait(t)
	if k["error 503"] != 6 {
		t.Fatalf("held through a failed start: %v, want six 503s with Retry-After", k)
	}
	for _, o := range ty.all {
		if !strings.Contains(o.detail, "No available memory for the cache blocks") {
			t.Errorf("503 does not quote the worker's error: %s", o.detail)
		}
	}
	if code, h, b := get(t, base+"/ready"); code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("/ready while FAILED: %d %s", code, b)
	}
	if code, _, _ := get(t, base+"/health"); code != 200 {
		t.Fatalf("/health (liveness) while FAILED: %d", code)
	}
	if st := getStatus(t, base); st.Worker.Starts > 2 {
		t.Fatalf("%d starts inside a 30s back-off", st.Worker.Starts)
	}
}

// crashingVLLM stands in for a vLLM that dies at once on start.
const crashingVLLM = `#!/bin/sh
echo "INFO Starting to load model"
echo "RuntimeError: CUDA error: no kernel image is available for execution on the device" >&2
exit 1
`

func TestFaultCrashLoop(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vllm"), []byte(crashingVLLM), 0o755); err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "crash.yaml")
	writeProfile(t, prof, "name: crash\nengine: vllm\nmodel: Qwen/Qwen2.5-0.5B-Instruct\nserved_model_name: "+serveModel+"\n")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	_, base := startServe(t, "--profile", prof, "--restart-backoff", "200ms", "--max-restart-backoff", "800ms")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ty tally
	// Sequential demand for 3 s: each request may trigger a start.
	for t0 := time.Now(); time.Since(t0) < 3*time.Second; {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", shortPlain) })
		ty.wg.Wait()
		time.Sleep(50 * time.Millisecond)
	}
	k := ty.wait(t)
	if k["error 503"] != len(ty.all) {
		t.Fatalf("crash loop: %v, want only 503s", k)
	}
	for _, o := range ty.all {
		if !strings.Contains(o.detail, "CUDA error") || !strings.Contains(o.detail, "exited with status 1") {
			t.Errorf("503 does not say how the worker failed: %s", o.detail)
		}
	}
	st := getStatus(t, base)
	// Back-off 0, 0.2, 0.4, 0.8, 0.8 … s: about six starts fit in 3 s.
	if st.Worker.Starts < 2 || st.Worker.Starts > 8 {
		t.Fatalf("%d starts in 3 s of demand with a 200ms..800ms back-off", st.Worker.Starts)
	}
	if code, _, _ := get(t, base+"/ready"); code != 503 {
		t.Fatalf("/ready in a crash loop: %d", code)
	}
}

func TestFaultGatewaySIGTERMUnderLoad(t *testing.T) {
	p, base := startServe(t, "--shutdown-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("warm-up: %+v", o)
	}
	var ty tally
	for i := range 12 {
		body := longStream
		if i%3 == 0 {
			body = longPlain
		}
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", body) })
	}
	waitInFlight(t, base, 12)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	k := ty.wait(t)
	if k["ok"]+k["error 200"]+k["error 503"] != 12 {
		t.Fatalf("requests at SIGTERM: %v", k)
	}
	for _, o := range ty.all {
		if o.kind == "error" && !strings.Contains(o.detail, "shutting down") {
			t.Errorf("a request cut by the shutdown should say so: %s", o.detail)
		}
		if o.kind == "error" && o.status == 200 && !strings.Contains(o.detail, "ServiceUnavailableError") {
			t.Errorf("a stream cut by the shutdown should carry a 503-typed error: %s", o.detail)
		}
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestFaultClientDisconnects(t *testing.T) {
	_, base := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("warm-up: %+v", o)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			req, _ := http.NewRequestWithContext(rctx, http.MethodPost, base+"/v1/completions", strings.NewReader(longStream))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = bufio.NewReader(resp.Body).ReadString('\n')
			rcancel() // leave mid-stream
			resp.Body.Close()
		}()
	}
	wg.Wait()
	worker := getStatus(t, base).Worker.URL + "/metrics"
	running := regexp.MustCompile(`(?m)^vllm:num_requests_running\{[^}]*\} (\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for getStatus(t, base).Queue.InFlight != 0 || metricMatching(t, worker, running) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("requests of clients that left still hold places or the worker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("after the disconnects: %+v", o)
	}
}

// Three times the gateway's capacity (in flight + queue) at once: each
// request is served or refused with 429 + Retry-After; none is lost.
func TestFaultOverload3x(t *testing.T) {
	_, base := startServe(t, "--max-in-flight", "2", "--queue-max", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("warm-up: %+v", o)
	}
	var ty tally
	for range 12 {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", longPlain) })
	}
	k := ty.wait(t)
	if k["ok"]+k["error 429"] != 12 || k["ok"] < 4 || k["error 429"] == 0 {
		t.Fatalf("3x overload: %v, want only 200s (at least the 4 places) and 429s", k)
	}
}

// Slow bodies and silent connections are cut at their deadlines with an
// explicit answer where a request began; connections past the cap get an
// immediate 503; afterwards the gateway serves normally. A body declared
// too large is refused from its headers, by the gateway and by the worker.
func TestFaultSlowBodyAndIdleConnections(t *testing.T) {
	_, base := startServe(t, "--body-read-timeout", "2s", "--read-header-timeout", "2s", "--idle-conn-timeout", "2s", "--max-conns", "16", "--max-body-bytes", "4096")
	addr := strings.TrimPrefix(base, "http://")
	type conn struct {
		c    net.Conn
		line chan string
	}
	readLine := func(c net.Conn) chan string {
		ch := make(chan string, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			l, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				l = "closed: " + err.Error()
			}
			ch <- strings.TrimSpace(l)
		}()
		return ch
	}
	var slow, idle []conn
	stop := make(chan struct{})
	defer close(stop)
	for range 12 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", addr)
		go func() { // one byte every 100 ms
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		slow = append(slow, conn{c, readLine(c)})
	}
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i < 2 { // silent: never sends a byte
			idle = append(idle, conn{c, readLine(c)})
			continue
		}
		// Keep-alive: one request answered, then idle. Its answer also
		// proves that every connection dialled before it was accepted
		// (one accept loop, in order): all 16 places are taken.
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch := make(chan string, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := br.ReadByte(); err != nil {
				ch <- "closed: " + err.Error()
				return
			}
			ch <- "unexpected data"
		}()
		idle = append(idle, conn{c, ch})
	}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		if l := <-readLine(c); !strings.Contains(l, " 503 ") {
			t.Errorf("past max_conns: %q, want an immediate 503", l)
		}
		c.Close()
	}
	for _, s := range slow {
		if l := <-s.line; !strings.Contains(l, " 408 ") {
			t.Errorf("slow body: %q, want 408", l)
		}
	}
	for _, s := range idle {
		if l := <-s.line; !strings.HasPrefix(l, "closed") {
			t.Errorf("silent or idle connection: %q, want closed", l)
		}
	}
	if code, _, b := get(t, base+"/health"); code != 200 {
		t.Fatalf("after the slow clients: %d %s", code, b)
	}
	// 413 from the headers alone, gateway and worker.
	if o := exchange(context.Background(), base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("%+v", o)
	}
	for _, target := range []string{addr, strings.TrimPrefix(getStatus(t, base).Worker.URL, "http://")} {
		c, err := net.Dial("tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n", target)
		if l := <-readLine(c); !strings.Contains(l, " 413 ") {
			t.Errorf("%s: declared 50 MB body: %q, want 413 before any body byte", target, l)
		}
		c.Close()
	}
}

func TestFaultCrossOriginAdminPOST(t *testing.T) {
	_, base := startServe(t)
	for _, hdr := range []map[string]string{
		{"Origin": "http://evil.example", "Content-Type": "text/plain"},
		{"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
		{"Origin": base, "Content-Type": "text/plain"},
	} {
		req, _ := http.NewRequest(http.MethodPost, base+"/admin/worker/start", strings.NewReader("x"))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 && resp.StatusCode != 415 {
			t.Errorf("%v: %d, want 403 or 415", hdr, resp.StatusCode)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if st := getStatus(t, base); st.Worker.State != "STOPPED" || st.Worker.Starts != 0 {
		t.Fatalf("a cross-site POST started the worker: %+v", st.Worker)
	}
}

func TestServeAPIKey(t *testing.T) {
	_, base := startServe(t, "--api-key", "k1", "--api-key", "k2")
	ctx := context.Background()
	for key, want := range map[string]int{"k2": 200, "nope": 401} {
		c := oai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
		_, err := c.Completions.New(ctx, oai.CompletionNewParams{
			Model: serveModel, Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("hi")}, MaxTokens: oai.Int(2),
		})
		var apiErr *oai.Error
		switch {
		case want == 200 && err != nil:
			t.Fatalf("key %s: %v", key, err)
		case want != 200 && (!errors.As(err, &apiErr) || apiErr.StatusCode != want):
			t.Fatalf("key %s: %v, want %d", key, err, want)
		}
	}
	// llmlab bench sends the key (its model discovery needs it too).
	run := func(extra ...string) int {
		args := append([]string{"bench", "--url", base, "--rate", "4", "--duration", "1s", "--ramp", "0s",
			"--input-len", "8", "--output-len", "4", "--no-save", "--quiet"}, extra...)
		return start(t, args...).wait(t, 60*time.Second)
	}
	if code := run("--api-key", "k1"); code != 0 {
		t.Fatalf("bench with the key: exit %d", code)
	}
	if code := run(); code == 0 {
		t.Fatal("bench without the key succeeded against a gateway that needs one")
	}
}

func writeProfile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A profile the sim cannot model fails `serve` at start, not on the first
// request.
func TestServeUnknownSimSpecExits2(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "bad.yaml")
	writeProfile(t, prof, "name: bad\nengine: sim\nmodel: Qwen/Qwen2.5-0.5B-Instruct\nsim:\n  gpu: gtx-9999\n  model_spec: qwen2.5-0.5b\n")
	p := start(t, "serve", "--port", itoa(freePort(t)), "--profile", prof)
	if code := p.wait(t, 10*time.Second); code != 2 || !strings.Contains(p.out.String(), "unknown GPU") {
		t.Fatalf("exit %d, want 2 naming the unknown GPU:\n%s", code, p.out.String())
	}
}

// Without --log-dir the worker logs go to a private per-run directory,
// removed on exit unless --keep-logs.
func TestServeLogDirRemovedOnExit(t *testing.T) {
	for _, keep := range []bool{false, true} {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		port := freePort(t)
		base := "http://127.0.0.1:" + itoa(port)
		args := []string{"serve", "--port", itoa(port), "--worker-startup-seconds", "0"}
		if keep {
			args = append(args, "--keep-logs")
		}
		p := start(t, args...)
		waitHTTP(t, p, base+"/health", 10*time.Second)
		if o := exchange(context.Background(), base, "/v1/completions", shortPlain); o.kind != "ok" {
			t.Fatalf("%+v", o)
		}
		dirs, _ := filepath.Glob(filepath.Join(tmp, "llmlab-worker-*"))
		if len(dirs) != 1 {
			t.Fatalf("log dirs %v", dirs)
		}
		st, err := os.Stat(filepath.Join(dirs[0], "worker.log"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("worker.log: %v %v, want 0600", st, err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Fatalf("exit %d", code)
		}
		_, err = os.Stat(dirs[0])
		if keep != (err == nil) {
			t.Fatalf("keep %v: log dir after exit: %v", keep, err)
		}
	}
}
