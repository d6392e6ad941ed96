// Package validate checks OpenAI-style generation requests the way vLLM
// does, before any engine sees them. The simulated engine
// (internal/sim/server) and the gateway (internal/gateway) both call it, so
// a request the worker would refuse gets the same status and the same
// vLLM message from the gateway, without waking a stopped worker.
//
// Messages follow vLLM 0.10–0.11: SamplingParams._verify_args
// (vllm/sampling_params.py) for parameter ranges, the serving layer's
// context-length check (vllm/entrypoints/openai/serving_engine.py,
// _validate_input) for prompt and max_tokens, and the model check
// (serving_engine.py, _check_model) for unknown models. Prompts are counted
// with internal/tokenizer, the simulated model's tokenizer.
package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/tokenizer"
	fastjson "github.com/segmentio/encoding/json"
)

// Limits is what validation needs to know about the served model.
type Limits struct {
	// ServedName is the model name clients must use (an omitted model
	// means this one, as with vLLM).
	ServedName string
	// MaxModelLen is the context length: prompt + output tokens.
	MaxModelLen int
	// Vocab bounds token ids (ids must be below it); 0 leaves them
	// unchecked.
	Vocab int
	// MaxN is the largest n accepted; 0 means no limit. The simulated
	// engine serves n = 1 only.
	MaxN int
	// MaxLogprobs is vLLM's --max-logprobs (default 20).
	MaxLogprobs int
	// SkipTextLength leaves the length checks of text prompts to the
	// worker: set it when the worker's tokenizer is not the simulated one
	// (a real vLLM), whose counts internal/tokenizer only approximates.
	// Token-id prompts are always checked exactly.
	SkipTextLength bool
}

// DefaultMaxLogprobs is vLLM's --max-logprobs default (vllm/config: 20).
const DefaultMaxLogprobs = 20

// Roles are the chat roles accepted.
var Roles = []string{"system", "user", "assistant", "tool", "developer"}

// Request is a validated generation request, chat or completion.
type Request struct {
	Chat  bool
	Model string // the served name
	// PromptTokens is the prompt's length in tokens; PromptText the text
	// prompt (chat: rendered with the chat template) and PromptIDs the
	// token-id prompt (nil for a text prompt).
	PromptTokens int
	PromptText   string
	PromptIDs    []int
	// MaxTokens is the output limit (vLLM's default, the rest of the
	// context, when omitted).
	MaxTokens    int
	MinTokens    int
	IgnoreEOS    bool
	Temperature  float64 // 1.0 when omitted, as in vLLM
	Seed         *int64
	Stream       bool
	IncludeUsage bool
	Stop         []string
	StopTokenIDs []int
	// Logprobs is set when log-probabilities were asked for; TopLogprobs is
	// then how many alternatives to return per position (0: the chosen
	// token only).
	Logprobs    bool
	TopLogprobs int
}

// Error is a refusal: an OpenAI-shaped body whose Code is the HTTP status.
type Error = openai.ErrorResponse

func errorf(status int, format string, args ...any) *Error {
	e := openai.NewError(status, fmt.Sprintf(format, args...))
	return &e
}

func badf(format string, args ...any) *Error { return errorf(http.StatusBadRequest, format, args...) }

// decode unmarshals a request body, turning decoder errors into clear 400
// messages.
//
// Every request through the gateway is decoded here, and encoding/json was
// a tenth of the gateway's CPU per proxied request (docs/results.md §13.3),
// so the body is decoded by segmentio/encoding/json, which has
// encoding/json's semantics (keys matched case-insensitively, the last of
// a duplicated key wins, the same Unmarshaler calls) at about a third of
// the cost; FuzzDecoders holds the two to the same results. A body it
// refuses is decoded again by encoding/json, whose verdict stands and
// whose errors name the field, its type and the offending value (the fast
// decoder's quote the rest of the body and give no offset). A
// /v1/completions body of the common shape does not even get there:
// openai.DecodeCompletion decodes it in one pass without reflection
// (§13.5; FuzzCompletionFast holds it to encoding/json).
func decode(body []byte, v any) *Error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badf("Request body is empty; expected a JSON object.")
	}
	if !utf8.Valid(body) {
		// encoding/json would silently turn the bad bytes into U+FFFD; a
		// Python server fails to decode the body.
		return badf("Request body is not valid UTF-8 (first invalid byte at offset %d).", invalidAt(body))
	}
	// After the UTF-8 check: DecodeCompletion, like encoding/json, keeps
	// stop's raw bytes whatever they are.
	if r, ok := v.(*openai.CompletionRequest); ok && openai.DecodeCompletion(body, r) {
		return nil
	}
	if fastjson.Unmarshal(body, v) == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // no half-decoded fields carried over
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badf("Invalid JSON in request body at offset %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return badf("Request body must be a JSON object, got JSON %s.", typ.Value)
	case errors.As(err, &typ):
		return badf("Invalid type for '%s': expected %s, got JSON %s.", typ.Field, typ.Type, typ.Value)
	}
	return badf("Invalid request body: %v", err)
}

func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// Completion parses and validates a /v1/completions body.
func Completion(body []byte, lim Limits) (Request, *Error) {
	var req openai.CompletionRequest
	if e := decode(body, &req); e != nil {
		return Request{}, e
	}
	if e := checkModel(req.Model, lim); e != nil {
		return Request{}, e
	}
	r := Request{Model: lim.ServedName, Stream: req.Stream, IgnoreEOS: req.IgnoreEOS}
	switch {
	case req.Prompt.Count == 0:
		return r, badf("Field 'prompt' is required.")
	case req.Prompt.Count > 1:
		return r, badf("Batched prompts are not supported by the simulated engine (got %d prompts); send one prompt per request.", req.Prompt.Count)
	case req.Prompt.IsTokens:
		if e := checkIDs(req.Prompt.TokenIDs, lim); e != nil {
			return r, e
		}
		r.PromptIDs = req.Prompt.TokenIDs
		r.PromptTokens = len(req.Prompt.TokenIDs)
	default:
		r.PromptText = req.Prompt.Text
		r.PromptTokens = tokenizer.Count(req.Prompt.Text)
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 {
			return r, badf("logprobs must be non-negative, got %d.", *req.Logprobs)
		}
		if e := checkMaxLogprobs(*req.Logprobs, lim); e != nil {
			return r, e
		}
		r.Logprobs, r.TopLogprobs = true, *req.Logprobs
	}
	s := sampling{
		n: req.N, temp: req.Temperature, topP: req.TopP, seed: req.Seed, minTokens: req.MinTokens,
		so: req.StreamOptions, stop: req.Stop, ext: req.VLLMSampling,
	}
	if e := s.apply(&r, lim); e != nil {
		return r, e
	}
	return r, r.resolveMaxTokens(req.MaxTokens, lim)
}

// Chat parses and validates a /v1/chat/completions body.
func Chat(body []byte, lim Limits) (Request, *Error) {
	var req openai.ChatCompletionRequest
	if e := decode(body, &req); e != nil {
		return Request{}, e
	}
	if e := checkModel(req.Model, lim); e != nil {
		return Request{}, e
	}
	r := Request{Chat: true, Model: lim.ServedName, Stream: req.Stream, IgnoreEOS: req.IgnoreEOS}
	if len(req.Messages) == 0 {
		return r, badf("Field 'messages' is required and must hold at least one message.")
	}
	text, e := RenderMessages(req.Messages)
	if e != nil {
		return r, e
	}
	r.PromptText = text
	r.PromptTokens = tokenizer.Count(r.PromptText)
	// vLLM's ChatCompletionRequest.check_logprobs (protocol.py).
	if req.TopLogprobs != nil {
		if !req.Logprobs {
			return r, badf("when using `top_logprobs`, `logprobs` must be set to true.")
		}
		if *req.TopLogprobs < 0 {
			return r, badf("`top_logprobs` must be a positive value.")
		}
		if e := checkMaxLogprobs(*req.TopLogprobs, lim); e != nil {
			return r, e
		}
	}
	if req.Logprobs {
		r.Logprobs = true
		if req.TopLogprobs != nil {
			r.TopLogprobs = *req.TopLogprobs
		}
	}
	s := sampling{
		n: req.N, temp: req.Temperature, topP: req.TopP, seed: req.Seed, minTokens: req.MinTokens,
		so: req.StreamOptions, stop: req.Stop, ext: req.VLLMSampling,
	}
	if e := s.apply(&r, lim); e != nil {
		return r, e
	}
	maxTokens := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		// max_completion_tokens replaces the deprecated max_tokens.
		maxTokens = req.MaxCompletionTokens
	}
	return r, r.resolveMaxTokens(maxTokens, lim)
}

// RenderMessages checks each message's role and content and renders the
// chat with the simulated model's template (tokenizer.RenderChat).
func RenderMessages(msgs []openai.ChatMessage) (string, *Error) {
	turns := make([]tokenizer.ChatTurn, 0, len(msgs))
	for i, m := range msgs {
		if m.Role == "" {
			return "", badf("messages[%d]: field 'role' is required.", i)
		}
		if !validRole(m.Role) {
			return "", badf("messages[%d]: unknown role '%s'; expected one of %s.", i, m.Role, strings.Join(Roles, ", "))
		}
		text, err := m.Text()
		if err != nil {
			return "", badf("messages[%d]: %v", i, err)
		}
		turns = append(turns, tokenizer.ChatTurn{Role: m.Role, Content: text})
	}
	return tokenizer.RenderChat(turns), nil
}

// Decode is the body decoding every route shares (empty body, invalid
// UTF-8, JSON syntax and type errors, each a 400 with a clear message).
func Decode(body []byte, v any) *Error { return decode(body, v) }

func validRole(role string) bool {
	for _, r := range Roles {
		if role == r {
			return true
		}
	}
	return false
}

// checkModel accepts the served name, or an omitted model (vLLM then uses
// its only model). The message is vLLM's (serving_engine.py _check_model).
func checkModel(model string, lim Limits) *Error {
	if model == "" || model == lim.ServedName {
		return nil
	}
	return errorf(http.StatusNotFound, "The model `%s` does not exist.", model)
}

// CheckModel is checkModel for routes that validate nothing else.
func CheckModel(model string, lim Limits) *Error { return checkModel(model, lim) }

// checkIDs refuses token ids the model has no embedding for.
func checkIDs(ids []int, lim Limits) *Error {
	for _, id := range ids {
		if id < 0 || (lim.Vocab > 0 && id >= lim.Vocab) {
			return badf("Token id %d is out of vocabulary.", id)
		}
	}
	return nil
}

// CheckIDs is checkIDs for /detokenize.
func CheckIDs(ids []int, lim Limits) *Error { return checkIDs(ids, lim) }

// checkMaxLogprobs is vLLM V1's Processor._validate_logprobs.
func checkMaxLogprobs(n int, lim Limits) *Error {
	limit := lim.MaxLogprobs
	if limit == 0 {
		limit = DefaultMaxLogprobs
	}
	if n > limit {
		return badf("Requested sample logprobs of %d, which is greater than max allowed: %d", n, limit)
	}
	return nil
}

// sampling holds the sampling fields that completions and chat share.
type sampling struct {
	n          *int
	temp, topP *float64
	seed       *int64
	minTokens  *int
	so         *openai.StreamOptions
	stop       json.RawMessage
	ext        openai.VLLMSampling
}

// apply validates the sampling parameters with vLLM's messages
// (SamplingParams._verify_args) and copies them into r.
func (s sampling) apply(r *Request, lim Limits) *Error {
	if s.n != nil {
		switch {
		case *s.n < 1:
			return badf("n must be at least 1, got %d.", *s.n)
		case lim.MaxN > 0 && *s.n > lim.MaxN:
			return badf("n > %d is not supported by the simulated engine (got n=%d); send n requests instead.", lim.MaxN, *s.n)
		}
	}
	for _, p := range []struct {
		name string
		v    *float64
	}{{"presence_penalty", s.ext.PresencePenalty}, {"frequency_penalty", s.ext.FrequencyPenalty}} {
		if p.v != nil && (*p.v < -2 || *p.v > 2) {
			return badf("%s must be in [-2, 2], got %v.", p.name, *p.v)
		}
	}
	if s.ext.RepetitionPenalty != nil && *s.ext.RepetitionPenalty <= 0 {
		return badf("repetition_penalty must be greater than zero, got %v.", *s.ext.RepetitionPenalty)
	}
	r.Temperature = 1.0 // vLLM's default when the field is omitted
	if s.temp != nil {
		if *s.temp < 0 {
			return badf("temperature must be non-negative, got %v.", *s.temp)
		}
		r.Temperature = *s.temp
	}
	if s.topP != nil && (*s.topP <= 0 || *s.topP > 1) {
		return badf("top_p must be in (0, 1], got %v.", *s.topP)
	}
	if s.ext.TopK != nil && *s.ext.TopK < -1 {
		return badf("top_k must be 0 (disable), or at least 1, got %d.", *s.ext.TopK)
	}
	if s.ext.MinP != nil && (*s.ext.MinP < 0 || *s.ext.MinP > 1) {
		return badf("min_p must be in [0, 1], got %v.", *s.ext.MinP)
	}
	r.Seed = s.seed
	if s.minTokens != nil {
		if *s.minTokens < 0 {
			return badf("min_tokens must be greater than or equal to 0, got %d.", *s.minTokens)
		}
		r.MinTokens = *s.minTokens
	}
	if s.so != nil {
		if !r.Stream {
			return badf("Stream options can only be defined when `stream=True`.")
		}
		r.IncludeUsage = s.so.IncludeUsage
	}
	stop, e := parseStop(s.stop)
	if e != nil {
		return e
	}
	r.Stop = stop
	if e := checkIDs(s.ext.StopTokenIDs, lim); e != nil {
		return e
	}
	r.StopTokenIDs = s.ext.StopTokenIDs
	return nil
}

// parseStop accepts "stop" as a string or a list of strings, as OpenAI and
// vLLM do; empty strings are dropped (they would match everywhere).
func parseStop(raw json.RawMessage) ([]string, *Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badf("Invalid type for 'stop': expected a string or a list of strings.")
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// resolveMaxTokens checks the prompt and max_tokens against the context
// length with vLLM's texts, and applies vLLM's default (the rest of the
// context) when max_tokens is omitted.
func (r *Request) resolveMaxTokens(maxTokens *int, lim Limits) *Error {
	if r.PromptTokens == 0 {
		return badf("The decoder prompt cannot be empty")
	}
	if maxTokens != nil && *maxTokens < 1 {
		return badf("max_tokens must be at least 1, got %d.", *maxTokens)
	}
	if lim.SkipTextLength && r.PromptIDs == nil {
		// The worker counts with its own tokenizer; only what holds for
		// any prompt of at least one token is checked here.
		if maxTokens == nil {
			return nil
		}
		r.MaxTokens = *maxTokens
		if r.MaxTokens >= lim.MaxModelLen {
			return badf("This model's maximum context length is %d tokens. However, you requested more than %d tokens (at least 1 in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				lim.MaxModelLen, r.MaxTokens, r.MaxTokens)
		}
		if r.MinTokens > r.MaxTokens {
			return badf("min_tokens must be less than or equal to max_tokens=%d, got %d.", r.MaxTokens, r.MinTokens)
		}
		return nil
	}
	if r.PromptTokens >= lim.MaxModelLen {
		return badf("This model's maximum context length is %d tokens. However, your request has %d input tokens. Please reduce the length of the input messages.",
			lim.MaxModelLen, r.PromptTokens)
	}
	if maxTokens == nil {
		r.MaxTokens = lim.MaxModelLen - r.PromptTokens
	} else {
		r.MaxTokens = *maxTokens
		// Compared as a difference and summed unsigned: max_tokens near
		// MaxInt64 would wrap prompt+max_tokens negative, pass the check
		// and leave a request that never ends.
		if r.MaxTokens > lim.MaxModelLen-r.PromptTokens {
			return badf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				lim.MaxModelLen, uint64(r.PromptTokens)+uint64(r.MaxTokens), r.PromptTokens, r.MaxTokens)
		}
	}
	if r.MinTokens > r.MaxTokens {
		return badf("min_tokens must be less than or equal to max_tokens=%d, got %d.", r.MaxTokens, r.MinTokens)
	}
	return nil
}
