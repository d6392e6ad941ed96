package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/configs"
	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/loadtest"
)

// Endpoints a scenario can target.
const (
	EndpointCompletions = "completions"
	EndpointChat        = "chat"
)

// Prompt kinds.
const (
	PromptTokens = "tokens"
	PromptText   = "text"
)

// DefaultScenarioName is the embedded standard workload.
const DefaultScenarioName = "fixed_200_200"

// Scenario is one workload file of loadtest/scenarios: the shape of every
// request of a run.
type Scenario struct {
	Name         string  `yaml:"name" json:"name"`
	Endpoint     string  `yaml:"endpoint" json:"endpoint"`
	Model        string  `yaml:"model" json:"model"`
	InputTokens  int     `yaml:"input_tokens" json:"input_tokens"`
	OutputTokens int     `yaml:"output_tokens" json:"output_tokens"`
	Prompt       string  `yaml:"prompt" json:"prompt"`
	PromptFile   string  `yaml:"prompt_file" json:"prompt_file,omitempty"`
	IgnoreEOS    bool    `yaml:"ignore_eos" json:"ignore_eos"`
	Temperature  float64 `yaml:"temperature" json:"temperature"`
	Stream       bool    `yaml:"stream" json:"stream"`
}

// DefaultScenario returns the embedded loadtest/scenarios/fixed_200_200.yaml.
func DefaultScenario() (Scenario, error) {
	b, err := fs.ReadFile(loadtest.FS, "scenarios/"+DefaultScenarioName+".yaml")
	if err != nil {
		return Scenario{}, fmt.Errorf("read embedded scenario: %w", err)
	}
	return ParseScenario(b)
}

// LoadScenario reads a scenario file; an empty path means the embedded
// default. A bare name such as "fixed_200_200" that is not a file on disk
// names an embedded scenario.
func LoadScenario(path string) (Scenario, error) {
	if path == "" {
		return DefaultScenario()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		eb, eerr := fs.ReadFile(loadtest.FS, "scenarios/"+strings.TrimSuffix(path, ".yaml")+".yaml")
		if eerr != nil {
			return Scenario{}, fmt.Errorf("read scenario: %w", err)
		}
		b = eb
	}
	s, err := ParseScenario(b)
	if err != nil {
		return Scenario{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes a scenario. Unknown keys are an error so a typo
// cannot silently change the workload.
func ParseScenario(b []byte) (Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return Scenario{}, fmt.Errorf("parse scenario: %w", err)
	}
	if s.Endpoint == "" {
		s.Endpoint = EndpointCompletions
	}
	if s.Prompt == "" {
		s.Prompt = PromptTokens
	}
	return s, s.Validate()
}

// Validate checks a scenario after overrides were applied.
func (s Scenario) Validate() error {
	switch {
	case s.Endpoint != EndpointCompletions && s.Endpoint != EndpointChat:
		return fmt.Errorf("endpoint must be %q or %q, got %q", EndpointCompletions, EndpointChat, s.Endpoint)
	case s.Prompt != PromptTokens && s.Prompt != PromptText:
		return fmt.Errorf("prompt must be %q or %q, got %q", PromptTokens, PromptText, s.Prompt)
	case s.Prompt == PromptTokens && s.Endpoint == EndpointChat:
		// Chat messages are text; a token-id prompt cannot be expressed.
		return fmt.Errorf("prompt %q needs endpoint %q (chat takes text)", PromptTokens, EndpointCompletions)
	case s.InputTokens <= 0 || s.OutputTokens <= 0:
		return fmt.Errorf("input_tokens and output_tokens must be > 0")
	case s.Temperature < 0:
		return fmt.Errorf("temperature must be >= 0")
	}
	return nil
}

// Path returns the URL path of the scenario's endpoint.
func (s Scenario) Path() string {
	if s.Endpoint == EndpointChat {
		return "/v1/chat/completions"
	}
	return "/v1/completions"
}

// bodyBuilder makes each request's JSON body. Token prompts differ per
// request (seeded ids) so a server's prefix cache cannot turn the standard
// 200-token prefill into a cache hit; text prompts get a short unique prefix
// for the same reason. Both also differ between runs, whatever the seed:
// vLLM keeps recent prompts' blocks cached, and a repeated run (a tuner's
// repeats use one seed) would otherwise measure cache hits. The body is marshalled once with a placeholder prompt
// and each request's prompt is spliced in, so a body costs one small
// allocation at thousands of requests per second.
type bodyBuilder struct {
	sc             Scenario
	seed           uint64
	nonce          uint64 // random per run: prompts never repeat across runs
	prefix, suffix []byte // the body around the prompt value
	quoted         []byte // text prompt JSON-quoted, without its opening quote
}

const promptPlaceholder = "\x00llmlab-prompt\x00"

func newBodyBuilder(sc Scenario, model string, seed uint64) (*bodyBuilder, error) {
	b := &bodyBuilder{sc: sc, seed: seed, nonce: rand.Uint64()}
	var text, system string
	if sc.Prompt == PromptText {
		var (
			raw []byte
			err error
		)
		if sc.PromptFile != "" {
			raw, err = os.ReadFile(sc.PromptFile)
		} else {
			raw, err = fs.ReadFile(configs.FS, "prompts/prompt_200.txt")
		}
		if err != nil {
			return nil, fmt.Errorf("read prompt: %w", err)
		}
		text = strings.TrimSpace(string(raw))
		if sc.Endpoint == EndpointChat {
			sys, err := fs.ReadFile(configs.FS, "prompts/system.txt")
			if err != nil {
				return nil, fmt.Errorf("read system prompt: %w", err)
			}
			system = strings.TrimSpace(string(sys))
		}
		q, err := json.Marshal(text)
		if err != nil {
			return nil, fmt.Errorf("quote prompt: %w", err)
		}
		b.quoted = q[1:]
	}
	maxTokens := sc.OutputTokens
	temp := sc.Temperature
	var so *openai.StreamOptions
	if sc.Stream {
		so = &openai.StreamOptions{IncludeUsage: true}
	}
	var v any
	switch sc.Endpoint {
	case EndpointChat:
		msgs := []openai.ChatMessage{}
		if system != "" {
			msgs = append(msgs, openai.TextMessage("system", system))
		}
		msgs = append(msgs, openai.TextMessage("user", promptPlaceholder))
		v = openai.ChatCompletionRequest{
			Model: model, Messages: msgs, MaxTokens: &maxTokens, Temperature: &temp,
			Stream: sc.Stream, StreamOptions: so, IgnoreEOS: sc.IgnoreEOS,
		}
	default:
		v = openai.CompletionRequest{
			Model: model, Prompt: openai.Prompt{Text: promptPlaceholder, Count: 1}, MaxTokens: &maxTokens,
			Temperature: &temp, Stream: sc.Stream, StreamOptions: so, IgnoreEOS: sc.IgnoreEOS,
		}
	}
	tmpl, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal request body: %w", err)
	}
	ph, _ := json.Marshal(promptPlaceholder)
	pre, suf, ok := bytes.Cut(tmpl, ph)
	if !ok {
		return nil, fmt.Errorf("request template lacks its prompt placeholder")
	}
	b.prefix, b.suffix = pre, suf
	return b, nil
}

// body returns the JSON body of request i.
func (b *bodyBuilder) body(i int) ([]byte, error) {
	if b.sc.Prompt == PromptTokens {
		out := make([]byte, 0, len(b.prefix)+len(b.suffix)+7*b.sc.InputTokens+2)
		out = append(out, b.prefix...)
		out = append(out, '[')
		// Ids from a range every common vocabulary holds (Qwen2.5 has
		// 151936), above the low ids where special tokens usually live.
		r := rand.New(rand.NewPCG(b.seed, b.nonce+uint64(i)))
		for k := range b.sc.InputTokens {
			if k > 0 {
				out = append(out, ',')
			}
			out = strconv.AppendInt(out, int64(1000+r.IntN(30000)), 10)
		}
		out = append(out, ']')
		return append(out, b.suffix...), nil
	}
	out := make([]byte, 0, len(b.prefix)+len(b.suffix)+len(b.quoted)+16)
	out = append(out, b.prefix...)
	out = append(out, `"[`...)
	out = strconv.AppendUint(out, b.nonce%1e6, 10)
	out = append(out, '-')
	out = strconv.AppendInt(out, int64(i), 10)
	out = append(out, "] "...)
	out = append(out, b.quoted...)
	return append(out, b.suffix...), nil
}
