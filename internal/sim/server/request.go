package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/llmlab/llmlab/internal/openai"
)

// genParams is a validated generation request, chat or completion.
type genParams struct {
	chat         bool
	model        string
	promptTokens int
	promptHash   uint64
	promptIDs    []int32 // prompt token ids, for the engine's prefix cache
	maxTokens    int
	minTokens    int
	ignoreEOS    bool
	temperature  float64
	seed         *int64
	stream       bool
	includeUsage bool
}

// limits is what request validation needs to know about the server.
type limits struct {
	servedName  string
	maxModelLen int
	vocab       int // token ids must be below it; 0: unchecked
}

// errorf builds an OpenAI error response.
func errorf(status int, format string, args ...any) *openai.ErrorResponse {
	e := openai.NewError(status, fmt.Sprintf(format, args...))
	return &e
}

// decodeJSON unmarshals a request body, turning decoder errors into clear
// 400 messages.
func decodeJSON(body []byte, v any) *openai.ErrorResponse {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case len(body) == 0:
		return errorf(http.StatusBadRequest, "Request body is empty; expected a JSON object.")
	case errors.As(err, &syn):
		return errorf(http.StatusBadRequest, "Invalid JSON in request body at offset %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return errorf(http.StatusBadRequest, "Request body must be a JSON object, got JSON %s.", typ.Value)
	case errors.As(err, &typ):
		return errorf(http.StatusBadRequest, "Invalid type for '%s': expected %s, got JSON %s.", typ.Field, typ.Type, typ.Value)
	}
	return errorf(http.StatusBadRequest, "Invalid request body: %v", err)
}

// parseCompletion parses and validates a /v1/completions body.
func parseCompletion(body []byte, lim limits) (genParams, *openai.ErrorResponse) {
	var req openai.CompletionRequest
	if e := decodeJSON(body, &req); e != nil {
		return genParams{}, e
	}
	if e := checkModel(req.Model, lim); e != nil {
		return genParams{}, e
	}
	p := genParams{model: lim.servedName, stream: req.Stream, ignoreEOS: req.IgnoreEOS}
	switch {
	case req.Prompt.Count == 0:
		return p, errorf(http.StatusBadRequest, "Field 'prompt' is required.")
	case req.Prompt.Count > 1:
		return p, errorf(http.StatusBadRequest,
			"Batched prompts are not supported by the simulated engine (got %d prompts); send one prompt per request.", req.Prompt.Count)
	case req.Prompt.IsTokens:
		for _, id := range req.Prompt.TokenIDs {
			// vLLM refuses ids the model has no embedding for.
			if id < 0 || (lim.vocab > 0 && id >= lim.vocab) {
				return p, errorf(http.StatusBadRequest, "Token id %d is out of vocabulary.", id)
			}
		}
		p.promptTokens = len(req.Prompt.TokenIDs)
		p.promptHash = hashTokens(req.Prompt.TokenIDs)
		p.promptIDs = tokenIDs32(req.Prompt.TokenIDs)
	default:
		p.promptTokens = CountTokens(req.Prompt.Text)
		p.promptHash = hashText(req.Prompt.Text)
		p.promptIDs = appendTokenIDs(nil, req.Prompt.Text)
	}
	if e := p.sampling(req.N, req.Temperature, req.TopP, req.Seed, req.MinTokens, req.StreamOptions); e != nil {
		return p, e
	}
	return p, p.resolveMaxTokens(req.MaxTokens, lim)
}

// parseChat parses and validates a /v1/chat/completions body.
func parseChat(body []byte, lim limits) (genParams, *openai.ErrorResponse) {
	var req openai.ChatCompletionRequest
	if e := decodeJSON(body, &req); e != nil {
		return genParams{}, e
	}
	if e := checkModel(req.Model, lim); e != nil {
		return genParams{}, e
	}
	p := genParams{chat: true, model: lim.servedName, stream: req.Stream, ignoreEOS: req.IgnoreEOS}
	if len(req.Messages) == 0 {
		return p, errorf(http.StatusBadRequest, "Field 'messages' is required and must hold at least one message.")
	}
	turns := make([]ChatTurn, 0, len(req.Messages))
	for i, m := range req.Messages {
		if m.Role == "" {
			return p, errorf(http.StatusBadRequest, "messages[%d]: field 'role' is required.", i)
		}
		text, err := m.Text()
		if err != nil {
			return p, errorf(http.StatusBadRequest, "messages[%d]: %v", i, err)
		}
		turns = append(turns, ChatTurn{Role: m.Role, Content: text})
	}
	rendered := RenderChat(turns)
	p.promptTokens = CountTokens(rendered)
	p.promptHash = hashText(rendered)
	p.promptIDs = appendTokenIDs(nil, rendered)
	if e := p.sampling(req.N, req.Temperature, req.TopP, req.Seed, req.MinTokens, req.StreamOptions); e != nil {
		return p, e
	}
	maxTokens := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		// max_completion_tokens replaces the deprecated max_tokens.
		maxTokens = req.MaxCompletionTokens
	}
	return p, p.resolveMaxTokens(maxTokens, lim)
}

// checkModel accepts the served name, or an omitted model (vLLM then uses
// its only model).
func checkModel(model string, lim limits) *openai.ErrorResponse {
	if model == "" || model == lim.servedName {
		return nil
	}
	return errorf(http.StatusNotFound, "The model `%s` does not exist.", model)
}

// sampling validates the sampling parameters with vLLM's messages.
func (p *genParams) sampling(n *int, temp, topP *float64, seed *int64, minTokens *int, so *openai.StreamOptions) *openai.ErrorResponse {
	if n != nil {
		switch {
		case *n < 1:
			return errorf(http.StatusBadRequest, "n must be at least 1, got %d.", *n)
		case *n > 1:
			return errorf(http.StatusBadRequest, "n > 1 is not supported by the simulated engine (got n=%d); send n requests instead.", *n)
		}
	}
	p.temperature = 1.0 // vLLM's default when the field is omitted
	if temp != nil {
		if *temp < 0 {
			return errorf(http.StatusBadRequest, "temperature must be non-negative, got %v.", *temp)
		}
		p.temperature = *temp
	}
	if topP != nil && (*topP <= 0 || *topP > 1) {
		return errorf(http.StatusBadRequest, "top_p must be in (0, 1], got %v.", *topP)
	}
	p.seed = seed
	if minTokens != nil {
		if *minTokens < 0 {
			return errorf(http.StatusBadRequest, "min_tokens must be greater than or equal to 0, got %d.", *minTokens)
		}
		p.minTokens = *minTokens
	}
	if so != nil {
		if !p.stream {
			return errorf(http.StatusBadRequest, "Stream options can only be defined when `stream=True`.")
		}
		p.includeUsage = so.IncludeUsage
	}
	return nil
}

// resolveMaxTokens checks the prompt and max_tokens against the context
// length with vLLM's texts, and applies vLLM's default (the rest of the
// context) when max_tokens is omitted.
func (p *genParams) resolveMaxTokens(maxTokens *int, lim limits) *openai.ErrorResponse {
	if p.promptTokens == 0 {
		return errorf(http.StatusBadRequest, "The decoder prompt cannot be empty")
	}
	if maxTokens != nil && *maxTokens < 1 {
		return errorf(http.StatusBadRequest, "max_tokens must be at least 1, got %d.", *maxTokens)
	}
	if p.promptTokens >= lim.maxModelLen {
		return errorf(http.StatusBadRequest,
			"This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.",
			lim.maxModelLen, p.promptTokens)
	}
	if maxTokens == nil {
		p.maxTokens = lim.maxModelLen - p.promptTokens
	} else {
		p.maxTokens = *maxTokens
		// Compared as a difference and summed unsigned: max_tokens near
		// MaxInt64 would wrap prompt+max_tokens negative, pass the check
		// and leave a request that never ends.
		if p.maxTokens > lim.maxModelLen-p.promptTokens {
			return errorf(http.StatusBadRequest,
				"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				lim.maxModelLen, uint64(p.promptTokens)+uint64(p.maxTokens), p.promptTokens, p.maxTokens)
		}
	}
	if p.minTokens > p.maxTokens {
		return errorf(http.StatusBadRequest, "min_tokens must be less than or equal to max_tokens=%d, got %d.", p.maxTokens, p.minTokens)
	}
	return nil
}

// plan decides the request's output: the seed of its text, how many tokens
// it produces and why it stops. counter distinguishes unseeded sampled
// requests.
func (p *genParams) plan(serverSeed int64, counter uint64) (textSeed uint64, outTokens int, reason string) {
	switch {
	case p.temperature == 0:
		textSeed = p.promptHash
	case p.seed != nil:
		textSeed = splitmix64(p.promptHash ^ splitmix64(uint64(*p.seed)))
	default:
		textSeed = splitmix64(p.promptHash ^ splitmix64(uint64(serverSeed)+counter*0x9e3779b97f4a7c15))
	}
	if p.ignoreEOS {
		return textSeed, p.maxTokens, openai.FinishLength
	}
	n := max(naturalLength(textSeed), p.minTokens)
	if n >= p.maxTokens {
		return textSeed, p.maxTokens, openai.FinishLength
	}
	return textSeed, n, openai.FinishStop
}
