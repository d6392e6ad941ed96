package bench

import (
	"bytes"
	"encoding/json"

	"github.com/llmlab/llmlab/internal/openai"
)

// chunk is the part of a streamed event the generator reads. Choices is
// decoded into empty structs: only their number matters, as in vLLM's
// benchmark, where any chunk with a choice is a token event.
type chunk struct {
	Choices []struct{}      `json:"choices"`
	Usage   *openai.Usage   `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

func (c *chunk) isError() bool { return len(c.Error) > 0 && string(c.Error) != "null" }

var (
	keyError     = []byte(`"error"`)
	keyUsage     = []byte(`"usage"`)
	keyUsageNull = []byte(`"usage":null`)
	keyChoices   = []byte(`"choices"`)
)

// parseChunk reads one event's JSON. Token chunks, the bulk of a stream,
// take a fast path that only finds whether "choices" is a non-empty array:
// decoding every chunk with encoding/json cost a fifth of the generator's
// CPU at thousands of requests per second. Anything that might be an error
// or carry usage, or that the fast path does not recognise, is decoded
// fully. Inside JSON strings quotes are escaped, so `"error"` can only be a
// key or a whole string value; a false hit only costs the slow path.
func parseChunk(data []byte, c *chunk) error {
	*c = chunk{}
	if !bytes.Contains(data, keyError) &&
		(!bytes.Contains(data, keyUsage) || bytes.Contains(data, keyUsageNull)) {
		if n, ok := choicesNonEmpty(data); ok {
			if n {
				c.Choices = oneChoice
			}
			return nil
		}
	}
	return json.Unmarshal(data, c)
}

var oneChoice = make([]struct{}, 1)

// choicesNonEmpty finds the "choices" key and tells whether its array has
// an element; ok is false when the shape is not the expected one.
func choicesNonEmpty(data []byte) (nonEmpty, ok bool) {
	i := bytes.Index(data, keyChoices)
	if i < 0 {
		return false, false
	}
	rest := skipSpace(data[i+len(keyChoices):])
	if len(rest) == 0 || rest[0] != ':' {
		return false, false
	}
	rest = skipSpace(rest[1:])
	if len(rest) == 0 || rest[0] != '[' {
		return false, false
	}
	rest = skipSpace(rest[1:])
	if len(rest) == 0 {
		return false, false
	}
	return rest[0] != ']', true
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
