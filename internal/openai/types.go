// Package openai holds the OpenAI-compatible wire types that vLLM speaks and
// that llmlab's gateway, simulated engine and load generator share, plus a
// small Server-Sent Events reader and writer for streaming responses.
//
// Only the fields vLLM documents for /v1/completions and /v1/chat/completions
// are modelled; unknown fields are ignored on input, as vLLM does.
package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// StreamOptions mirrors stream_options.
type StreamOptions struct {
	IncludeUsage         bool `json:"include_usage,omitempty"`
	ContinuousUsageStats bool `json:"continuous_usage_stats,omitempty"`
}

// Prompt is the prompt of /v1/completions: a string, or a list of token ids
// (exact input length without a tokenizer). A list holding exactly one string
// or one token list is accepted too; batches of several prompts are rejected
// with a clear error by Validate.
type Prompt struct {
	Text     string
	TokenIDs []int
	// IsTokens is true when the prompt was given as token ids.
	IsTokens bool
	// Count is how many prompts the field held (1 for a plain string or
	// token list); >1 means a batch.
	Count int
}

// UnmarshalJSON accepts the shapes vLLM accepts for "prompt".
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*p = Prompt{}
		return nil
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = Prompt{Text: s, Count: 1}
		return nil
	case '[':
		// The common shape (a flat list of token ids, as every benchmark
		// client sends) is parsed directly: through encoding/json it cost
		// ~150 µs and 230 allocations for 200 ids, more than the rest of
		// the gateway's work on a request. Anything the fast path does not
		// accept goes the general way below, which gives the errors.
		if ids, ok := parseIntList(b); ok {
			*p = Prompt{TokenIDs: ids, IsTokens: true, Count: 1}
			return nil
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		if len(raw) == 0 {
			*p = Prompt{IsTokens: true, Count: 1}
			return nil
		}
		first := bytes.TrimSpace(raw[0])
		switch {
		case len(first) > 0 && (first[0] == '-' || (first[0] >= '0' && first[0] <= '9')):
			var ids []int
			if err := json.Unmarshal(b, &ids); err != nil {
				return errors.New("prompt: a token list must hold only integers")
			}
			*p = Prompt{TokenIDs: ids, IsTokens: true, Count: 1}
			return nil
		case len(first) > 0 && first[0] == '"':
			var ss []string
			if err := json.Unmarshal(b, &ss); err != nil {
				return errors.New("prompt: a list of prompts must hold only strings")
			}
			*p = Prompt{Text: ss[0], Count: len(ss)}
			return nil
		case len(first) > 0 && first[0] == '[':
			var lists [][]int
			if err := json.Unmarshal(b, &lists); err != nil {
				return errors.New("prompt: a list of token lists must hold only integers")
			}
			*p = Prompt{TokenIDs: lists[0], IsTokens: true, Count: len(lists)}
			return nil
		}
	}
	return fmt.Errorf("prompt must be a string, a list of token ids or a list of strings, got %s", truncate(string(b), 40))
}

// MarshalJSON writes the prompt back in its original single-prompt shape.
func (p Prompt) MarshalJSON() ([]byte, error) {
	if p.IsTokens {
		ids := p.TokenIDs
		if ids == nil {
			ids = []int{}
		}
		return json.Marshal(ids)
	}
	return json.Marshal(p.Text)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model         string          `json:"model"`
	Prompt        Prompt          `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	N             *int            `json:"n,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	StreamOptions *StreamOptions  `json:"stream_options,omitempty"`
	Stop          json.RawMessage `json:"stop,omitempty"`
	Seed          *int64          `json:"seed,omitempty"`
	User          string          `json:"user,omitempty"`
	// Logprobs asks for the log-probabilities of the chosen token and of
	// this many most likely alternatives at each position.
	Logprobs *int `json:"logprobs,omitempty"`
	VLLMSampling
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	MinTokens *int `json:"min_tokens,omitempty"`
}

// ChatMessage is one message of a chat request. Content may be a string or a
// list of parts; Text() joins the text parts.
type ChatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one element of an array-shaped message content.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Text returns the message's text content, or an error if the content has a
// shape that is neither a string nor a list of text parts.
func (m ChatMessage) Text() (string, error) {
	c := bytes.TrimSpace(m.Content)
	if len(c) == 0 || string(c) == "null" {
		return "", nil
	}
	switch c[0] {
	case '"':
		var s string
		err := json.Unmarshal(c, &s)
		return s, err
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(c, &parts); err != nil {
			return "", errors.New("message content must be a string or a list of text parts")
		}
		var buf bytes.Buffer
		for _, p := range parts {
			if p.Type != "text" {
				return "", fmt.Errorf("message content part of type %q is not supported", p.Type)
			}
			buf.WriteString(p.Text)
		}
		return buf.String(), nil
	}
	return "", errors.New("message content must be a string or a list of text parts")
}

// TextMessage builds a message with plain string content.
func TextMessage(role, text string) ChatMessage {
	b, _ := json.Marshal(text)
	return ChatMessage{Role: role, Content: b}
}

// ChatCompletionRequest is the body of POST /v1/chat/completions.
type ChatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	User                string          `json:"user,omitempty"`
	// Logprobs asks for the chosen tokens' log-probabilities; TopLogprobs
	// for that many alternatives at each position too.
	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs *int `json:"top_logprobs,omitempty"`
	VLLMSampling
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	MinTokens *int `json:"min_tokens,omitempty"`
}

// Usage is the token accounting vLLM returns.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// CompletionChoice is one choice of a completion (whole or streamed chunk).
type CompletionChoice struct {
	Index        int             `json:"index"`
	Text         string          `json:"text"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
	StopReason   json.RawMessage `json:"stop_reason,omitempty"`
}

// CompletionResponse is the body of a /v1/completions response, and each
// streamed chunk of one (Object "text_completion" in both cases, as in vLLM).
type CompletionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// ChatChoice is one choice of a whole chat completion.
type ChatChoice struct {
	Index        int             `json:"index"`
	Message      ChatOutMessage  `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
	// StopReason is the stop string or token id that ended the choice
	// (null for EOS or length), as vLLM reports it.
	StopReason json.RawMessage `json:"stop_reason,omitempty"`
}

// ChatOutMessage is the assistant message of a whole chat completion.
type ChatOutMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatCompletionResponse is the body of a non-streamed chat completion.
type ChatCompletionResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatDelta is the incremental message of a streamed chat chunk.
type ChatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// ChatChunkChoice is one choice of a streamed chat chunk.
type ChatChunkChoice struct {
	Index        int             `json:"index"`
	Delta        ChatDelta       `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
	StopReason   json.RawMessage `json:"stop_reason,omitempty"`
}

// ChatCompletionChunk is one streamed chat event (Object "chat.completion.chunk").
type ChatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	Usage   *Usage            `json:"usage,omitempty"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	Root        string `json:"root,omitempty"`
	MaxModelLen int    `json:"max_model_len,omitempty"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// Object names used on the wire.
const (
	ObjectTextCompletion = "text_completion"
	ObjectChatCompletion = "chat.completion"
	ObjectChatChunk      = "chat.completion.chunk"
	ObjectList           = "list"
	ObjectModel          = "model"
)

// Finish reasons.
const (
	FinishLength = "length"
	FinishStop   = "stop"
	FinishAbort  = "abort"
)

// StringPtr is a helper for the optional string fields above.
func StringPtr(s string) *string { return &s }

// CompletionLogprobs is the "logprobs" of a completion choice (vLLM's
// CompletionLogProbs): per output token its text offset, log-probability,
// text, and the most likely alternatives.
type CompletionLogprobs struct {
	TextOffset    []int         `json:"text_offset"`
	TokenLogprobs []float64     `json:"token_logprobs"`
	Tokens        []string      `json:"tokens"`
	TopLogprobs   []TopLogprobs `json:"top_logprobs"`
}

// TokenLogprob is one candidate token and its log-probability.
type TokenLogprob struct {
	Token   string
	Logprob float64
}

// TopLogprobs is the {token: logprob} object of one position, written in
// rank order (a Go map would sort its keys).
type TopLogprobs []TokenLogprob

// MarshalJSON writes the candidates as one JSON object in order.
func (t TopLogprobs) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, c := range t {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(c.Token)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(c.Logprob)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads the object back in its written order.
func (t *TopLogprobs) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("top_logprobs entry must be an object, got %s", truncate(string(b), 40))
	}
	*t = (*t)[:0]
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v float64
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*t = append(*t, TokenLogprob{Token: k.(string), Logprob: v})
	}
	_, err := dec.Token()
	return err
}

// ChatLogprobs is the "logprobs" of a chat choice (OpenAI's shape, as vLLM
// returns it).
type ChatLogprobs struct {
	Content []ChatLogprobContent `json:"content"`
}

// ChatLogprobContent is one output token with its alternatives.
type ChatLogprobContent struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one alternative of a chat token.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// VLLMSampling are vLLM's sampling extensions that completions and chat
// requests share (embedded: their JSON fields sit at the top level).
type VLLMSampling struct {
	PresencePenalty   *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty  *float64 `json:"frequency_penalty,omitempty"`
	RepetitionPenalty *float64 `json:"repetition_penalty,omitempty"`
	TopK              *int     `json:"top_k,omitempty"`
	MinP              *float64 `json:"min_p,omitempty"`
	// StopTokenIDs end the generation when the model emits one of them; the
	// id is reported as stop_reason.
	StopTokenIDs []int `json:"stop_token_ids,omitempty"`
}

// parseIntList parses a JSON array of integers written plainly (optional
// minus, no leading zeros, no fraction or exponent) that fit in an int; ok
// is false for anything else, including an empty list, and the caller then
// decodes b with encoding/json.
func parseIntList(b []byte) (ids []int, ok bool) {
	if len(b) < 3 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	ids = make([]int, 0, bytes.Count(b, []byte{','})+1)
	i := 1
	for {
		i = skipSpace(b, i)
		neg := i < len(b) && b[i] == '-'
		if neg {
			i++
		}
		digits := i
		var u uint64 // 19 digits cannot overflow it
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			u = u*10 + uint64(b[i]-'0')
			i++
		}
		// Bounded by the int's limit on this side of zero, so
		// math.MinInt reads as encoding/json reads it; past it the slow
		// path reports the overflow.
		limit := uint64(math.MaxInt)
		if neg {
			limit++
		}
		if n := i - digits; n == 0 || n > 19 || u > limit || (b[digits] == '0' && n > 1) {
			return nil, false // no digits, a leading zero, or overflow
		}
		if neg {
			ids = append(ids, int(-u))
		} else {
			ids = append(ids, int(u))
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return ids, i == len(b)-1
		default:
			return nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
