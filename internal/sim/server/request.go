package server

import (
	"fmt"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
	"github.com/llmlab/llmlab/internal/validate"
)

// genParams is a validated generation request, chat or completion, with the
// hash of its prompt (the seed of greedy output).
type genParams struct {
	validate.Request
	promptHash uint64
	promptIDs  []int32 // prompt token ids, for the engine's prefix cache
}

// errorf builds an OpenAI error response.
func errorf(status int, format string, args ...any) *openai.ErrorResponse {
	e := openai.NewError(status, fmt.Sprintf(format, args...))
	return &e
}

// parseCompletion parses and validates a /v1/completions body with the
// validation the gateway shares.
func parseCompletion(body []byte, lim validate.Limits) (genParams, *openai.ErrorResponse) {
	r, e := validate.Completion(body, lim)
	return withHash(r), e
}

// parseChat parses and validates a /v1/chat/completions body.
func parseChat(body []byte, lim validate.Limits) (genParams, *openai.ErrorResponse) {
	r, e := validate.Chat(body, lim)
	return withHash(r), e
}

func withHash(r validate.Request) genParams {
	p := genParams{Request: r}
	ids := r.PromptIDs
	if ids != nil {
		p.promptHash = hashTokens(ids)
	} else {
		p.promptHash = hashText(r.PromptText)
		ids = tokenizer.Encode(r.PromptText)
	}
	p.promptIDs = make([]int32, len(ids))
	for i, id := range ids {
		p.promptIDs[i] = int32(id)
	}
	return p
}

// plan decides the request's output: the seed of its text, how many tokens
// it produces and why it stops. counter distinguishes unseeded sampled
// requests.
func (p *genParams) plan(serverSeed int64, counter uint64) (textSeed uint64, outTokens int, reason string) {
	switch {
	case p.Temperature == 0:
		textSeed = p.promptHash
	case p.Seed != nil:
		textSeed = splitmix64(p.promptHash ^ splitmix64(uint64(*p.Seed)))
	default:
		textSeed = splitmix64(p.promptHash ^ splitmix64(uint64(serverSeed)+counter*0x9e3779b97f4a7c15))
	}
	if p.IgnoreEOS {
		return textSeed, p.MaxTokens, openai.FinishLength
	}
	n := max(naturalLength(textSeed), p.MinTokens)
	if n >= p.MaxTokens {
		return textSeed, p.MaxTokens, openai.FinishLength
	}
	return textSeed, n, openai.FinishStop
}
