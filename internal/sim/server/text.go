package server

import (
	"hash/fnv"
	"strings"
)

// CountTokens counts the tokens of a text prompt with the simulated engine's
// tokenizer. The tokenizer is deterministic and stable (a given text always
// has the same count, across versions, unless this comment changes); it is
// tuned so that English prose counts close to what Qwen2.5's BPE tokenizer
// gives (configs/prompts/prompt_200.txt counts 205), and it scans the text
// left to right, emitting one token for each of:
//
//   - a special marker "<|name|>" (name: up to 30 bytes of letters, digits,
//     '_' or '.'), e.g. the chat template's <|im_start|>;
//   - a word piece: a run of letters (ASCII letters and every byte >= 0x80,
//     so non-ASCII text counts per few bytes), optionally preceded by one
//     space, cut into pieces of at most 8 bytes (the space not counted);
//   - a single digit (Qwen tokenises numbers digit by digit);
//   - a run of newlines, or a run of spaces/tabs not absorbed by a word;
//   - any other single byte (punctuation, symbols).
func CountTokens(s string) int {
	n := 0
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '<' && i+1 < len(s) && s[i+1] == '|':
			if j := specialEnd(s, i); j > 0 {
				n++
				i = j
				continue
			}
			n++
			i++
		case isLetter(c) || (c == ' ' && i+1 < len(s) && isLetter(s[i+1])):
			if c == ' ' {
				i++
			}
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			n += (j - i + wordPiece - 1) / wordPiece
			i = j
		case c >= '0' && c <= '9':
			n++
			i++
		case c == '\n' || c == '\r':
			for i < len(s) && (s[i] == '\n' || s[i] == '\r') {
				i++
			}
			n++
		case c == ' ' || c == '\t':
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			// Leave the run's last space to a word that follows it.
			if j < len(s) && isLetter(s[j]) && s[j-1] == ' ' {
				j--
			}
			i = j
			n++
		default:
			n++
			i++
		}
	}
	return n
}

// wordPiece is the longest run of word bytes one token covers.
const wordPiece = 8

func isLetter(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

// specialEnd returns the index after a "<|name|>" marker starting at i, or
// 0 when there is none.
func specialEnd(s string, i int) int {
	for j := i + 2; j < len(s) && j < i+2+31; j++ {
		c := s[j]
		if c == '|' {
			if j > i+2 && j+1 < len(s) && s[j+1] == '>' {
				return j + 2
			}
			return 0
		}
		if !(isLetter(c) && c < 0x80) && !(c >= '0' && c <= '9') && c != '_' && c != '.' {
			return 0
		}
	}
	return 0
}

// RenderChat renders chat messages with a ChatML template (Qwen2.5's,
// without its default system prompt):
//
//	<|im_start|>{role}\n{content}<|im_end|>\n   for each message, then
//	<|im_start|>assistant\n                      the generation prompt.
func RenderChat(msgs []ChatTurn) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("<|im_start|>")
		b.WriteString(m.Role)
		b.WriteByte('\n')
		b.WriteString(m.Content)
		b.WriteString("<|im_end|>\n")
	}
	b.WriteString("<|im_start|>assistant\n")
	return b.String()
}

// ChatTurn is one message of a chat, as text.
type ChatTurn struct{ Role, Content string }

// hashText is the prompt hash that seeds greedy (temperature 0) output.
func hashText(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// hashTokens hashes a token-id prompt.
func hashTokens(ids []int) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, id := range ids {
		u := uint64(int64(id))
		for k := range b {
			b[k] = byte(u >> (8 * k))
		}
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// splitmix64 is a strong 64-bit mixer; output token k of a sequence with
// seed s is drawn from splitmix64(s + k·golden), so any token can be computed
// without generating the ones before it.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// vocabulary is the fixed set of words the simulated model writes. Each
// output token is one word with a leading space (the first token of a
// completion too, as a BPE model would continue a prompt), sometimes
// followed by punctuation, which stays within one token by construction.
var vocabulary = [...]string{
	"the", "a", "of", "to", "and", "in", "is", "that", "for", "it",
	"as", "with", "on", "was", "be", "by", "at", "this", "from", "or",
	"an", "are", "not", "we", "can", "which", "has", "more", "one", "all",
	"model", "token", "queue", "latency", "request", "server", "batch", "cache", "memory", "engine",
	"GPU", "step", "time", "rate", "load", "worker", "stream", "prompt", "output", "input",
	"small", "fast", "slow", "first", "last", "next", "each", "every", "new", "old",
	"run", "runs", "ran", "keep", "keeps", "hold", "holds", "send", "sends", "wait",
	"limit", "budget", "block", "blocks", "seat", "seats", "level", "point", "value", "result",
	"when", "then", "while", "after", "before", "until", "because", "so", "but", "if",
	"lower", "higher", "under", "over", "within", "about", "between", "through", "into", "out",
	"second", "seconds", "minute", "minutes", "hour", "day", "today", "now", "soon", "later",
	"service", "system", "graph", "plot", "table", "report", "figure", "number", "count", "sum",
	"high", "low", "long", "short", "full", "empty", "busy", "idle", "ready", "done",
	"start", "stop", "scale", "grow", "shrink", "drop", "rise", "fall", "move", "change",
}

// punctuation follows a word in some tokens; "" is the common case.
var punctuation = [...]string{"", "", "", "", "", "", "", "", "", "", "", "", ",", ",", ".", "."}

// appendToken appends the text of output token k of a sequence seeded with
// seed to dst.
func appendToken(dst []byte, seed uint64, k int) []byte {
	r := splitmix64(seed + uint64(k)*0x9e3779b97f4a7c15)
	dst = append(dst, ' ')
	dst = append(dst, vocabulary[r%uint64(len(vocabulary))]...)
	return append(dst, punctuation[(r>>32)%uint64(len(punctuation))]...)
}

// naturalLength is where the simulated model emits EOS for a sequence
// seeded with seed: a length between 8 and 263 tokens, so typical answers
// are tens to a few hundred tokens long, like a chat model's.
func naturalLength(seed uint64) int {
	return 8 + int(splitmix64(seed^0x5851f42d4c957f2d)%256)
}
