package server

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
)

// This file applies stop strings and stop token ids to a planned output,
// and makes the log-probabilities of its tokens.

// nullJSON is a JSON null, the stop_reason of an EOS or length finish.
var nullJSON = json.RawMessage("null")

// tokenID is the id of output token k (the tokenizer's id of its piece).
func (g *generation) tokenID(k int) int {
	w, m := tokenAt(g.textSeed, k)
	return tokenizer.PieceID(w, m, !(k == 0 && g.p.Chat))
}

// tokenText is the untruncated text of output token k.
func (g *generation) tokenText(k int) string {
	w, m := tokenAt(g.textSeed, k)
	if k == 0 && g.p.Chat {
		return tokenizer.Words[w] + tokenizer.Marks[m]
	}
	return " " + tokenizer.Words[w] + tokenizer.Marks[m]
}

// applyStop ends the planned output early where vLLM would stop it: at the
// first output token (once min_tokens are out) that is one of
// stop_token_ids (vllm/v1/core/sched/utils.py check_stop: finish "stop",
// stop_reason the id, the token's text left out of the output, as V1's
// detokenizer does) or that completes one of the stop strings
// (vllm/v1/engine/detokenizer.py check_stop_strings: strings tried in
// order, the text cut before the match, stop_reason the string). It
// returns the new output length and finish reason and sets g.texts and
// g.stopReason. Without stop conditions it changes nothing.
func (g *generation) applyStop(out int, reason string) (int, string) {
	g.stopReason = nullJSON
	p := &g.p
	if len(p.Stop) == 0 && len(p.StopTokenIDs) == 0 {
		return out, reason
	}
	longest := 0
	for _, s := range p.Stop {
		longest = max(longest, len(s))
	}
	var full strings.Builder
	offs := make([]int, 0, out+1)
	for k := 0; k < out; k++ {
		offs = append(offs, full.Len())
		full.WriteString(g.tokenText(k))
		if k+1 < p.MinTokens {
			continue
		}
		id := g.tokenID(k)
		for _, sid := range p.StopTokenIDs {
			if id == sid {
				g.stopReason = json.RawMessage(strconv.Itoa(id))
				g.cut(full.String()[:offs[k]], offs, k+1)
				return k + 1, openai.FinishStop
			}
		}
		text := full.String()
		from := max(0, offs[k]-longest+1)
		for _, s := range p.Stop {
			if i := strings.Index(text[from:], s); i >= 0 {
				g.stopReason, _ = json.Marshal(s)
				g.cut(text[:from+i], offs, k+1)
				return k + 1, openai.FinishStop
			}
		}
	}
	return out, reason
}

// cut sets g.texts to the per-token pieces of final, the output text that
// survives a stop: token k's piece is final[offs[k]:offs[k+1]], clipped.
func (g *generation) cut(final string, offs []int, n int) {
	g.texts = make([]string, n)
	for k := range n {
		from, to := offs[k], len(final)
		if k+1 < len(offs) {
			to = offs[k+1]
		}
		from, to = min(from, len(final)), min(to, len(final))
		g.texts[k] = final[from:to]
	}
}

// candidates are the log-probabilities at output position k: the chosen
// token first (the simulated model samples its most likely token), then
// alternatives of falling probability, n in all (at least the chosen one).
// The values are deterministic in the sequence's seed; they are shaped like
// a confident small model's (chosen p in [0.35, 0.99], above every
// alternative's), not measured.
func (g *generation) candidates(k, n int) []openai.TokenLogprob {
	r := splitmix64(g.textSeed ^ (uint64(k)+1)*0xd1b54a32d192ed03)
	p0 := 0.35 + 0.64*float64(r>>11)/(1<<53)
	out := make([]openai.TokenLogprob, 0, max(n, 1))
	out = append(out, openai.TokenLogprob{Token: g.tokenText(k), Logprob: math.Log(p0)})
	w, m := tokenAt(g.textSeed, k)
	rest := 1 - p0
	for j := 1; j < n; j++ {
		rest /= 2
		// Distinct words: a stride co-prime with the vocabulary size.
		alt := (w + j*37) % len(tokenizer.Words)
		text := tokenizer.Words[alt] + tokenizer.Marks[m]
		if !(k == 0 && g.p.Chat) {
			text = " " + text
		}
		out = append(out, openai.TokenLogprob{Token: text, Logprob: math.Log(rest)})
	}
	return out
}

// completionLogprobs is the completions "logprobs" of tokens [from, to),
// whose text starts at offset.
func (g *generation) completionLogprobs(from, to, offset int) json.RawMessage {
	lp := openai.CompletionLogprobs{
		TextOffset: []int{}, TokenLogprobs: []float64{}, Tokens: []string{}, TopLogprobs: []openai.TopLogprobs{},
	}
	for k := from; k < to; k++ {
		c := g.candidates(k, g.p.TopLogprobs)
		lp.TextOffset = append(lp.TextOffset, offset)
		lp.TokenLogprobs = append(lp.TokenLogprobs, c[0].Logprob)
		lp.Tokens = append(lp.Tokens, c[0].Token)
		lp.TopLogprobs = append(lp.TopLogprobs, c)
		offset += len(c[0].Token)
	}
	return mustJSON(lp)
}

// chatLogprobs is the chat "logprobs" of tokens [from, to).
func (g *generation) chatLogprobs(from, to int) json.RawMessage {
	lp := openai.ChatLogprobs{Content: []openai.ChatLogprobContent{}}
	for k := from; k < to; k++ {
		c := g.candidates(k, g.p.TopLogprobs)
		top := make([]openai.ChatTopLogprob, 0, g.p.TopLogprobs)
		for _, t := range c[:g.p.TopLogprobs] {
			top = append(top, openai.ChatTopLogprob{Token: t.Token, Logprob: t.Logprob, Bytes: byteInts(t.Token)})
		}
		lp.Content = append(lp.Content, openai.ChatLogprobContent{
			Token: c[0].Token, Logprob: c[0].Logprob, Bytes: byteInts(c[0].Token), TopLogprobs: top,
		})
	}
	return mustJSON(lp)
}

func byteInts(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}

// logprobs is the "logprobs" value of tokens [from, to): null unless asked.
func (g *generation) logprobs(from, to, offset int) json.RawMessage {
	switch {
	case !g.p.Logprobs:
		return nullJSON
	case g.p.Chat:
		return g.chatLogprobs(from, to)
	}
	return g.completionLogprobs(from, to, offset)
}
