package server

// appendTokenIDs appends the token ids of a text prompt to dst: one id per
// token that CountTokens counts (the same scan, piece for piece), so
// len(appendTokenIDs(nil, s)) == CountTokens(s). An id is a hash of the
// token's text, so equal texts give equal ids and a shared prefix gives a
// shared run of ids: what the engine's prefix cache hashes its KV blocks
// by. The ids are not Qwen's; they lie in Qwen2.5's vocabulary range only
// so that they look like real ones.
//
// Keep this scan in step with CountTokens (TestTokenIDsMatchCountTokens
// checks them against each other).
func appendTokenIDs(dst []int32, s string) []int32 {
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '<' && i+1 < len(s) && s[i+1] == '|':
			if j := specialEnd(s, i); j > 0 {
				dst = append(dst, pieceID(s[i:j], 1))
				i = j
				continue
			}
			dst = append(dst, pieceID(s[i:i+1], 0))
			i++
		case isLetter(c) || (c == ' ' && i+1 < len(s) && isLetter(s[i+1])):
			var space uint32
			if c == ' ' {
				space = 2
				i++
			}
			j := i
			for j < len(s) && isLetter(s[j]) {
				j++
			}
			for k := i; k < j; k += wordPiece {
				dst = append(dst, pieceID(s[k:min(k+wordPiece, j)], space))
				space = 0 // only the first piece carries the space
			}
			i = j
		case c == '\n' || c == '\r':
			j := i
			for j < len(s) && (s[j] == '\n' || s[j] == '\r') {
				j++
			}
			dst = append(dst, pieceID(s[i:j], 0))
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
			dst = append(dst, pieceID(s[i:j], 0))
			i = j
		default: // a digit or any other single byte
			dst = append(dst, pieceID(s[i:i+1], 0))
			i++
		}
	}
	return dst
}

// tokenIDSpace is Qwen2.5's vocabulary size (config.json vocab_size).
const tokenIDSpace = 151936

// pieceID hashes a token's text (FNV-1a) with a kind (1: special marker,
// 2: word after a space) into [0, tokenIDSpace).
func pieceID(p string, kind uint32) int32 {
	h := uint32(2166136261) ^ kind
	for k := 0; k < len(p); k++ {
		h = (h ^ uint32(p[k])) * 16777619
	}
	return int32(h % tokenIDSpace)
}

// tokenIDs32 converts a token-id prompt to the engine's id type (ids were
// validated to lie in the vocabulary).
func tokenIDs32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}
