package server

import (
	"strconv"
	"unicode/utf8"

	"github.com/llmlab/llmlab/internal/openai"
)

// chunkEncoder writes a request's per-token stream chunks without
// reflection: the JSON around the token text is the same for every chunk,
// so it is built once and each chunk is prefix + quoted text + suffix. The
// output is byte-for-byte what encoding/json would produce for
// openai.CompletionResponse / openai.ChatCompletionChunk (a test checks it
// decodes to the same values).
type chunkEncoder struct {
	g                  *generation
	offset             int    // text offset of the next token (logprobs)
	prefix             []byte // up to and including the key of the text
	suffix, lastSuffix []byte // after the text: finish_reason null / final
	roleEvent          []byte // chat only: the whole event that opens the message
}

func newChunkEncoder(g *generation) *chunkEncoder {
	e := &chunkEncoder{g: g}
	head := func(object string) []byte {
		b := []byte(`{"id":`)
		b = appendJSONString(b, g.id)
		b = append(b, `,"object":"`...)
		b = append(b, object...)
		b = append(b, `","created":`...)
		b = strconv.AppendInt(b, g.created, 10)
		b = append(b, `,"model":`...)
		b = appendJSONString(b, g.p.Model)
		return append(b, `,"choices":[{"index":0,`...)
	}
	reason := appendJSONString(nil, g.seq.finishReason)
	stop := g.stopReason
	if stop == nil {
		stop = nullJSON
	}
	if g.p.Chat {
		h := head(openai.ObjectChatChunk)
		e.prefix = append(h[:len(h):len(h)], `"delta":{"content":`...)
		e.suffix = []byte(`},"logprobs":null,"finish_reason":null,"stop_reason":null}]}`)
		// vLLM's serving_chat.py opens the stream (on the engine's first
		// output) with a chunk of its own whose delta is the role and an
		// empty content; the token chunks that follow carry no role.
		e.roleEvent = append([]byte("data: "), h...)
		e.roleEvent = append(e.roleEvent, `"delta":{"role":"assistant","content":""`...)
		e.roleEvent = append(e.roleEvent, e.suffix...)
		e.roleEvent = append(e.roleEvent, '\n', '\n')
		e.lastSuffix = append([]byte(`},"logprobs":null,"finish_reason":`), reason...)
		e.lastSuffix = append(append(append(e.lastSuffix, `,"stop_reason":`...), stop...), `}]}`...)
		return e
	}
	e.prefix = append(head(openai.ObjectTextCompletion), `"text":`...)
	e.suffix = []byte(`,"logprobs":null,"finish_reason":null,"stop_reason":null}]}`)
	e.lastSuffix = append([]byte(`,"logprobs":null,"finish_reason":`), reason...)
	e.lastSuffix = append(append(append(e.lastSuffix, `,"stop_reason":`...), stop...), `}]}`...)
	return e
}

// appendToken appends the event for output token k. In a chat stream the
// first token is preceded by the role chunk, which vLLM sends when the
// first output arrives (so it leaves in the same write as token 0 and adds
// no latency of its own). The last token's chunk carries the finish reason
// (as vLLM does when a step ends a request).
func (e *chunkEncoder) appendToken(dst []byte, k int) []byte {
	if k == 0 && e.g.p.Chat {
		dst = append(dst, e.roleEvent...)
	}
	if e.g.p.Logprobs {
		return e.appendWithLogprobs(dst, k)
	}
	dst = append(dst, "data: "...)
	dst = append(dst, e.prefix...)
	var tok [64]byte
	dst = appendJSONString(dst, string(e.g.appendText(tok[:0], k, k+1)))
	if k == e.g.seq.outputTokens-1 {
		dst = append(dst, e.lastSuffix...)
	} else {
		dst = append(dst, e.suffix...)
	}
	return append(dst, '\n', '\n')
}

// usageChunk is the stream_options.include_usage chunk: no choices, usage.
func (e *chunkEncoder) usageChunk(u *openai.Usage) []byte {
	g := e.g
	if g.p.Chat {
		return mustJSON(openai.ChatCompletionChunk{
			ID: g.id, Object: openai.ObjectChatChunk, Created: g.created, Model: g.p.Model,
			Choices: []openai.ChatChunkChoice{}, Usage: u,
		})
	}
	return mustJSON(openai.CompletionResponse{
		ID: g.id, Object: openai.ObjectTextCompletion, Created: g.created, Model: g.p.Model,
		Choices: []openai.CompletionChoice{}, Usage: u,
	})
}

// appendEvent appends one "data: payload" event.
func appendEvent(dst, payload []byte) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, payload...)
	return append(dst, '\n', '\n')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (quotes, backslash, control characters, <, >, &, U+2028/2029 and
// invalid UTF-8 as U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendWithLogprobs appends token k's event with its log-probabilities,
// through encoding/json: the pre-built chunks cover only "logprobs":null.
func (e *chunkEncoder) appendWithLogprobs(dst []byte, k int) []byte {
	g := e.g
	var reason *string
	stop := nullJSON
	if k == g.seq.outputTokens-1 {
		reason = &g.seq.finishReason
		if g.stopReason != nil {
			stop = g.stopReason
		}
	}
	text := string(g.appendText(nil, k, k+1))
	lp := g.logprobs(k, k+1, e.offset)
	e.offset += len(g.tokenText(k))
	if g.p.Chat {
		return appendEvent(dst, mustJSON(openai.ChatCompletionChunk{
			ID: g.id, Object: openai.ObjectChatChunk, Created: g.created, Model: g.p.Model,
			Choices: []openai.ChatChunkChoice{{
				Delta: openai.ChatDelta{Content: &text}, Logprobs: lp, FinishReason: reason, StopReason: stop,
			}},
		}))
	}
	return appendEvent(dst, mustJSON(openai.CompletionResponse{
		ID: g.id, Object: openai.ObjectTextCompletion, Created: g.created, Model: g.p.Model,
		Choices: []openai.CompletionChoice{{Text: text, Logprobs: lp, FinishReason: reason, StopReason: stop}},
	}))
}
