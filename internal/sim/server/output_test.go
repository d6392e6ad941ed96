package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
)

// completion is the part of a completion response these tests read.
type completion struct {
	Choices []struct {
		Text         string                     `json:"text"`
		Logprobs     *openai.CompletionLogprobs `json:"logprobs"`
		FinishReason *string                    `json:"finish_reason"`
		StopReason   json.RawMessage            `json:"stop_reason"`
	} `json:"choices"`
	Usage openai.Usage `json:"usage"`
}

func complete(t *testing.T, ts *testServer, req obj) completion {
	t.Helper()
	code, body := ts.post(t, "/v1/completions", req)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	c := decode[completion](t, body)
	if len(c.Choices) != 1 || c.Choices[0].FinishReason == nil {
		t.Fatalf("%s", body)
	}
	return c
}

// base is a greedy request whose 40 tokens are known in advance.
func base() obj {
	return obj{"prompt": "Explain KV caches.", "max_tokens": 40, "ignore_eos": true, "temperature": 0, "logprobs": 0}
}

func TestStopString(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	full := complete(t, ts, base())
	toks := full.Choices[0].Logprobs.Tokens
	if len(toks) != 40 || strings.Join(toks, "") != full.Choices[0].Text {
		t.Fatalf("tokens %q vs text %q", toks, full.Choices[0].Text)
	}
	// A stop string spanning tokens 5 and 6: the text ends before it, the
	// request ends with token 6, and stop_reason names the string.
	stop := toks[5][1:] + toks[6]
	req := base()
	req["stop"] = []string{"never there", stop}
	got := complete(t, ts, req)
	at := strings.Index(full.Choices[0].Text, stop)
	ch := got.Choices[0]
	if ch.Text != full.Choices[0].Text[:at] || *ch.FinishReason != "stop" || string(ch.StopReason) != mustJSONString(stop) {
		t.Fatalf("text %q reason %s %s; want %q", ch.Text, *ch.FinishReason, ch.StopReason, full.Choices[0].Text[:at])
	}
	// vLLM counts every token generated, the one that completed the stop too.
	end := 0
	for k, off := 0, 0; k < len(toks); k++ {
		off += len(toks[k])
		if off >= at+len(stop) {
			end = k + 1
			break
		}
	}
	if got.Usage.CompletionTokens != end {
		t.Fatalf("completion_tokens %d, want %d", got.Usage.CompletionTokens, end)
	}
	// Streamed, the pieces add up to the same text and the last chunk
	// carries the reasons.
	req["stream"] = true
	text, reason, _, _ := streamedCompletion(t, ts.postStream(t, "/v1/completions", req))
	if text != ch.Text || reason != "stop" {
		t.Fatalf("stream %q %s, whole %q", text, reason, ch.Text)
	}
	// No match: the output is untouched and stop_reason stays null.
	req = base()
	req["stop"] = "never there"
	if c := complete(t, ts, req).Choices[0]; c.Text != full.Choices[0].Text || string(c.StopReason) != "null" || *c.FinishReason != "length" {
		t.Fatalf("%+v", c)
	}
}

func mustJSONString(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestStopTokenIDs(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	full := complete(t, ts, base())
	toks := full.Choices[0].Logprobs.Tokens
	id := tokenizer.ID(toks[7])
	first := 0
	for first < len(toks) && tokenizer.ID(toks[first]) != id {
		first++
	}
	req := base()
	req["stop_token_ids"] = []int{id}
	c := complete(t, ts, req)
	ch := c.Choices[0]
	if *ch.FinishReason != "stop" || string(ch.StopReason) != itoa(id) || c.Usage.CompletionTokens != first+1 ||
		ch.Text != strings.Join(toks[:first], "") {
		t.Fatalf("%q %s %s %d; want %d tokens, text %q", ch.Text, *ch.FinishReason, ch.StopReason, c.Usage.CompletionTokens, first+1, strings.Join(toks[:first], ""))
	}
	// min_tokens defers the stop past the first occurrence.
	req["min_tokens"] = first + 2
	if c := complete(t, ts, req); c.Usage.CompletionTokens <= first+1 {
		t.Fatalf("min_tokens ignored: %d tokens", c.Usage.CompletionTokens)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestLogprobsShapes(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	req := base()
	req["logprobs"] = 3
	c := complete(t, ts, req)
	lp := c.Choices[0].Logprobs
	if len(lp.Tokens) != c.Usage.CompletionTokens || len(lp.TokenLogprobs) != len(lp.Tokens) || len(lp.TopLogprobs) != len(lp.Tokens) {
		t.Fatalf("%+v", lp)
	}
	off := 0
	for k, tok := range lp.Tokens {
		if lp.TextOffset[k] != off || lp.TokenLogprobs[k] >= 0 || len(lp.TopLogprobs[k]) != 3 || lp.TopLogprobs[k][0].Token != tok {
			t.Fatalf("position %d: %+v", k, lp)
		}
		for j := 1; j < 3; j++ {
			if lp.TopLogprobs[k][j].Logprob >= lp.TopLogprobs[k][j-1].Logprob {
				t.Fatalf("position %d not in rank order: %+v", k, lp.TopLogprobs[k])
			}
		}
		off += len(tok)
	}
	// The raw object keeps rank order: the chosen token first.
	_, body := ts.post(t, "/v1/completions", req)
	if !strings.Contains(string(body), `"top_logprobs":[{"`+strings.ReplaceAll(lp.Tokens[0], `"`, `\"`)+`":`) {
		t.Fatalf("rank order lost: %s", body)
	}

	// Chat: OpenAI's content list, top_logprobs alternatives per token.
	code, body := ts.post(t, "/v1/chat/completions", obj{
		"messages": []obj{{"role": "user", "content": "hi"}}, "max_tokens": 6, "ignore_eos": true,
		"logprobs": true, "top_logprobs": 2,
	})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var chat struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			Logprobs   openai.ChatLogprobs `json:"logprobs"`
			StopReason json.RawMessage     `json:"stop_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &chat); err != nil {
		t.Fatal(err)
	}
	cl := chat.Choices[0].Logprobs.Content
	var text strings.Builder
	for _, e := range cl {
		text.WriteString(e.Token)
		if len(e.TopLogprobs) != 2 || e.TopLogprobs[0].Token != e.Token || len(e.Bytes) != len(e.Token) {
			t.Fatalf("%+v", e)
		}
	}
	if len(cl) != 6 || text.String() != chat.Choices[0].Message.Content || string(chat.Choices[0].StopReason) != "null" {
		t.Fatalf("chat logprobs %+v for %q", cl, chat.Choices[0].Message.Content)
	}
	// Streamed chat: each token chunk carries its own entry.
	evs := ts.postStream(t, "/v1/chat/completions", obj{
		"messages": []obj{{"role": "user", "content": "hi"}}, "max_tokens": 4, "ignore_eos": true,
		"logprobs": true, "stream": true,
	})
	n := 0
	for _, ev := range evs {
		var ch openai.ChatCompletionChunk
		if err := json.Unmarshal(ev.data, &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Choices[0].Delta.Role != "" {
			continue
		}
		var l openai.ChatLogprobs
		if err := json.Unmarshal(ch.Choices[0].Logprobs, &l); err != nil || len(l.Content) != 1 || len(l.Content[0].TopLogprobs) != 0 {
			t.Fatalf("chunk logprobs %s", ch.Choices[0].Logprobs)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("%d token chunks", n)
	}
}
