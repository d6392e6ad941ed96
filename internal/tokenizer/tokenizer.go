// Package tokenizer is the simulated model's deterministic tokenizer, shared
// by the simulated engine (internal/sim/server) and the gateway's request
// validation (internal/validate) so both count a prompt the same way.
//
// It is not a BPE tokenizer: it segments text with a few fixed rules (see
// Count) tuned so that English prose counts close to what Qwen2.5's
// tokenizer gives, and it gives each piece a stable id: single bytes their
// byte value, the pieces the simulated model writes (Piece) fixed ids, and
// every other piece an id hashed from its text. Decode inverts the first two
// kinds exactly; a hashed id stands for many pieces and decodes to a
// "<|id_N|>" marker, which itself counts as one token.
package tokenizer

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// IDSpace bounds every id Encode returns: ids are below it, which is below
// the vocabulary of every modelled model (Llama-3.2: 128,256; Qwen: 151,936),
// so tokenized prompts are always valid token-id prompts.
const IDSpace = 100_000

// Count counts the tokens of a text. The tokenizer is deterministic and
// stable (a given text always has the same count, across versions, unless
// this comment changes); configs/prompts/prompt_200.txt counts 205. It scans
// the text left to right, emitting one token for each of:
//
//   - a special marker "<|name|>" (name: up to 30 bytes of letters, digits,
//     '_' or '.'), e.g. the chat template's <|im_start|>;
//   - a word piece: a run of letters (ASCII letters and every byte >= 0x80,
//     so non-ASCII text counts per few bytes), optionally preceded by one
//     space, cut into pieces of at most 8 bytes (the space not counted);
//   - a single digit (Qwen tokenises numbers digit by digit);
//   - a run of newlines, or a run of spaces/tabs not absorbed by a word;
//   - any other single byte (punctuation, symbols).
func Count(s string) int {
	n := 0
	scan(s, func(string) { n++ })
	return n
}

// Encode returns the token ids of s; len(Encode(s)) == Count(s).
func Encode(s string) []int {
	ids := make([]int, 0, len(s)/4+1)
	scan(s, func(p string) { ids = append(ids, ID(p)) })
	return ids
}

// Pieces returns the text of each token of s, in order.
func Pieces(s string) []string {
	var out []string
	scan(s, func(p string) { out = append(out, p) })
	return out
}

// scan calls emit with each token's text, in order.
func scan(s string, emit func(string)) {
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '<' && i+1 < len(s) && s[i+1] == '|':
			if j := specialEnd(s, i); j > 0 {
				emit(s[i:j])
				i = j
				continue
			}
			emit(s[i : i+1])
			i++
		case isLetter(c) || (c == ' ' && i+1 < len(s) && isLetter(s[i+1])):
			from := i
			if c == ' ' {
				i++
			}
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			// Pieces of at most wordPiece letters; the first keeps the
			// leading space.
			for k := i; k < j; k += wordPiece {
				end := min(k+wordPiece, j)
				if k == i {
					emit(s[from:end])
				} else {
					emit(s[k:end])
				}
			}
			i = j
		case c == '\n' || c == '\r':
			j := i
			for j < len(s) && (s[j] == '\n' || s[j] == '\r') {
				j++
			}
			emit(s[i:j])
			i = j
		case c == ' ' || c == '\t':
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			// Leave the run's last space to a word that follows it.
			if j < len(s) && isLetter(s[j]) && s[j-1] == ' ' {
				j--
			}
			emit(s[i:j])
			i = j
		default: // digits, punctuation, symbols: one byte each
			emit(s[i : i+1])
			i++
		}
	}
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

// ChatTurn is one message of a chat, as text.
type ChatTurn struct{ Role, Content string }

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

// Words is the fixed set of words the simulated model writes. Each output
// token is one word, with a leading space except a chat answer's first,
// sometimes followed by one punctuation mark, which stays within one token.
var Words = [...]string{
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

// Marks are the punctuation an output word may carry ("" for none).
var Marks = [...]string{"", ",", "."}

// pieceBase is the first id of the output pieces; ids below 256 are bytes.
const pieceBase = 256

// numPieces is how many output pieces there are: each word with each mark,
// with and without the leading space.
const numPieces = len(Words) * len(Marks) * 2

// PieceID is the id of output word w with mark m, with a leading space or
// not.
func PieceID(w, m int, space bool) int {
	id := pieceBase + (w*len(Marks)+m)*2
	if !space {
		id++
	}
	return id
}

// Piece is the text of an output piece id (see PieceID); ok is false for
// other ids.
func Piece(id int) (string, bool) {
	k := id - pieceBase
	if k < 0 || k >= numPieces {
		return "", false
	}
	space, k := k%2 == 0, k/2
	w, m := k/len(Marks), k%len(Marks)
	if space {
		return " " + Words[w] + Marks[m], true
	}
	return Words[w] + Marks[m], true
}

// pieceIDs maps each output piece's text to its id.
var pieceIDs = func() map[string]int {
	m := make(map[string]int, numPieces)
	for id := pieceBase; id < pieceBase+numPieces; id++ {
		p, _ := Piece(id)
		m[p] = id
	}
	return m
}()

// hashBase is the first hashed id.
const hashBase = pieceBase + numPieces

// ID is the id of one token's text.
func ID(piece string) int {
	if id, ok := pieceIDs[piece]; ok {
		return id
	}
	if len(piece) == 1 {
		return int(piece[0])
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(piece))
	return hashBase + int(h.Sum64()%uint64(IDSpace-hashBase))
}

// Text is the text of one token id: exact for bytes and output pieces,
// a "<|id_N|>" stand-in for hashed ids (and for ids outside IDSpace).
func Text(id int) string {
	if id >= 0 && id < pieceBase {
		return string([]byte{byte(id)})
	}
	if p, ok := Piece(id); ok {
		return p
	}
	return "<|id_" + strconv.Itoa(id) + "|>"
}

// Decode is the text of a sequence of token ids (see Text).
func Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(Text(id))
	}
	return b.String()
}
