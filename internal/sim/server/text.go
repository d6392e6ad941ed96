package server

import (
	"hash/fnv"

	"github.com/llmlab/llmlab/internal/tokenizer"
)

// Prompts are counted by internal/tokenizer, which the gateway's request
// validation shares; this file makes the simulated model's output.

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

// markOf draws a token's punctuation from 16 equally likely slots: none in
// 12, a comma in 2, a full stop in 2 (indexes into tokenizer.Marks).
var markOf = [16]uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2}

// tokenAt is output token k of a sequence seeded with seed: a word of
// tokenizer.Words and a mark of tokenizer.Marks. Each output token is one
// word with a leading space (the first token of a completion too, as a BPE
// model would continue a prompt), sometimes followed by punctuation, which
// stays within one token.
func tokenAt(seed uint64, k int) (word, mark int) {
	r := splitmix64(seed + uint64(k)*0x9e3779b97f4a7c15)
	return int(r % uint64(len(tokenizer.Words))), int(markOf[(r>>32)%uint64(len(markOf))])
}

// appendToken appends the text of output token k of a sequence seeded with
// seed to dst, with its leading space.
func appendToken(dst []byte, seed uint64, k int) []byte {
	w, m := tokenAt(seed, k)
	dst = append(dst, ' ')
	dst = append(dst, tokenizer.Words[w]...)
	return append(dst, tokenizer.Marks[m]...)
}

// naturalLength is where the simulated model emits EOS for a sequence
// seeded with seed: a length between 8 and 263 tokens, so typical answers
// are tens to a few hundred tokens long, like a chat model's.
func naturalLength(seed uint64) int {
	return 8 + int(splitmix64(seed^0x5851f42d4c957f2d)%256)
}
