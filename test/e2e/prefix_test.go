package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestSimPrefixCacheCounters repeats one prompt against a real `llmlab sim`
// process: with prefix caching (the default, as in vLLM V1) the second
// request hits every full block but the one holding the last token, and
// vllm:prefix_cache_queries_total / _hits_total count it in tokens; with
// --no-enable-prefix-caching nothing is looked up.
func TestSimPrefixCacheCounters(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{{"default", nil}, {"disabled", []string{"--no-enable-prefix-caching"}}} {
		t.Run(c.name, func(t *testing.T) {
			s := startSimServer(t, append([]string{"--startup-seconds", "0"}, c.args...)...)
			params := oai.CompletionNewParams{
				Model:     oai.CompletionNewParamsModel(simModel),
				Prompt:    oai.CompletionNewParamsPromptUnion{OfString: oai.String(strings.Repeat("Blocks of sixteen tokens are hashed by their content. ", 5))},
				MaxTokens: oai.Int(4),
			}
			var prompt int64
			for i := range 2 {
				r, err := s.oai.Completions.New(context.Background(), params, option.WithJSONSet("ignore_eos", true))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				prompt = r.Usage.PromptTokens
				if i == 0 {
					q, h := simMetric(t, s.url, "vllm:prefix_cache_queries_total"), simMetric(t, s.url, "vllm:prefix_cache_hits_total")
					if c.args == nil && (q != float64(prompt) || h != 0) {
						t.Errorf("after one request: queries %v hits %v, want %d 0", q, h, prompt)
					}
				}
			}
			q, h := simMetric(t, s.url, "vllm:prefix_cache_queries_total"), simMetric(t, s.url, "vllm:prefix_cache_hits_total")
			wantQ, wantH := float64(2*prompt), float64((prompt-1)/16*16)
			if c.args != nil {
				wantQ, wantH = 0, 0
			}
			if q != wantQ || h != wantH || (c.args == nil && h == 0) {
				t.Errorf("%d-token prompt twice: queries %v hits %v, want %v %v", prompt, q, h, wantQ, wantH)
			}
		})
	}
}

// TestBenchRepeatSeesNoPrefixHits runs the same `llmlab bench` twice (same
// default seed, as a tuner's repeats) against one `llmlab sim`: its prompts
// differ per request and per run, so the second run must measure prefill,
// not cache hits, while the sim did look every prompt up.
func TestBenchRepeatSeesNoPrefixHits(t *testing.T) {
	url := startSim(t)
	for i := range 2 {
		p := start(t, "bench", "--url", url, "--rate", "4", "--duration", "2s", "--ramp", "0s",
			"--output-len", "8", "--out", filepath.Join(t.TempDir(), fmt.Sprintf("run%d.json", i)))
		if code := p.wait(t, time.Minute); code != 0 {
			t.Fatalf("bench %d exit %d:\n%s", i, code, p.out.String())
		}
	}
	q, h := simMetric(t, url, "vllm:prefix_cache_queries_total"), simMetric(t, url, "vllm:prefix_cache_hits_total")
	if q < 2*4*200 || h != 0 {
		t.Errorf("two bench runs: prefix cache queries %v (want ≥ %d), hits %v (want 0)", q, 2*4*200, h)
	}
}
