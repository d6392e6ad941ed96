package server

import (
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/tokenizer"
)

// tokenizerSamples are texts that exercise every branch of the scan.
var tokenizerSamples = []string{
	"", "hello", " hello", "  hello", "internationalization", "p95 = 5.2s", "a,b.",
	"line\n\nnext", "\r\n\r\n", "<|im_start|>user\n", "<|not special", "<||>", "<|a|", "héllo wörld",
	strings.Repeat("ab ", 100), "tabs\t\tand  spaces ", "x  y", "trailing ", " ", "\t", "<|" + strings.Repeat("a", 40) + "|>",
	tokenizer.RenderChat([]tokenizer.ChatTurn{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Explain KV caches in 3 lines."}}),
}

func TestTokenIDsMatchCountTokens(t *testing.T) {
	samples := slices.Clone(tokenizerSamples)
	if b, err := os.ReadFile("../../../configs/prompts/prompt_200.txt"); err == nil {
		samples = append(samples, string(b))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ  \t\n\r0189<|>_.,!é日"
	for range 2000 {
		b := make([]byte, rng.IntN(60))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		samples = append(samples, string(b))
	}
	for _, s := range samples {
		ids := encodeIDs(s)
		if len(ids) != tokenizer.Count(s) {
			t.Fatalf("%q: %d ids, CountTokens %d", s, len(ids), tokenizer.Count(s))
		}
		for _, id := range ids {
			if id < 0 || id >= tokenizer.IDSpace {
				t.Fatalf("%q: id %d out of range", s, id)
			}
		}
	}
}

// FuzzTokenIDsMatchCountTokens keeps the two scans in step on any input.
func FuzzTokenIDsMatchCountTokens(f *testing.F) {
	for _, s := range tokenizerSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, c := len(encodeIDs(s)), tokenizer.Count(s); n != c {
			t.Fatalf("%q: %d ids, CountTokens %d", s, n, c)
		}
	})
}

func TestTokenIDsFollowText(t *testing.T) {
	a := encodeIDs("the queue holds the request")
	if !slices.Equal(a, encodeIDs("the queue holds the request")) {
		t.Fatal("ids of equal texts differ")
	}
	if len(a) != 5 || a[0] == a[1] || a[1] != encodeIDs(" queue")[0] {
		t.Fatalf("ids %v", a)
	}
	// " the" (after a space) and "the" are different tokens, as in BPE.
	if a[3] == a[0] {
		t.Errorf("'the' and ' the' share id %d", a[0])
	}
	// A shared system prompt gives a shared leading run of ids.
	sys := tokenizer.ChatTurn{Role: "system", Content: strings.Repeat("You answer questions about queues. ", 8)}
	x := encodeIDs(tokenizer.RenderChat([]tokenizer.ChatTurn{sys, {Role: "user", Content: "first question"}}))
	y := encodeIDs(tokenizer.RenderChat([]tokenizer.ChatTurn{sys, {Role: "user", Content: "another one"}}))
	common := 0
	for common < min(len(x), len(y)) && x[common] == y[common] {
		common++
	}
	if want := tokenizer.Count(tokenizer.RenderChat([]tokenizer.ChatTurn{sys})[:len(tokenizer.RenderChat([]tokenizer.ChatTurn{sys}))-len("<|im_start|>assistant\n")]); common < want {
		t.Errorf("chats share %d leading ids, want at least the system turn's %d", common, want)
	}
}

// TestPrefixCacheCountersRiseOnRepeat sends one prompt twice to a server
// with prefix caching on: the second request's full blocks but the last
// token hit, and /metrics counts queries and hits in tokens.
func TestPrefixCacheCountersRiseOnRepeat(t *testing.T) {
	for _, caching := range []bool{true, false} {
		cfg := testConfig()
		cfg.Engine.EnablePrefixCaching = caching
		ts := startServer(t, cfg, nil)
		prompt := strings.Repeat("The scheduler admits waiting requests while the token budget lasts. ", 6)
		n := tokenizer.Count(prompt)
		body := obj{"prompt": prompt, "max_tokens": 4, "ignore_eos": true}
		for i := 1; i <= 2; i++ {
			if code, out := ts.post(t, "/v1/completions", body); code != 200 {
				t.Fatalf("request %d: %d %s", i, code, out)
			}
		}
		fams := ts.scrape(t)
		q, h := value(t, fams, "vllm:prefix_cache_queries_total"), value(t, fams, "vllm:prefix_cache_hits_total")
		wantQ, wantH := float64(2*n), float64((n-1)/16*16)
		if !caching {
			wantQ, wantH = 0, 0
		}
		if q != wantQ || h != wantH {
			t.Errorf("caching=%v, %d-token prompt twice: queries %v hits %v, want %v %v", caching, n, q, h, wantQ, wantH)
		}
		// vLLM counts the whole prompt in prompt_tokens whatever hit.
		if p := value(t, fams, "vllm:prompt_tokens_total"); p != float64(2*n) {
			t.Errorf("prompt tokens %v, want %d", p, 2*n)
		}
	}
}

// TestChatSystemPromptIsASharedPrefix: two chats with one system prompt and
// different questions share the rendered system turn, so the second hits
// its full blocks (as vLLM would), and no more than the common prefix.
func TestChatSystemPromptIsASharedPrefix(t *testing.T) {
	cfg := testConfig()
	cfg.Engine.EnablePrefixCaching = true
	ts := startServer(t, cfg, nil)
	sys := strings.Repeat("You are a terse assistant for queueing questions. ", 5)
	var ids [][]int
	for _, q := range []string{"What is Little's law?", "Why do queues explode near saturation?"} {
		turns := []tokenizer.ChatTurn{{Role: "system", Content: sys}, {Role: "user", Content: q}}
		ids = append(ids, encodeIDs(tokenizer.RenderChat(turns)))
		body := obj{"messages": []obj{{"role": "system", "content": sys}, {"role": "user", "content": q}}, "max_tokens": 2}
		if code, out := ts.post(t, "/v1/chat/completions", body); code != 200 {
			t.Fatalf("chat: %d %s", code, out)
		}
	}
	common := 0
	for common < min(len(ids[0]), len(ids[1])) && ids[0][common] == ids[1][common] {
		common++
	}
	h := value(t, ts.scrape(t), "vllm:prefix_cache_hits_total")
	if want := float64(common / 16 * 16); h != want || h == 0 {
		t.Errorf("hits %v, want %v (%d shared leading tokens)", h, want, common)
	}
}

// encodeIDs is the token ids the server hands the engine for a text prompt.
func encodeIDs(s string) []int { return tokenizer.Encode(s) }
