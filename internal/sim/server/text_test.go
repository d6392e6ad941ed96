package server

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
	"github.com/llmlab/llmlab/internal/validate"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\`, "ctl\x00\x1f\n\r\t", "<a&b>", "ünï", "bad\xffutf8", "\u2028\u2029", "日本"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello \"x\" \n <&> \u2028 \xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func TestGeneratedTextIsWordLike(t *testing.T) {
	var b []byte
	for k := 0; k < 200; k++ {
		b = appendToken(b, 42, k)
	}
	s := string(b)
	if !utf8.ValidString(s) || strings.Count(s, " ") != 200 {
		t.Fatalf("generated text %q", s)
	}
	// Each generated token counts as one token, so the output length in
	// tokens matches usage when the text is fed back.
	if n := tokenizer.Count(s); n < 200 {
		t.Fatalf("200 generated tokens count as %d", n)
	}
}

// FuzzParseCompletionRequest: request parsing never panics and answers
// either a valid request, whose plan fits its limits, or a 4xx OpenAI error.
func FuzzParseCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hi"}`, `{"prompt":[1,2,3],"max_tokens":5}`, `{"prompt":[[1],[2]]}`, `{"prompt":["a"]}`,
		`{"prompt":"x","max_tokens":"x"}`, `{"prompt":"x","n":2}`, `{"prompt":"","stream":true}`,
		`{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true},"min_tokens":3,"ignore_eos":true}`,
		`{"messages":[{"role":"user","content":"hi"}]}`, `{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`,
		`[]`, `null`, `{`, `{"prompt":null}`, `{"prompt":[1e99]}`, `{"temperature":-0,"prompt":"<|im_start|>"}`,
		`{"prompt":"hi","max_tokens":9223372036854775807,"ignore_eos":true}`, `{"prompt":[151936]}`,
	} {
		f.Add([]byte(s))
	}
	lim := validate.Limits{ServedName: "m", MaxModelLen: 512, Vocab: 151936, MaxN: 1}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte, validate.Limits) (genParams, *openai.ErrorResponse){parseCompletion, parseChat} {
			p, e := parse(body, lim)
			if e != nil {
				if e.Error.Code < 400 || e.Error.Code > 499 || e.Error.Message == "" || e.Error.Type != openai.TypeForStatus(e.Error.Code) {
					t.Fatalf("bad error %+v for %q", e.Error, body)
				}
				if _, err := json.Marshal(e); err != nil {
					t.Fatal(err)
				}
				continue
			}
			// maxModelLen-promptTokens, not promptTokens+maxTokens: a huge
			// max_tokens would wrap the sum and pass unnoticed.
			if p.PromptTokens < 1 || p.MaxTokens < 1 || p.MaxTokens > lim.MaxModelLen-p.PromptTokens || p.MinTokens > p.MaxTokens {
				t.Fatalf("accepted invalid request %+v from %q", p, body)
			}
			_, out, reason := p.plan(1, 1)
			if out < 1 || out > p.MaxTokens || (p.IgnoreEOS && out != p.MaxTokens) || (reason != "stop" && reason != "length") {
				t.Fatalf("plan %d %s for %+v", out, reason, p)
			}
		}
	})
}
