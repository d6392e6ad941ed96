package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/validate"
)

// streamEvents runs the chunk encoder over every token of g, as stream
// does, and splits the output into event payloads.
func streamEvents(t *testing.T, g *generation) []string {
	t.Helper()
	enc := newChunkEncoder(g)
	var buf []byte
	for k := 0; k < g.seq.outputTokens; k++ {
		buf = enc.appendToken(buf, k)
	}
	var evs []string
	for _, ev := range strings.SplitAfter(string(buf), "\n\n") {
		if ev == "" {
			continue
		}
		if !strings.HasPrefix(ev, "data: ") || !strings.HasSuffix(ev, "\n\n") {
			t.Fatalf("malformed event %q", ev)
		}
		evs = append(evs, strings.TrimSuffix(strings.TrimPrefix(ev, "data: "), "\n\n"))
	}
	return evs
}

// TestChunkEncoderMatchesEncodingJSON: the pre-built chunks are byte for
// byte what encoding/json writes for the wire types. A chat stream opens
// with vLLM's role chunk (role, empty content, no token) and every token
// chunk carries only content; the last one carries the finish reason.
func TestChunkEncoderMatchesEncodingJSON(t *testing.T) {
	str := func(s string) *string { return &s }
	null := json.RawMessage("null")
	for _, chat := range []bool{true, false} {
		for _, out := range []int{1, 5} {
			g := &generation{
				p:        genParams{Request: validate.Request{Chat: chat, Model: `m<&>"x"`, PromptTokens: 7}},
				id:       "id-1",
				created:  1700000000,
				textSeed: 99,
			}
			g.seq = newSeq(g.id, 7, out, out, openai.FinishLength, time.Now())
			var want []any
			if chat {
				want = append(want, openai.ChatCompletionChunk{
					ID: g.id, Object: openai.ObjectChatChunk, Created: g.created, Model: g.p.Model,
					Choices: []openai.ChatChunkChoice{{Delta: openai.ChatDelta{Role: "assistant", Content: str("")}, Logprobs: null, StopReason: null}},
				})
			}
			for k := 0; k < out; k++ {
				text := string(g.appendText(nil, k, k+1))
				var reason *string
				if k == out-1 {
					reason = str(openai.FinishLength)
				}
				if chat {
					want = append(want, openai.ChatCompletionChunk{
						ID: g.id, Object: openai.ObjectChatChunk, Created: g.created, Model: g.p.Model,
						Choices: []openai.ChatChunkChoice{{Delta: openai.ChatDelta{Content: str(text)}, Logprobs: null, FinishReason: reason, StopReason: null}},
					})
				} else {
					want = append(want, openai.CompletionResponse{
						ID: g.id, Object: openai.ObjectTextCompletion, Created: g.created, Model: g.p.Model,
						Choices: []openai.CompletionChoice{{Text: text, Logprobs: null, FinishReason: reason, StopReason: null}},
					})
				}
			}
			got := streamEvents(t, g)
			if len(got) != len(want) {
				t.Fatalf("chat=%v out=%d: %d events, want %d:\n%s", chat, out, len(got), len(want), strings.Join(got, "\n"))
			}
			for i := range want {
				if w := string(mustJSON(want[i])); got[i] != w {
					t.Errorf("chat=%v out=%d event %d:\n got %s\nwant %s", chat, out, i, got[i], w)
				}
			}
		}
	}
}
