package server

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/tokenizer"
)

func TestTokenizeCountsAsGenerationDoes(t *testing.T) {
	ts := startServer(t, testConfig(), nil)
	code, body := ts.post(t, "/tokenize", `{"prompt":"Explain KV caches in one paragraph.","return_token_strs":true}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	tr := decode[tokenizeResponse](t, body)
	want := tokenizer.Count("Explain KV caches in one paragraph.")
	if tr.Count != want || len(tr.Tokens) != want || tr.MaxModelLen != 512 || strings.Join(tr.TokenStrs, "") != "Explain KV caches in one paragraph." {
		t.Fatalf("%+v, want count %d", tr, want)
	}
	// The same prompt as a completion reports the same prompt_tokens.
	_, body = ts.post(t, "/v1/completions", `{"prompt":"Explain KV caches in one paragraph.","max_tokens":1}`)
	if u := decode[struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		}
	}](t, body); u.Usage.PromptTokens != want {
		t.Fatalf("prompt_tokens %d, tokenize %d", u.Usage.PromptTokens, want)
	}
	// Chat: the template with (default) or without the generation prompt.
	_, body = ts.post(t, "/tokenize", `{"messages":[{"role":"user","content":"hi"}]}`)
	withGen := decode[tokenizeResponse](t, body).Count
	_, body = ts.post(t, "/tokenize", `{"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":false}`)
	if without := decode[tokenizeResponse](t, body).Count; withGen != tokenizer.Count(tokenizer.RenderChat([]tokenizer.ChatTurn{{Role: "user", Content: "hi"}})) || without >= withGen {
		t.Fatalf("chat counts %d / %d", withGen, without)
	}
	// Token ids of the prompt detokenize back to it.
	code, body = ts.post(t, "/detokenize", map[string]any{"tokens": tr.Tokens})
	if code != 200 || decode[map[string]string](t, body)["prompt"] != tokenizer.Decode(tr.Tokens) {
		t.Fatalf("detokenize: %d %s", code, body)
	}
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/tokenize", `{"model":"other","prompt":"x"}`, 404},
		{"/tokenize", `{"prompt":"x","messages":[]}`, 400},
		{"/tokenize", `{"messages":[{"role":"wizard","content":"x"}]}`, 400},
		{"/detokenize", `{"tokens":[151936]}`, 400},
		{"/detokenize", `{"tokens":"x"}`, 400},
	} {
		if code, body := ts.post(t, c.path, c.body); code != c.code {
			t.Errorf("%s %s: %d %s, want %d", c.path, c.body, code, body, c.code)
		}
	}
}

func TestAPIKeyAndPing(t *testing.T) {
	cfg := testConfig()
	cfg.APIKeys = []string{"k1", "k2"}
	ts := startServer(t, cfg, nil)
	do := func(method, path, auth string) (int, string) {
		req, _ := http.NewRequest(method, ts.url+path, strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = io.Copy(b, resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, c := range []struct {
		method, path, auth string
		code               int
		body               string
	}{
		{"POST", "/v1/completions", "", 401, `{"error":"Unauthorized"}`},
		{"POST", "/v1/completions", "Bearer nope", 401, `{"error":"Unauthorized"}`},
		{"POST", "/v1/completions", "Basic k1", 401, `{"error":"Unauthorized"}`},
		{"GET", "/v1/models", "", 401, `{"error":"Unauthorized"}`},
		{"POST", "/v1/completions", "Bearer k1", 200, ""},
		{"POST", "/v1/completions", "bearer k2", 200, ""},
		{"GET", "/health", "", 200, ""},
		{"GET", "/ping", "", 200, ""},
		{"POST", "/ping", "", 200, ""},
		{"GET", "/version", "", 200, `{"version":"` + vllmVersion + `"}`},
		{"GET", "/metrics", "", 200, ""},
	} {
		code, body := do(c.method, c.path, c.auth)
		if code != c.code || (c.body != "" && body != c.body) {
			t.Errorf("%s %s %q: %d %s, want %d %s", c.method, c.path, c.auth, code, body, c.code, c.body)
		}
	}
}
