package validate

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/openai"
	fastjson "github.com/segmentio/encoding/json"
)

var lim = Limits{ServedName: "m", MaxModelLen: 512, Vocab: 151936, MaxN: 1}

func TestRefusals(t *testing.T) {
	cases := []struct {
		chat   bool
		body   string
		status int
		msg    string
	}{
		{false, `{"prompt":"hi","max_tokens":-5}`, 400, "max_tokens must be at least 1, got -5."},
		{false, `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens must be at least 1, got 0."},
		{false, `{"prompt":"hi","max_tokens":1000000000}`, 400, "However, you requested 1000000001 tokens (1 in the messages, 1000000000 in the completion)"},
		{false, `{"prompt":"hi","temperature":-3}`, 400, "temperature must be non-negative, got -3."},
		{false, `{"prompt":"hi","top_p":5}`, 400, "top_p must be in (0, 1], got 5."},
		{false, `{"prompt":"hi","n":1000}`, 400, "n > 1 is not supported"},
		{false, `{"prompt":"hi","n":0}`, 400, "n must be at least 1, got 0."},
		{false, `{"prompt":"` + strings.Repeat(" word", 5000) + `"}`, 400, "maximum context length is 512 tokens. However, your request has 5000 input tokens."},
		{false, `{"prompt":[1000000000000]}`, 400, "Token id 1000000000000 is out of vocabulary."},
		{true, `{"messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0]: unknown role 'wizard'"},
		{true, `{"messages":[{"role":"developer","content":"hi"}],"max_tokens":5}`, 0, ""},
		{true, `{"messages":[{"role":"tool","content":"x"},{"role":"assistant","content":null}],"max_tokens":5}`, 0, ""},
		{false, "{\"prompt\":\"\xff\"}", 400, "not valid UTF-8 (first invalid byte at offset 11)"},
		{false, `{"model":"x","prompt":"hi"}`, 404, "The model `x` does not exist."},
		{true, `{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}`, 400, "greater than max allowed: 20"},
		{false, `{"prompt":"hi","stop":["a",3]}`, 400, "'stop'"},
		{false, `{"prompt":"hi","repetition_penalty":0}`, 400, "repetition_penalty must be greater than zero, got 0."},
		{false, `{"prompt":"hi","top_k":-2}`, 400, "top_k must be 0 (disable), or at least 1, got -2."},
		{false, `{"prompt":"hi","min_p":2}`, 400, "min_p must be in [0, 1], got 2."},
	}
	for _, c := range cases {
		check := Completion
		if c.chat {
			check = Chat
		}
		_, e := check([]byte(c.body), lim)
		switch {
		case c.status == 0 && e != nil:
			t.Errorf("%.60s: refused: %s", c.body, e.Error.Message)
		case c.status != 0 && e == nil:
			t.Errorf("%.60s: accepted, want %d", c.body, c.status)
		case c.status != 0 && (e.Error.Code != c.status || !strings.Contains(e.Error.Message, c.msg)):
			t.Errorf("%.60s: %d %q, want %d containing %q", c.body, e.Error.Code, e.Error.Message, c.status, c.msg)
		}
	}
}

func TestAcceptedRequest(t *testing.T) {
	r, e := Chat([]byte(`{"messages":[{"role":"user","content":"hi"}],"stop":"x","stop_token_ids":[5],"logprobs":true,"top_logprobs":3,"temperature":0}`), lim)
	if e != nil {
		t.Fatal(e.Error.Message)
	}
	if !r.Chat || r.Model != "m" || r.MaxTokens != lim.MaxModelLen-r.PromptTokens || !r.Logprobs || r.TopLogprobs != 3 ||
		len(r.Stop) != 1 || r.Stop[0] != "x" || len(r.StopTokenIDs) != 1 || r.Temperature != 0 {
		t.Fatalf("%+v", r)
	}
	r, e = Completion([]byte(`{"prompt":[1,2,3],"max_tokens":4}`), lim)
	if e != nil || r.PromptTokens != 3 || r.MaxTokens != 4 || r.Logprobs || r.Temperature != 1 {
		t.Fatalf("%+v %v", r, e)
	}
}

// Against a real vLLM the gateway leaves text-prompt lengths to the worker
// but still refuses what no prompt could make valid.
func TestSkipTextLength(t *testing.T) {
	l := lim
	l.SkipTextLength = true
	if _, e := Completion([]byte(`{"prompt":"`+strings.Repeat(" word", 5000)+`"}`), l); e != nil {
		t.Fatalf("refused: %s", e.Error.Message)
	}
	if _, e := Completion([]byte(`{"prompt":"hi","max_tokens":512}`), l); e == nil {
		t.Fatal("max_tokens = max_model_len accepted")
	}
	if _, e := Completion([]byte(`{"prompt":[`+strings.Repeat("1,", 600)+`1]}`), l); e == nil {
		t.Fatal("a too-long token-id prompt accepted")
	}
}

// FuzzValidate: validation never panics; it answers a request within the
// limits or a 4xx OpenAI error that marshals. Seeds: testdata/fuzz.
func FuzzValidate(f *testing.F) {
	f.Add(false, []byte(`{"prompt":"hi","max_tokens":3}`))
	f.Add(true, []byte(`{"messages":[{"role":"user","content":"hi"}],"logprobs":true}`))
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		check := Completion
		if chat {
			check = Chat
		}
		r, e := check(body, lim)
		if e != nil {
			if e.Error.Code < 400 || e.Error.Code > 499 || e.Error.Message == "" || e.Error.Type != openai.TypeForStatus(e.Error.Code) {
				t.Fatalf("bad error %+v for %q", e.Error, body)
			}
			if _, err := json.Marshal(e); err != nil {
				t.Fatal(err)
			}
			return
		}
		if r.PromptTokens < 1 || r.MaxTokens < 1 || r.MaxTokens > lim.MaxModelLen-r.PromptTokens || r.MinTokens > r.MaxTokens ||
			r.Temperature < 0 || r.TopLogprobs < 0 || r.TopLogprobs > DefaultMaxLogprobs {
			t.Fatalf("accepted invalid request %+v from %q", r, body)
		}
		for _, id := range append(append([]int(nil), r.PromptIDs...), r.StopTokenIDs...) {
			if id < 0 || id >= lim.Vocab {
				t.Fatalf("accepted token id %d from %q", id, body)
			}
		}
	})
}

// BenchmarkChat200 is the gateway's added cost per request: validating a
// chat request whose prompt is configs/prompts/prompt_200.txt.
func BenchmarkChat200(b *testing.B) {
	prompt, err := os.ReadFile("../../configs/prompts/prompt_200.txt")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"model": "m", "max_tokens": 200, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": string(prompt)}},
	})
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, e := Chat(body, lim); e != nil {
			b.Fatal(e.Error.Message)
		}
	}
}

// BenchmarkCompletionTokens is validating a /v1/completions body whose
// prompt is n token ids, as `llmlab bench` sends (16: the side-by-side
// proxy run; 200: the lab's workload).
func BenchmarkCompletionTokens(b *testing.B) {
	for _, n := range []int{16, 200} {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = 1000 + i*37
		}
		body, _ := json.Marshal(map[string]any{
			"model": "m", "prompt": ids, "max_tokens": 200, "stream": true, "ignore_eos": true,
			"temperature": 0, "stream_options": map[string]bool{"include_usage": true},
		})
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, e := Completion(body, lim); e != nil {
					b.Fatal(e.Error.Message)
				}
			}
		})
	}
}

// BenchmarkCompletionText200 is the same body with the 200-token text
// prompt (configs/prompts/prompt_200.txt: its final newline is an escape),
// as `llmlab bench` sends for text-prompt scenarios.
func BenchmarkCompletionText200(b *testing.B) {
	prompt, err := os.ReadFile("../../configs/prompts/prompt_200.txt")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"model": "m", "prompt": string(prompt), "max_tokens": 200, "stream": true, "ignore_eos": true,
		"temperature": 0, "stream_options": map[string]bool{"include_usage": true},
	})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, e := Completion(body, lim); e != nil {
			b.Fatal(e.Error.Message)
		}
	}
}

// FuzzDecoders holds decode's fast decoder to encoding/json: for any body,
// both accept it or both refuse it, and what they accept decodes to the
// same request, for both request types.
func FuzzDecoders(f *testing.F) {
	for _, s := range []string{`{"prompt":"hi","max_tokens":3}`, `{"MAX_TOKENS":5,"max_tokens":6}`, `{"prompt":[1,2],"stop":["a"],"logit_bias":{"7":1.5}}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"n":1}`, `{"max_tokens":1.5}`, `{"seed":-1,"temperature":null}`,
		`{"stream_options":{"include_usage":true}}`, `{"prompt":"a\ud800b"}`, `[1]`, `{"a":1}{}`, `{"prompt":"x",`, `{"max_tokens":99999999999999999999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pair := range [][2]any{{new(openai.CompletionRequest), new(openai.CompletionRequest)}, {new(openai.ChatCompletionRequest), new(openai.ChatCompletionRequest)}} {
			fastErr := fastjson.Unmarshal(body, pair[0])
			stdErr := json.Unmarshal(body, pair[1])
			if (fastErr == nil) != (stdErr == nil) {
				t.Fatalf("%q into %T: fast decoder %v, encoding/json %v", body, pair[0], fastErr, stdErr)
			}
			if fastErr == nil && !reflect.DeepEqual(pair[0], pair[1]) {
				t.Fatalf("%q into %T: fast decoder %+v, encoding/json %+v", body, pair[0], pair[0], pair[1])
			}
		}
	})
}
