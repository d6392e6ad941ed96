package bench

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/llmlab/llmlab/internal/openai"
)

func TestBodies(t *testing.T) {
	sc, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	if sc.InputTokens != 200 || sc.OutputTokens != 200 || !sc.IgnoreEOS || !sc.Stream || sc.Temperature != 0 {
		t.Fatalf("default scenario %+v is not the M0 workload", sc)
	}
	b, err := newBodyBuilder(sc, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw0, _ := b.body(0)
	raw1, _ := b.body(1)
	var r0, r1 openai.CompletionRequest
	if err := json.Unmarshal(raw0, &r0); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw1, &r1)
	if !r0.Prompt.IsTokens || len(r0.Prompt.TokenIDs) != 200 || *r0.MaxTokens != 200 || !r0.IgnoreEOS ||
		!r0.Stream || r0.StreamOptions == nil || !r0.StreamOptions.IncludeUsage || *r0.Temperature != 0 || r0.Model != "m" {
		t.Errorf("completion body %s", raw0)
	}
	if slices.Equal(r0.Prompt.TokenIDs, r1.Prompt.TokenIDs) {
		t.Error("two requests share a prompt (a prefix cache would hit)")
	}
	sc.Endpoint, sc.Prompt = EndpointChat, PromptText
	b, err = newBodyBuilder(sc, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b.body(3)
	var c openai.ChatCompletionRequest
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Messages) != 2 || c.Messages[0].Role != "system" || *c.MaxTokens != 200 || !c.IgnoreEOS {
		t.Errorf("chat body %s", raw)
	}
	if txt, _ := c.Messages[1].Text(); len(txt) < 500 {
		t.Errorf("user message %q is not the 200-token prompt", txt)
	}
}

// Two runs with the same seed (the default, or a tuner's repeats) must not
// send the same prompts: vLLM's prefix cache keeps the blocks of recent
// prompts, and a repeat would then measure cache hits instead of prefill.
func TestBodiesDifferBetweenRuns(t *testing.T) {
	for _, prompt := range []string{PromptTokens, PromptText} {
		sc, err := DefaultScenario()
		if err != nil {
			t.Fatal(err)
		}
		sc.Prompt = prompt
		a, err := newBodyBuilder(sc, "m", 1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := newBodyBuilder(sc, "m", 1)
		ra, _ := a.body(0)
		rb, _ := b.body(0)
		if string(ra) == string(rb) {
			t.Errorf("%s prompt: two runs with seed 1 send the same first request", prompt)
		}
	}
}
