package server

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmlab/llmlab/internal/openai"
)

func TestCountTokens(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"hello", 1},
		{"hello world", 2},
		{" hello", 1},                     // a leading space joins the word
		{"  hello", 2},                    // extra spaces are a token of their own
		{"internationalization", 3},       // 20 letters: pieces of 8
		{"p95 = 5.2s", 10},                // p, 9, 5, " ", =, " ", 5, ., 2, s
		{"a,b.", 4},                       // punctuation one byte each
		{"line\n\nnext", 3},               // a run of newlines is one token
		{"<|im_start|>user\n", 3},         // special marker, word, newline
		{"<|not special", 4},              // '<', '|', word, word
		{"héllo", 1},                      // non-ASCII bytes count as letters
		{strings.Repeat("ab ", 100), 101}, // 100 words and the trailing space
	}
	for _, c := range cases {
		if got := CountTokens(c.in); got != c.want {
			t.Errorf("CountTokens(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestPromptFileCountsAbout200(t *testing.T) {
	b, err := os.ReadFile("../../../configs/prompts/prompt_200.txt")
	if err != nil {
		t.Skip("prompt file not present:", err)
	}
	// Documented in CountTokens; a change here changes every experiment.
	if n := CountTokens(string(b)); n != 205 {
		t.Fatalf("prompt_200.txt counts %d tokens, documented 205", n)
	}
}

func TestRenderChat(t *testing.T) {
	got := RenderChat([]ChatTurn{{"system", "Be brief."}, {"user", "Hi"}})
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("got %q", got)
	}
}

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
	if n := CountTokens(s); n < 200 {
		t.Fatalf("200 generated tokens count as %d", n)
	}
}

// FuzzParseCompletionRequest: request parsing never panics and answers
// either a valid request or a 4xx OpenAI error.
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
	lim := limits{servedName: "m", maxModelLen: 512, vocab: 151936}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte, limits) (genParams, *openai.ErrorResponse){parseCompletion, parseChat} {
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
			if p.promptTokens < 1 || p.maxTokens < 1 || p.maxTokens > lim.maxModelLen-p.promptTokens || p.minTokens > p.maxTokens {
				t.Fatalf("accepted invalid request %+v from %q", p, body)
			}
			_, out, reason := p.plan(1, 1)
			if out < 1 || out > p.maxTokens || (p.ignoreEOS && out != p.maxTokens) || (reason != "stop" && reason != "length") {
				t.Fatalf("plan %d %s for %+v", out, reason, p)
			}
		}
	})
}
