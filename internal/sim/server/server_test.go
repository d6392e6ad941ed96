package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
)

type obj = map[string]any

// streamedCompletion joins a completion stream's text and returns its
// finish reason and the usage chunk (nil without include_usage).
func streamedCompletion(t *testing.T, evs []streamEvent) (text, reason string, tokens int, usage *openai.Usage) {
	t.Helper()
	for i, ev := range evs {
		c := decode[openai.CompletionResponse](t, ev.data)
		if c.Object != openai.ObjectTextCompletion {
			t.Fatalf("event %d: object %q", i, c.Object)
		}
		if len(c.Choices) == 0 {
			if i != len(evs)-1 || c.Usage == nil {
				t.Fatalf("event %d: a chunk without choices must be the last, with usage: %s", i, ev.data)
			}
			usage = c.Usage
			continue
		}
		if c.Usage != nil {
			t.Fatalf("event %d: usage on a token chunk", i)
		}
		text += c.Choices[0].Text
		tokens++
		if fr := c.Choices[0].FinishReason; fr != nil {
			if reason != "" {
				t.Fatalf("two finish reasons")
			}
			reason = *fr
		}
	}
	return text, reason, tokens, usage
}

func TestCompletionStreamMatchesWhole(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	for _, ignoreEOS := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignore_eos=%v", ignoreEOS), func(t *testing.T) {
			req := obj{"model": testModel, "prompt": "Explain KV caches in one paragraph.",
				"max_tokens": 300, "temperature": 0, "ignore_eos": ignoreEOS}
			code, body := ts.post(t, "/v1/completions", req)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			whole := decode[openai.CompletionResponse](t, body)
			if whole.Object != openai.ObjectTextCompletion || !strings.HasPrefix(whole.ID, "cmpl-") || whole.Model != testModel {
				t.Fatalf("bad envelope: %s", body)
			}
			u := whole.Usage
			wantPrompt := tokenizer.Count("Explain KV caches in one paragraph.")
			if u == nil || u.PromptTokens != wantPrompt || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Fatalf("usage %+v, want prompt %d", u, wantPrompt)
			}
			wantReason := openai.FinishStop
			if ignoreEOS {
				wantReason = openai.FinishLength
				if u.CompletionTokens != 300 {
					t.Fatalf("ignore_eos produced %d tokens, want 300", u.CompletionTokens)
				}
			} else if u.CompletionTokens >= 300 || u.CompletionTokens < 8 {
				t.Fatalf("simulated EOS at %d tokens, want within [8, 300)", u.CompletionTokens)
			}
			if got := *whole.Choices[0].FinishReason; got != wantReason {
				t.Fatalf("finish_reason %q, want %q", got, wantReason)
			}

			req["stream"] = true
			req["stream_options"] = obj{"include_usage": true}
			text, reason, n, su := streamedCompletion(t, ts.postStream(t, "/v1/completions", req))
			if text != whole.Choices[0].Text || reason != wantReason {
				t.Fatalf("stream differs:\n%q %s\n%q %s", text, reason, whole.Choices[0].Text, wantReason)
			}
			if n != u.CompletionTokens {
				t.Fatalf("%d token chunks, want one per token (%d)", n, u.CompletionTokens)
			}
			if su == nil || *su != *u {
				t.Fatalf("stream usage %+v, want %+v", su, u)
			}
		})
	}
}

func TestStreamWithoutUsageHasNoUsageChunk(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	evs := ts.postStream(t, "/v1/completions", obj{"prompt": "hi", "max_tokens": 5, "ignore_eos": true, "stream": true})
	_, reason, n, u := streamedCompletion(t, evs)
	if n != 5 || reason != openai.FinishLength || u != nil {
		t.Fatalf("got %d tokens, reason %q, usage %v", n, reason, u)
	}
}

func TestTemperatureZeroIsDeterministic(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	text := func(prompt string, extra obj) string {
		req := obj{"prompt": prompt, "max_tokens": 40}
		for k, v := range extra {
			req[k] = v
		}
		code, body := ts.post(t, "/v1/completions", req)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		return decode[openai.CompletionResponse](t, body).Choices[0].Text
	}
	greedy := obj{"temperature": 0}
	a, b := text("The queue grew because", greedy), text("The queue grew because", greedy)
	if a != b || a == "" {
		t.Fatalf("temperature 0 differs between calls: %q vs %q", a, b)
	}
	if c := text("A different prompt", greedy); c == a {
		t.Fatalf("different prompts gave the same text %q", c)
	}
	seeded := obj{"temperature": 0.8, "seed": 7}
	if x, y := text("The queue grew because", seeded), text("The queue grew because", seeded); x != y {
		t.Fatalf("same seed differs: %q vs %q", x, y)
	}
	// Unseeded sampling (vLLM's default temperature 1.0) varies.
	if x, y := text("The queue grew because", nil), text("The queue grew because", nil); x == y {
		t.Fatalf("unseeded sampling repeated itself: %q", x)
	}
	// A fresh server with the same seed gives the same greedy text.
	ts2 := startServer(t, testConfig(), nil)
	code, body := ts2.post(t, "/v1/completions", obj{"prompt": "The queue grew because", "max_tokens": 40, "temperature": 0})
	if code != http.StatusOK || decode[openai.CompletionResponse](t, body).Choices[0].Text != a {
		t.Fatalf("another server gave a different greedy text: %s", body)
	}
}

func TestTokenIDPromptCountsExactly(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	ids := make([]int, 200)
	for i := range ids {
		ids[i] = 1000 + i
	}
	code, body := ts.post(t, "/v1/completions", obj{"prompt": ids, "max_tokens": 200, "ignore_eos": true, "temperature": 0})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	r := decode[openai.CompletionResponse](t, body)
	if *r.Usage != (openai.Usage{PromptTokens: 200, CompletionTokens: 200, TotalTokens: 400}) {
		t.Fatalf("usage %+v", r.Usage)
	}
	// A list holding one token list is one prompt too.
	code, body = ts.post(t, "/v1/completions", obj{"prompt": [][]int{ids[:10]}, "max_tokens": 3, "ignore_eos": true})
	if code != http.StatusOK || decode[openai.CompletionResponse](t, body).Usage.PromptTokens != 10 {
		t.Fatalf("nested token list: %d %s", code, body)
	}
}

func TestDefaultMaxTokensIsRestOfContext(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	ids := make([]int, 500)
	code, body := ts.post(t, "/v1/completions", obj{"prompt": ids, "ignore_eos": true})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if u := decode[openai.CompletionResponse](t, body).Usage; u.CompletionTokens != 12 {
		t.Fatalf("completion tokens %d, want max_model_len-prompt = 12", u.CompletionTokens)
	}
}

func TestMinTokensDelaysEOS(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	code, body := ts.post(t, "/v1/completions", obj{"prompt": "x", "max_tokens": 400, "min_tokens": 300, "temperature": 0})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	r := decode[openai.CompletionResponse](t, body)
	// The natural length is at most 263 < 300, so EOS comes right at min_tokens.
	if r.Usage.CompletionTokens != 300 || *r.Choices[0].FinishReason != openai.FinishStop {
		t.Fatalf("got %d tokens (%s), want 300 (stop)", r.Usage.CompletionTokens, *r.Choices[0].FinishReason)
	}
}

func TestChatStreamMatchesWhole(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	msgs := []obj{{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Why did p95 rise?"}}
	req := obj{"model": testModel, "messages": msgs, "max_completion_tokens": 50, "max_tokens": 5, "temperature": 0, "ignore_eos": true}
	code, body := ts.post(t, "/v1/chat/completions", req)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	whole := decode[openai.ChatCompletionResponse](t, body)
	wantPrompt := tokenizer.Count(tokenizer.RenderChat([]tokenizer.ChatTurn{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Why did p95 rise?"}}))
	if whole.Object != openai.ObjectChatCompletion || !strings.HasPrefix(whole.ID, "chatcmpl-") ||
		whole.Choices[0].Message.Role != "assistant" || *whole.Usage != (openai.Usage{PromptTokens: wantPrompt, CompletionTokens: 50, TotalTokens: wantPrompt + 50}) {
		t.Fatalf("bad response (want prompt %d, 50 completion tokens from max_completion_tokens): %s", wantPrompt, body)
	}
	content := whole.Choices[0].Message.Content
	if strings.HasPrefix(content, " ") || content == "" {
		t.Fatalf("chat content %q", content)
	}

	req["stream"] = true
	req["stream_options"] = obj{"include_usage": true}
	evs := ts.postStream(t, "/v1/chat/completions", req)
	var got string
	var reason string
	var usage *openai.Usage
	for i, ev := range evs {
		c := decode[openai.ChatCompletionChunk](t, ev.data)
		if c.Object != openai.ObjectChatChunk || c.ID == "" {
			t.Fatalf("event %d: %s", i, ev.data)
		}
		if len(c.Choices) == 0 {
			usage = c.Usage
			continue
		}
		// As vLLM: the first chunk only opens the assistant message (role,
		// empty content, no finish reason); token chunks carry no role.
		d := c.Choices[0].Delta
		if i == 0 {
			if d.Role != "assistant" || d.Content == nil || *d.Content != "" || c.Choices[0].FinishReason != nil {
				t.Fatalf("first event is not the role chunk: %s", ev.data)
			}
			continue
		}
		if d.Role != "" || d.Content == nil || *d.Content == "" {
			t.Fatalf("event %d: token chunk must carry content only: %s", i, ev.data)
		}
		if c.Choices[0].Delta.Content != nil {
			got += *c.Choices[0].Delta.Content
		}
		if c.Choices[0].FinishReason != nil {
			reason = *c.Choices[0].FinishReason
		}
	}
	if got != content || reason != openai.FinishLength || usage == nil || *usage != *whole.Usage {
		t.Fatalf("stream: reason %q usage %+v\n%q\n%q", reason, usage, got, content)
	}
	if len(evs) != 52 {
		t.Fatalf("%d events, want role chunk + 50 token chunks + usage", len(evs))
	}
}

func TestChatContentParts(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	code, body := ts.post(t, "/v1/chat/completions", obj{"messages": []obj{{"role": "user",
		"content": []obj{{"type": "text", "text": "Why did "}, {"type": "text", "text": "p95 rise?"}}}}, "max_tokens": 3})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	want := tokenizer.Count(tokenizer.RenderChat([]tokenizer.ChatTurn{{Role: "user", Content: "Why did p95 rise?"}}))
	if got := decode[openai.ChatCompletionResponse](t, body).Usage.PromptTokens; got != want {
		t.Fatalf("prompt tokens %d, want %d", got, want)
	}
}

func TestErrors(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	long := strings.TrimSpace(strings.Repeat("word ", 600)) // 600 tokens
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"prompt too long", "POST", "/v1/completions", `{"prompt":` + jsonStr(long) + `}`, 400,
			"This model's maximum context length is 512 tokens. However, your request has 600 input tokens. Please reduce the length of the input messages."},
		{"prompt plus max_tokens too long", "POST", "/v1/completions", `{"prompt":[1,2,3,4,5,6,7,8,9,10],"max_tokens":510}`, 400,
			"This model's maximum context length is 512 tokens. However, you requested 520 tokens (10 in the messages, 510 in the completion). Please reduce the length of the messages or completion."},
		{"chat too long", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":600}`, 400,
			"However, you requested"},
		{"malformed JSON", "POST", "/v1/completions", `{"prompt": "hi",`, 400, "Invalid JSON"},
		{"not an object", "POST", "/v1/completions", `[1,2]`, 400, "must be a JSON object"},
		{"empty body", "POST", "/v1/completions", ``, 400, "empty"},
		{"max_tokens wrong type", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":"x"}`, 400, "max_tokens"},
		{"stream wrong type", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}`, 400, "stream"},
		{"max_tokens zero", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens must be at least 1, got 0."},
		{"max_tokens negative", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":-3}`, 400, "max_tokens must be at least 1, got -3."},
		// prompt + max_tokens must not overflow into a small sum that passes
		// the context check (the request would then never end).
		{"max_tokens huge", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":9223372036854775807,"ignore_eos":true}`, 400,
			"However, you requested 9223372036854775808 tokens (1 in the messages, 9223372036854775807 in the completion)."},
		{"unknown model", "POST", "/v1/completions", `{"model":"gpt-9","prompt":"hi"}`, 404, "The model `gpt-9` does not exist."},
		{"unknown model chat", "POST", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "The model `gpt-9` does not exist."},
		{"empty prompt", "POST", "/v1/completions", `{"prompt":""}`, 400, "The decoder prompt cannot be empty"},
		{"empty token prompt", "POST", "/v1/completions", `{"prompt":[]}`, 400, "The decoder prompt cannot be empty"},
		{"missing prompt", "POST", "/v1/completions", `{"max_tokens":3}`, 400, "'prompt' is required"},
		{"prompt wrong type", "POST", "/v1/completions", `{"prompt":{"a":1}}`, 400, "prompt"},
		{"negative token id", "POST", "/v1/completions", `{"prompt":[1,-2]}`, 400, "out of vocabulary"},
		{"token id past the vocabulary", "POST", "/v1/completions", `{"prompt":[1,151936]}`, 400, "Token id 151936 is out of vocabulary"},
		{"batch of prompts", "POST", "/v1/completions", `{"prompt":["a","b"]}`, 400, "Batched prompts are not supported"},
		{"batch of token lists", "POST", "/v1/completions", `{"prompt":[[1],[2]]}`, 400, "Batched prompts are not supported"},
		{"n > 1", "POST", "/v1/completions", `{"prompt":"hi","n":2}`, 400, "n > 1 is not supported"},
		{"n = 0", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":0}`, 400, "n must be at least 1"},
		{"negative temperature", "POST", "/v1/completions", `{"prompt":"hi","temperature":-1}`, 400, "temperature must be non-negative"},
		{"bad top_p", "POST", "/v1/completions", `{"prompt":"hi","top_p":0}`, 400, "top_p must be in (0, 1]"},
		{"min over max", "POST", "/v1/completions", `{"prompt":"hi","max_tokens":4,"min_tokens":5}`, 400, "min_tokens must be less than or equal to max_tokens=4, got 5."},
		{"stream_options without stream", "POST", "/v1/completions", `{"prompt":"hi","stream_options":{"include_usage":true}}`, 400, "stream=True"},
		{"no messages", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "'messages' is required"},
		{"message without role", "POST", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`, 400, "'role' is required"},
		{"image part", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "not supported"},
		{"unknown route", "GET", "/v1/nothing", ``, 404, "Not Found"},
		{"wrong method", "GET", "/v1/completions", ``, 405, "Method Not Allowed"},
		{"wrong method health", "POST", "/health", ``, 405, "Method Not Allowed"},
		{"body too large", "POST", "/v1/completions", `{"prompt":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 413, "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, ts.url+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			var e openai.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("not an error body: %s", body)
			}
			if e.Error.Code != c.status || e.Error.Type != openai.TypeForStatus(c.status) || !strings.Contains(e.Error.Message, c.msg) {
				t.Fatalf("error %+v, want code %d and message containing %q", e.Error, c.status, c.msg)
			}
		})
	}
	// None of the rejected requests reached the engine.
	fams := ts.scrape(t)
	if v := value(t, fams, "vllm:prompt_tokens_total"); v != 0 {
		t.Fatalf("rejected requests counted %v prompt tokens", v)
	}
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestHealthModelsVersion(t *testing.T) {
	cfg := testConfig()
	cfg.ServedModelName = "qwen-small"
	ts := startServer(t, cfg, nil)
	resp, err := ts.client.Get(ts.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("/health: %d %q", resp.StatusCode, b)
	}
	resp, err = ts.client.Get(ts.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	ml := decode[openai.ModelList](t, b)
	if len(ml.Data) != 1 || ml.Data[0].ID != "qwen-small" || ml.Data[0].Root != testModel || ml.Data[0].MaxModelLen != 512 {
		t.Fatalf("/v1/models: %s", b)
	}
	resp, err = ts.client.Get(ts.url + "/version")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if decode[map[string]string](t, b)["version"] == "" {
		t.Fatalf("/version: %s", b)
	}
	// The served name is the model name; the path is not.
	if code, body := ts.post(t, "/v1/completions", obj{"model": "qwen-small", "prompt": "hi", "max_tokens": 1}); code != 200 {
		t.Fatalf("served name refused: %s", body)
	}
	if code, _ := ts.post(t, "/v1/completions", obj{"model": testModel, "prompt": "hi", "max_tokens": 1}); code != 404 {
		t.Fatalf("model path accepted when a served name is set: %d", code)
	}
	// After the engine stops, /health says 503 as vLLM's does when its engine died.
	ts.stop()
	<-ts.loop.done
	resp, err = ts.client.Get(ts.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/health after engine stop: %d", resp.StatusCode)
	}
}

// TestDisconnectFreesBlocks checks that a client that goes away mid-stream
// aborts its request: its KV blocks are freed and it leaves the running set.
func TestDisconnectFreesBlocks(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body, _ := json.Marshal(obj{"prompt": make([]int, 100), "max_tokens": 400, "ignore_eos": true, "stream": true})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"/v1/completions", bytes.NewReader(body))
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := openai.NewSSEReader(resp.Body)
	for i := 0; i < 3; i++ {
		if _, err := rd.Next(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	fams := ts.scrape(t)
	if running, kv := value(t, fams, "vllm:num_requests_running"), value(t, fams, "vllm:kv_cache_usage_perc"); running != 1 || kv <= 0 {
		t.Fatalf("while streaming: running %v, kv usage %v", running, kv)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = ts.scrape(t)
		running, kv := value(t, fams, "vllm:num_requests_running"), value(t, fams, "vllm:kv_cache_usage_perc")
		if running == 0 && kv == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after disconnect: running %v, kv usage %v", running, kv)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The request was aborted, not finished: no success was counted and it
	// produced far fewer than its 400 tokens.
	for _, r := range []string{"stop", "length", "abort"} {
		if v := successCount(t, fams, r); v != 0 {
			t.Fatalf("request_success_total{finished_reason=%q} = %v", r, v)
		}
	}
	if g := value(t, fams, "vllm:generation_tokens_total"); g >= 400 {
		t.Fatalf("generation continued after disconnect: %v tokens", g)
	}
}

func successCount(t *testing.T, fams map[string]*dto.MetricFamily, reason string) float64 {
	t.Helper()
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "finished_reason" && l.GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no request_success_total series for %q", reason)
	return 0
}

func TestNonStreamDisconnectAborts(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	body, _ := json.Marshal(obj{"prompt": make([]int, 100), "max_tokens": 400, "ignore_eos": true})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"/v1/completions", bytes.NewReader(body))
	if resp, err := ts.client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a 400-token request finished within 100 ms: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := ts.scrape(t)
		if value(t, fams, "vllm:num_requests_running") == 0 && value(t, fams, "vllm:kv_cache_usage_perc") == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("non-streamed request was not aborted after its client went away")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMetricsNamesLabelsAndCounts(t *testing.T) {
	cfg := testConfig()
	cfg.ServedModelName = "served"
	ts := startServer(t, cfg, nil)
	ts.postStream(t, "/v1/completions", obj{"model": "served", "prompt": make([]int, 30), "max_tokens": 20, "ignore_eos": true, "stream": true})
	if code, body := ts.post(t, "/v1/chat/completions", obj{"messages": []obj{{"role": "user", "content": "hi"}}, "max_tokens": 400, "temperature": 0}); code != 200 {
		t.Fatalf("chat: %s", body)
	}
	fams := ts.scrape(t)
	want := map[string]string{
		"vllm:num_requests_running":          "GAUGE",
		"vllm:num_requests_waiting":          "GAUGE",
		"vllm:kv_cache_usage_perc":           "GAUGE",
		"vllm:prompt_tokens_total":           "COUNTER",
		"vllm:generation_tokens_total":       "COUNTER",
		"vllm:num_preemptions_total":         "COUNTER",
		"vllm:request_success_total":         "COUNTER",
		"vllm:time_to_first_token_seconds":   "HISTOGRAM",
		"vllm:inter_token_latency_seconds":   "HISTOGRAM",
		"vllm:time_per_output_token_seconds": "HISTOGRAM",
		"vllm:e2e_request_latency_seconds":   "HISTOGRAM",
		"vllm:request_queue_time_seconds":    "HISTOGRAM",
		"llmlab_sim_step_lag_seconds":        "HISTOGRAM",
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if f.GetType().String() != typ {
			t.Errorf("%s is a %s, want %s", name, f.GetType(), typ)
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["model_name"] != "served" || labels["engine"] != "0" {
				t.Errorf("%s labels %v", name, labels)
			}
		}
	}
	var bounds []float64
	for _, b := range fams["vllm:time_to_first_token_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if fmt.Sprint(bounds) != fmt.Sprint(append(ttftBuckets[:len(ttftBuckets):len(ttftBuckets)], math.Inf(1))) {
		t.Errorf("TTFT buckets %v", bounds)
	}
	chatPrompt := tokenizer.Count(tokenizer.RenderChat([]tokenizer.ChatTurn{{Role: "user", Content: "hi"}}))
	if v := value(t, fams, "vllm:prompt_tokens_total"); v != float64(30+chatPrompt) {
		t.Errorf("prompt tokens %v, want %d", v, 30+chatPrompt)
	}
	if successCount(t, fams, "length") != 1 || successCount(t, fams, "stop") != 1 || successCount(t, fams, "abort") != 0 {
		t.Errorf("request_success_total wrong")
	}
	gen := value(t, fams, "vllm:generation_tokens_total")
	ttft := fams["vllm:time_to_first_token_seconds"].GetMetric()[0].GetHistogram().GetSampleCount()
	itl := fams["vllm:inter_token_latency_seconds"].GetMetric()[0].GetHistogram().GetSampleCount()
	e2e := fams["vllm:e2e_request_latency_seconds"].GetMetric()[0].GetHistogram().GetSampleCount()
	if ttft != 2 || e2e != 2 || float64(itl) != gen-2 {
		t.Errorf("ttft %d, e2e %d, itl %d for %v generated tokens", ttft, e2e, itl, gen)
	}
	if lag := fams["llmlab_sim_step_lag_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); lag == 0 {
		t.Errorf("no step lag samples")
	}
}

// TestChunksLeaveStepByStep checks that a stream really streams: chunks
// arrive in order over a time no shorter than the modelled steps.
func TestChunksLeaveStepByStep(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	const n = 40
	start := time.Now()
	evs := ts.postStream(t, "/v1/completions", obj{"prompt": make([]int, 16), "max_tokens": n, "ignore_eos": true, "stream": true})
	if len(evs) != n {
		t.Fatalf("%d chunks, want %d", len(evs), n)
	}
	// Modelled time: one prefill step of 16 tokens, then n-1 decode steps.
	sm := ts.loop.sched.StepModel()
	modelled := sm.Duration(16, 0, 16)
	for k := 1; k < n; k++ {
		modelled += sm.Duration(0, 1, 16+k)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].at.Before(evs[i-1].at) {
			t.Fatalf("chunk %d read before chunk %d", i, i-1)
		}
	}
	// Never faster than the model (the loop only catches up after a stall,
	// by at most maxCatchUp per stall); the upper bound is generous.
	elapsed := evs[n-1].at.Sub(start)
	if elapsed < modelled-maxCatchUp || elapsed > modelled+10*time.Second {
		t.Fatalf("stream took %v, modelled %v", elapsed, modelled)
	}
	spread := evs[n-1].at.Sub(evs[0].at)
	if spread < modelled/2 {
		t.Fatalf("chunks arrived within %v, modelled decode takes %v: not streamed", spread, modelled)
	}
}

func TestConcurrentStreamsAllComplete(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	const clients = 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body, _ := json.Marshal(obj{"prompt": make([]int, 50+i), "max_tokens": 30 + i, "ignore_eos": true, "stream": true,
				"stream_options": obj{"include_usage": true}})
			resp, err := ts.client.Post(ts.url+"/v1/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			rd := openai.NewSSEReader(resp.Body)
			tokens := 0
			for {
				d, err := rd.Next()
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if string(d) == openai.Done {
					break
				}
				var c openai.CompletionResponse
				if err := json.Unmarshal(d, &c); err != nil {
					errs <- err
					return
				}
				if len(c.Choices) == 1 {
					tokens++
				} else if c.Usage.CompletionTokens != 30+i || c.Usage.PromptTokens != 50+i {
					errs <- fmt.Errorf("client %d: usage %+v", i, c.Usage)
				}
			}
			if tokens != 30+i {
				errs <- fmt.Errorf("client %d: %d tokens, want %d", i, tokens, 30+i)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fams := ts.scrape(t)
	if successCount(t, fams, "length") != clients || value(t, fams, "vllm:kv_cache_usage_perc") != 0 {
		t.Fatalf("after all streams: success %v kv %v", successCount(t, fams, "length"), value(t, fams, "vllm:kv_cache_usage_perc"))
	}
}

// TestShutdownAbortsStreams: when the engine stops, a stream in flight ends
// with an error event and [DONE], and a whole request gets a 503.
func TestShutdownAbortsStreams(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	body, _ := json.Marshal(obj{"prompt": "hi", "max_tokens": 400, "ignore_eos": true, "stream": true})
	resp, err := ts.client.Post(ts.url+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := openai.NewSSEReader(resp.Body)
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	whole := make(chan int, 1)
	go func() {
		code, _ := ts.post(t, "/v1/completions", obj{"prompt": "hi", "max_tokens": 400, "ignore_eos": true})
		whole <- code
	}()
	time.Sleep(20 * time.Millisecond)
	ts.stop()
	var last []byte
	for {
		d, err := rd.Next()
		if err != nil {
			t.Fatalf("stream ended without [DONE]: %v", err)
		}
		if string(d) == openai.Done {
			break
		}
		last = bytes.Clone(d)
	}
	var e openai.ErrorResponse
	if err := json.Unmarshal(last, &e); err != nil || e.Error.Code != http.StatusServiceUnavailable || !strings.Contains(e.Error.Message, "shutting down") {
		t.Fatalf("last event %s", last)
	}
	if code := <-whole; code != http.StatusServiceUnavailable {
		t.Fatalf("whole request got %d", code)
	}
	// New requests are refused.
	if code, _ := ts.post(t, "/v1/completions", obj{"prompt": "hi"}); code != http.StatusServiceUnavailable {
		t.Fatalf("request after shutdown got %d", code)
	}
}

func TestRunStartupShutdownAndFailure(t *testing.T) {
	port := freePort(t)
	cfg := testConfig()
	cfg.Host, cfg.Port, cfg.StartupSeconds = "127.0.0.1", port, 0.5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// While loading, the port refuses connections.
	time.Sleep(100 * time.Millisecond)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("port accepted a connection while loading")
	}
	deadline := time.Now().Add(10 * time.Second)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	for {
		resp, err := client.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	// A configuration that does not fit fails like vLLM.
	bad := testConfig()
	bad.Engine.GPUMemoryUtilization = 0.2
	var stderr bytes.Buffer
	bad.Stderr = &stderr
	err := Run(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "No available memory for the cache blocks") ||
		!strings.HasPrefix(stderr.String(), "ValueError: ") {
		t.Fatalf("Run with a config that does not fit: %v; stderr %q", err, stderr.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStepAfterIdleStartsNow: after the engine idles, the next step starts
// when its request arrives, never back-dated to the previous step's end.
func TestStepAfterIdleStartsNow(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	sm := ts.loop.sched.StepModel()
	prefill := sm.Duration(500, 0, 500)
	for i := 0; i < 5; i++ {
		if code, body := ts.post(t, "/v1/completions", obj{"prompt": make([]int, 10), "max_tokens": 1}); code != 200 {
			t.Fatalf("warm-up: %s", body)
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		began := time.Now()
		code, body := ts.post(t, "/v1/completions", obj{"prompt": make([]int, 500), "max_tokens": 1})
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		if took := time.Since(began); took < prefill {
			t.Fatalf("a %v prefill step answered after %v", prefill, took)
		}
	}
}

// TestAbortBeforeAddIsHonoured: a request whose client goes away right
// after submitting may have its abort reach the loop before the request
// itself; it must never run.
func TestAbortBeforeAddIsHonoured(t *testing.T) {
	for i := 0; i < 10; i++ {
		ts := startServer(t, testConfig(), nil)
		sq := newSeq("cancelled", 10, 100, 100, openai.FinishLength, time.Now())
		ts.loop.abort(sq) // queued first: the loop may take either channel first
		if err := ts.loop.submit(context.Background(), sq); err != nil {
			t.Fatal(err)
		}
		if code, body := ts.post(t, "/v1/completions", obj{"prompt": "hi", "max_tokens": 1}); code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		fams := ts.scrape(t)
		if r, g := value(t, fams, "vllm:num_requests_running"), value(t, fams, "vllm:generation_tokens_total"); r != 0 || g != 1 {
			t.Fatalf("iteration %d: the aborted request ran (running %v, generated %v)", i, r, g)
		}
	}
}
