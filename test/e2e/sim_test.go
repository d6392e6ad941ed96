package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// simServer is a running `llmlab sim` and its base URL.
type simServer struct {
	p   *proc
	url string
	oai oai.Client
}

// startSimServer runs `llmlab sim` on a free port with the given extra
// flags and waits until /health answers 200.
func startSimServer(t *testing.T, args ...string) *simServer {
	t.Helper()
	port := freePort(t)
	p := start(t, append([]string{"sim", "--port", itoa(port)}, args...)...)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, p, url+"/health", 60*time.Second)
	return &simServer{p: p, url: url, oai: oai.NewClient(
		option.WithBaseURL(url+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))}
}

// simMetric reads the single series of a metric family from /metrics.
func simMetric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

const simModel = "Qwen/Qwen2.5-0.5B-Instruct"

// TestSimServeOpenAIClient drives `llmlab sim` with the official OpenAI Go
// client: completions and chat, whole and streamed, must agree.
func TestSimServeOpenAIClient(t *testing.T) {
	s := startSimServer(t, "--startup-seconds", "0")
	ctx := context.Background()
	ignoreEOS := option.WithJSONSet("ignore_eos", true)

	params := oai.CompletionNewParams{
		Model:       oai.CompletionNewParamsModel(simModel),
		Prompt:      oai.CompletionNewParamsPromptUnion{OfString: oai.String("Summarise the incident in two sentences.")},
		MaxTokens:   oai.Int(24),
		Temperature: oai.Float(0),
	}
	whole, err := s.oai.Completions.New(ctx, params, ignoreEOS)
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	if len(whole.Choices) != 1 || whole.Choices[0].FinishReason != "length" || whole.Usage.CompletionTokens != 24 || whole.Usage.PromptTokens == 0 {
		t.Fatalf("completion: %s", whole.RawJSON())
	}
	params.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	stream := s.oai.Completions.NewStreaming(ctx, params, ignoreEOS)
	var text string
	chunks := 0
	var usage oai.CompletionUsage
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) == 0 {
			usage = c.Usage
			continue
		}
		chunks++
		text += c.Choices[0].Text
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if text != whole.Choices[0].Text || chunks != 24 || usage.TotalTokens != whole.Usage.TotalTokens {
		t.Fatalf("stream (%d chunks, usage %+v):\n%q\nwhole:\n%q", chunks, usage, text, whole.Choices[0].Text)
	}

	// Token-id prompts count exactly.
	ids, err := s.oai.Completions.New(ctx, oai.CompletionNewParams{
		Model:     oai.CompletionNewParamsModel(simModel),
		Prompt:    oai.CompletionNewParamsPromptUnion{OfArrayOfTokens: make([]int64, 200)},
		MaxTokens: oai.Int(5),
	}, ignoreEOS)
	if err != nil || ids.Usage.PromptTokens != 200 || ids.Usage.CompletionTokens != 5 {
		t.Fatalf("token-id prompt: %v %+v", err, ids)
	}

	chat := oai.ChatCompletionNewParams{
		Model:               simModel,
		Messages:            []oai.ChatCompletionMessageParamUnion{oai.SystemMessage("Be brief."), oai.UserMessage("Why did p95 rise?")},
		MaxCompletionTokens: oai.Int(16),
		Temperature:         oai.Float(0),
	}
	cw, err := s.oai.Chat.Completions.New(ctx, chat, ignoreEOS)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if cw.Choices[0].Message.Content == "" || cw.Choices[0].Message.Role != "assistant" || cw.Usage.CompletionTokens != 16 {
		t.Fatalf("chat: %s", cw.RawJSON())
	}
	chat.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	cs := s.oai.Chat.Completions.NewStreaming(ctx, chat, ignoreEOS)
	acc := oai.ChatCompletionAccumulator{}
	for cs.Next() {
		acc.AddChunk(cs.Current())
	}
	if err := cs.Err(); err != nil {
		t.Fatalf("chat stream: %v", err)
	}
	if acc.Choices[0].Message.Content != cw.Choices[0].Message.Content || acc.Usage.CompletionTokens != 16 {
		t.Fatalf("chat stream %q (usage %+v), whole %q", acc.Choices[0].Message.Content, acc.Usage, cw.Choices[0].Message.Content)
	}

	models, err := s.oai.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != simModel {
		t.Fatalf("models: %v %+v", err, models)
	}
}

// TestSimServeBadInputs checks vLLM's error shapes through the client and
// raw HTTP.
func TestSimServeBadInputs(t *testing.T) {
	s := startSimServer(t, "--startup-seconds", "0")
	ctx := context.Background()
	apiErr := func(err error) *oai.Error {
		t.Helper()
		var e *oai.Error
		if !errors.As(err, &e) {
			t.Fatalf("want an API error, got %v", err)
		}
		return e
	}
	_, err := s.oai.Completions.New(ctx, oai.CompletionNewParams{
		Model: "no-such-model", Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("hi")},
	})
	if e := apiErr(err); e.StatusCode != 404 || e.Message != "The model `no-such-model` does not exist." {
		t.Fatalf("unknown model: %d %q", e.StatusCode, e.Message)
	}
	_, err = s.oai.Completions.New(ctx, oai.CompletionNewParams{
		Model: simModel, Prompt: oai.CompletionNewParamsPromptUnion{OfArrayOfTokens: make([]int64, 600)},
	})
	if e := apiErr(err); e.StatusCode != 400 || !strings.HasPrefix(e.Message,
		"This model's maximum context length is 512 tokens. However, your request has 600 input tokens.") {
		t.Fatalf("long prompt: %d %q", e.StatusCode, e.Message)
	}
	_, err = s.oai.Completions.New(ctx, oai.CompletionNewParams{
		Model: simModel, Prompt: oai.CompletionNewParamsPromptUnion{OfArrayOfTokens: make([]int64, 100)}, MaxTokens: oai.Int(500),
	})
	if e := apiErr(err); e.StatusCode != 400 || !strings.Contains(e.Message, "you requested 600 tokens (100 in the messages, 500 in the completion)") {
		t.Fatalf("prompt + max_tokens: %d %q", e.StatusCode, e.Message)
	}
	_, err = s.oai.Chat.Completions.New(ctx, oai.ChatCompletionNewParams{
		Model: simModel, Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")}, N: oai.Int(3),
	})
	if e := apiErr(err); e.StatusCode != 400 || !strings.Contains(e.Message, "n > 1") {
		t.Fatalf("n=3: %d %q", e.StatusCode, e.Message)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/completions", `{"prompt": "hi"`, 400},
		{"POST", "/v1/completions", `{"prompt": "hi", "max_tokens": "x"}`, 400},
		{"POST", "/v1/completions", `{"prompt": "hi", "max_tokens": -1}`, 400},
		{"POST", "/v1/completions", `{"prompt": ""}`, 400},
		{"POST", "/v1/chat/completions", `{"messages": "hi"}`, 400},
		{"GET", "/v1/completions", ``, 405},
		{"GET", "/nope", ``, 404},
	} {
		req, _ := http.NewRequest(c.method, s.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), `"error"`) || !strings.Contains(string(b), `"message"`) {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, resp.StatusCode, b)
		}
	}
	// Still serving after all that.
	if _, err := s.oai.Completions.New(ctx, oai.CompletionNewParams{
		Model: simModel, Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("ok?")}, MaxTokens: oai.Int(2),
	}); err != nil {
		t.Fatalf("after bad inputs: %v", err)
	}
}

// TestSimServeClientDisconnect: a client that cancels mid-stream frees its
// request's KV blocks at once.
func TestSimServeClientDisconnect(t *testing.T) {
	s := startSimServer(t, "--startup-seconds", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := s.oai.Completions.NewStreaming(ctx, oai.CompletionNewParams{
		Model: simModel, Prompt: oai.CompletionNewParamsPromptUnion{OfArrayOfTokens: make([]int64, 200)}, MaxTokens: oai.Int(300),
	}, option.WithJSONSet("ignore_eos", true))
	for i := 0; i < 3; i++ {
		if !stream.Next() {
			t.Fatalf("stream ended early: %v", stream.Err())
		}
	}
	if r, kv := simMetric(t, s.url, "vllm:num_requests_running"), simMetric(t, s.url, "vllm:kv_cache_usage_perc"); r != 1 || kv <= 0 {
		t.Fatalf("while streaming: running %v kv %v", r, kv)
	}
	cancel()
	stream.Close()
	deadline := time.Now().Add(10 * time.Second)
	for simMetric(t, s.url, "vllm:num_requests_running") != 0 || simMetric(t, s.url, "vllm:kv_cache_usage_perc") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("request still holds KV cache after its client went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g := simMetric(t, s.url, "vllm:generation_tokens_total"); g >= 300 {
		t.Fatalf("generation went on after disconnect: %v tokens", g)
	}
}

// TestSimServeStartupRefusesConnections: while the model "loads" the port
// refuses TCP, as vLLM's does; then it serves, logs vLLM's lines, and exits
// 0 on SIGINT.
func TestSimServeStartupRefusesConnections(t *testing.T) {
	port := freePort(t)
	began := time.Now()
	p := start(t, "sim", "--port", itoa(port), "--startup-seconds", "1.5")
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	refused := 0
	for time.Since(began) < 700*time.Millisecond {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("port accepted a connection %v after start, while loading", time.Since(began))
		}
		refused++
		time.Sleep(50 * time.Millisecond)
	}
	if refused == 0 {
		t.Fatal("never probed the port")
	}
	waitHTTP(t, p, "http://"+addr+"/health", 30*time.Second)
	if time.Since(began) < 1500*time.Millisecond {
		t.Fatalf("ready after %v, before the 1.5 s start-up", time.Since(began))
	}
	out := p.out.String()
	for _, want := range []string{"GPU KV cache size: ", " tokens", "Maximum concurrency for 512 tokens per request: ", "Starting vLLM API server on http://"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGINT:\n%s", code, p.out.String())
	}
}

// TestSimServeBusyPortFailsAtOnce: vLLM binds its socket before loading the
// model, so a port in use fails within moments with Python's OSError text,
// not after the ~34 s modelled start-up (the default here).
func TestSimServeBusyPortFailsAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the early bind is Linux-only; elsewhere the port is bound after the start-up")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	began := time.Now()
	p := start(t, "sim", "--port", itoa(busy.Addr().(*net.TCPAddr).Port))
	if code := p.wait(t, 15*time.Second); code == 0 {
		t.Fatalf("exit code 0 on a busy port:\n%s", p.out.String())
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("busy port reported after %v", took)
	}
	if out := p.out.String(); !strings.Contains(out, "[Errno 98] Address already in use") {
		t.Fatalf("output lacks vLLM's error:\n%s", out)
	}
}

// TestSimServeOOMExitsNonZero: a configuration whose activation peak
// leaves no KV cache on the default 4 GB card exits 1 with vLLM's text.
func TestSimServeOOMExitsNonZero(t *testing.T) {
	p := start(t, "sim", "--port", itoa(freePort(t)), "--startup-seconds", "0",
		"--max-num-seqs", "256", "--max-num-batched-tokens", "16384", "--gpu-memory-utilization", "0.35")
	if code := p.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("exit code 0:\n%s", p.out.String())
	}
	out := p.out.String()
	if !strings.Contains(out, "ValueError: ") ||
		!(strings.Contains(out, "No available memory for the cache blocks") || strings.Contains(out, "larger than the available KV cache memory")) {
		t.Fatalf("output lacks vLLM's error:\n%s", out)
	}
}
