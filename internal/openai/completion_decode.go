package openai

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// DecodeCompletion decodes the common shape of a /v1/completions body in
// one pass, without reflection: what `llmlab bench`, the OpenAI SDKs and
// vLLM's clients send. When ok is true, req is exactly what encoding/json's
// Unmarshal into a zero CompletionRequest gives; when it is false, the body
// holds something this decoder does not handle (or is not valid JSON) and
// the caller must decode it the general way, which also gives the errors.
// FuzzCompletionFast (internal/validate) holds the two to the same results.
//
// Every request through the gateway is decoded, and the general decoders
// scan a token-id prompt twice (once to delimit it, once in
// Prompt.UnmarshalJSON) and allocate each pointer field with reflect.
//
// Handled: every field of CompletionRequest and VLLMSampling, under its
// exact lower-case name (encoding/json matches
// keys case-insensitively, with Unicode folding: any other spelling goes
// the general way) and at most once (encoding/json lets the last of a
// duplicated key win and merges duplicated objects); strings of valid
// UTF-8, escapes decoded as encoding/json does; a prompt that is a string
// or a non-empty flat list of integers (stop_token_ids too: encoding/json
// makes an empty list non-nil, left to it); stop as a string or a list of
// strings; integers in plain notation within int64 where ints are
// expected; JSON numbers where floats are; null for any field. Everything
// else, unknown fields included, is not handled.
//
// req must be zero (encoding/json would merge into what it holds); it is
// decoded in place (a returned copy costs write barriers on its pointers)
// and left zero when ok is false.
func DecodeCompletion(b []byte, req *CompletionRequest) (ok bool) {
	d := fastDecoder{b: b}
	if !d.completion(req) {
		*req = CompletionRequest{}
		return false
	}
	return true
}

// fastDecoder is a cursor over a JSON body.
type fastDecoder struct {
	b   []byte
	i   int
	box *completionBox
}

// completionBox holds the targets of a request's pointer fields, so that
// they cost one allocation together instead of one each (as with
// encoding/json). Each field is set at most once: no two share a slot.
type completionBox struct {
	maxTokens, n, logprobs, minTokens, topK                  int
	temperature, topP, presence, frequency, repetition, minP float64
	seed                                                     int64
	streamOptions                                            StreamOptions
}

func (d *fastDecoder) slots() *completionBox {
	if d.box == nil {
		d.box = new(completionBox)
	}
	return d.box
}

// Fields, one bit each, to refuse duplicated keys.
const (
	fModel uint32 = 1 << iota
	fPrompt
	fMaxTokens
	fTemperature
	fTopP
	fN
	fStream
	fStreamOptions
	fStop
	fSeed
	fUser
	fLogprobs
	fIgnoreEOS
	fMinTokens
	fPresence
	fFrequency
	fRepetition
	fTopK
	fMinP
	fStopTokenIDs
)

func (d *fastDecoder) completion(r *CompletionRequest) bool {
	d.ws()
	if !d.eat('{') {
		return false
	}
	d.ws()
	if d.eat('}') {
		return d.end()
	}
	var seen uint32
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var bit uint32
		switch string(key) { // no allocation: the compiler compares in place
		case "model":
			bit, ok = fModel, d.str(&r.Model)
		case "prompt":
			bit, ok = fPrompt, d.prompt(&r.Prompt)
		case "max_tokens":
			bit, ok = fMaxTokens, d.intPtr(&r.MaxTokens, &d.slots().maxTokens)
		case "temperature":
			bit, ok = fTemperature, d.floatPtr(&r.Temperature, &d.slots().temperature)
		case "top_p":
			bit, ok = fTopP, d.floatPtr(&r.TopP, &d.slots().topP)
		case "n":
			bit, ok = fN, d.intPtr(&r.N, &d.slots().n)
		case "stream":
			bit, ok = fStream, d.boolean(&r.Stream)
		case "stream_options":
			bit, ok = fStreamOptions, d.streamOptions(&r.StreamOptions)
		case "stop":
			bit, ok = fStop, d.stop(&r.Stop)
		case "seed":
			bit, ok = fSeed, d.int64Ptr(&r.Seed, &d.slots().seed)
		case "user":
			bit, ok = fUser, d.str(&r.User)
		case "logprobs":
			bit, ok = fLogprobs, d.intPtr(&r.Logprobs, &d.slots().logprobs)
		case "ignore_eos":
			bit, ok = fIgnoreEOS, d.boolean(&r.IgnoreEOS)
		case "min_tokens":
			bit, ok = fMinTokens, d.intPtr(&r.MinTokens, &d.slots().minTokens)
		case "presence_penalty":
			bit, ok = fPresence, d.floatPtr(&r.PresencePenalty, &d.slots().presence)
		case "frequency_penalty":
			bit, ok = fFrequency, d.floatPtr(&r.FrequencyPenalty, &d.slots().frequency)
		case "repetition_penalty":
			bit, ok = fRepetition, d.floatPtr(&r.RepetitionPenalty, &d.slots().repetition)
		case "top_k":
			bit, ok = fTopK, d.intPtr(&r.TopK, &d.slots().topK)
		case "min_p":
			bit, ok = fMinP, d.floatPtr(&r.MinP, &d.slots().minP)
		case "stop_token_ids":
			bit, ok = fStopTokenIDs, d.null() || (d.eat('[') && d.intList(&r.StopTokenIDs))
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		d.ws()
		if d.eat(',') {
			d.ws()
			continue
		}
		return d.eat('}') && d.end()
	}
}

// end: only whitespace may follow the top-level value (encoding/json:
// "invalid character ... after top-level value").
func (d *fastDecoder) end() bool {
	d.ws()
	return d.i == len(d.b)
}

// ws skips JSON whitespace (RFC 8259: space, tab, LF, CR; nothing else).
func (d *fastDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// key reads `"name"` and the colon after it; names with escapes are not
// handled.
func (d *fastDecoder) key() ([]byte, bool) {
	k, escaped, ok := d.scanString()
	if !ok || escaped {
		return nil, false
	}
	d.ws()
	if !d.eat(':') {
		return nil, false
	}
	d.ws()
	return k, true
}

// null consumes a null literal. encoding/json leaves a non-pointer field
// unchanged for null and sets a pointer to nil; the request starts zero and
// no field is set twice, so null leaves the field zero either way.
func (d *fastDecoder) null() bool {
	if bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// scanString consumes a string, returning its raw contents and whether it
// holds an escape, and checks it the way encoding/json's scanner does: no
// control characters, only the escapes \" \\ \/ \b \f \n \r \t and \u with
// four hex digits. UTF-8 is not checked here: a RawMessage keeps the bytes
// as they are; decoded strings check it (str).
func (d *fastDecoder) scanString() (raw []byte, escaped, ok bool) {
	b, i := d.b, d.i // locals: the hottest loop
	if i >= len(b) || b[i] != '"' {
		return nil, false, false
	}
	i++
	start := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return b[start:i], escaped, true
		case c < 0x20:
			return nil, false, false
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(b[i+2:]) < 0 {
					return nil, false, false
				}
				i += 6
			default:
				return nil, false, false
			}
			continue
		}
		i++
	}
	return nil, false, false
}

// str decodes a string, or null (which leaves it "").
func (d *fastDecoder) str(dst *string) bool {
	if d.null() {
		return true
	}
	raw, escaped, ok := d.scanString()
	switch {
	case !ok:
		return false
	case escaped: // a text prompt's newlines and quotes
		s, ok := unescape(raw)
		*dst = s
		return ok
	case !utf8.Valid(raw):
		return false // encoding/json replaces each bad byte by U+FFFD
	}
	*dst = string(raw)
	return true
}

// unescape decodes the contents of a string scanString accepted as
// encoding/json's unquoteBytes does: \uXXXX is a UTF-16 unit, a surrogate
// pair one rune, a surrogate that is not part of a pair U+FFFD. Invalid
// UTF-8, which it would replace byte by byte, is left to it.
func unescape(raw []byte) (string, bool) {
	// Every escape is longer than what it decodes to: raw's length bounds
	// the result's, which then needs one allocation.
	out := make([]byte, 0, len(raw))
	for {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			out = append(out, raw...)
			break
		}
		out = append(out, raw[:k]...)
		e := raw[k+1] // scanString checked the escape
		raw = raw[k+2:]
		switch e {
		case 'b':
			e = '\b'
		case 'f':
			e = '\f'
		case 'n':
			e = '\n'
		case 'r':
			e = '\r'
		case 't':
			e = '\t'
		case 'u':
			r := hex4(raw)
			raw = raw[4:]
			if utf16.IsSurrogate(r) {
				r1 := rune(-1)
				if len(raw) >= 6 && raw[0] == '\\' && raw[1] == 'u' {
					r1 = hex4(raw[2:])
				}
				if dec := utf16.DecodeRune(r, r1); dec != unicode.ReplacementChar {
					out = utf8.AppendRune(out, dec)
					raw = raw[6:]
					continue
				}
				r = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, r)
			continue
		}
		out = append(out, e) // '"', '\\', '/' stand for themselves
	}
	// Escapes only add whole, valid runes, so out is valid UTF-8 exactly
	// when the raw bytes between them are.
	if !utf8.Valid(out) {
		return "", false
	}
	// out is not used after this: the string can have its bytes (as
	// strings.Builder does) instead of a second copy.
	return unsafe.String(unsafe.SliceData(out), len(out)), true
}

// hex4 is the value of four hex digits at the start of b, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

func (d *fastDecoder) boolean(dst *bool) bool {
	rest := d.b[d.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		*dst, d.i = true, d.i+4
	case bytes.HasPrefix(rest, []byte("false")):
		d.i += 5
	default:
		return d.null()
	}
	// A literal must end there ("truex" is a syntax error): the caller
	// then needs whitespace, ',' or '}', or it refuses.
	return true
}

// integer reads an integer the way encoding/json stores a number into an
// int64 (strconv.ParseInt of the literal): plain notation only (a fraction
// or exponent is a type error there even when integral, and is left to
// it), within int64's range.
func (d *fastDecoder) integer() (v int64, null, ok bool) {
	if d.null() {
		return 0, true, true
	}
	neg := d.eat('-')
	b, start := d.b, d.i
	var u uint64
	i := start
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		u = u*10 + uint64(b[i]-'0')
	}
	d.i = i
	n := d.i - start
	switch {
	case n == 0, n > 1 && d.b[start] == '0', n > 19:
		return 0, false, false // not a number, a leading zero, or too large
	case d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E'):
		return 0, false, false
	case neg && u > 1<<63, !neg && u > 1<<63-1:
		return 0, false, false // out of range: a type error
	case neg:
		return int64(-u), false, true // -(1<<63) wraps to MinInt64, as it should
	}
	return int64(u), false, true
}

// intPtr reads an integer (or null) for an *int field, pointing it at its
// slot (int is 64 bits on the platforms llmlab builds for; where it is not,
// encoding/json refuses what does not fit, and so is it left to it).
func (d *fastDecoder) intPtr(dst **int, slot *int) bool {
	v, null, ok := d.integer()
	if !ok || null {
		return ok
	}
	if strconv.IntSize < 64 && int64(int(v)) != v {
		return false
	}
	*slot, *dst = int(v), slot
	return true
}

func (d *fastDecoder) int64Ptr(dst **int64, slot *int64) bool {
	v, null, ok := d.integer()
	if ok && !null {
		*slot, *dst = v, slot
	}
	return ok
}

// floatPtr reads a JSON number as encoding/json stores it into a float64:
// strconv.ParseFloat(literal, 64), a range error being a type error.
func (d *fastDecoder) floatPtr(dst **float64, slot *float64) bool {
	if d.null() {
		return true
	}
	start := d.i
	if !d.number() {
		return false
	}
	lit := d.b[start:d.i]
	if f, ok := smallInteger(lit); ok {
		*slot, *dst = f, slot
		return true
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return false
	}
	*slot, *dst = f, slot
	return true
}

// smallInteger converts a number literal of at most 15 digits and no
// fraction or exponent ("0", "-1", "200": the usual temperature and
// penalties) without strconv: below 2^53 the conversion is exact, so it is
// what ParseFloat gives, -0 included.
func smallInteger(lit []byte) (float64, bool) {
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) > 15 {
		return 0, false
	}
	var u uint64
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	f := float64(u)
	if neg {
		f = -f
	}
	return f, true
}

// number consumes a JSON number (RFC 8259 grammar: strconv.ParseFloat alone
// takes more, hex, underscores, "Inf"…).
func (d *fastDecoder) number() bool {
	d.eat('-')
	switch {
	case d.eat('0'):
	case d.digits() == 0:
		return false
	}
	if d.eat('.') && d.digits() == 0 {
		return false
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if d.digits() == 0 {
			return false
		}
	}
	return true
}

func (d *fastDecoder) digits() int {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// prompt handles a string prompt and a non-empty flat list of token ids,
// with the results Prompt.UnmarshalJSON gives them.
func (d *fastDecoder) prompt(p *Prompt) bool {
	if d.null() {
		return true // Prompt.UnmarshalJSON("null") is the zero Prompt
	}
	if d.i < len(d.b) && d.b[d.i] == '"' {
		p.Count = 1
		return d.str(&p.Text)
	}
	if !d.eat('[') {
		return false
	}
	ids, ok := d.tokenIDs()
	if ok {
		*p = Prompt{TokenIDs: ids, IsTokens: true, Count: 1}
	}
	return ok
}

func (d *fastDecoder) intList(dst *[]int) bool {
	ids, ok := d.tokenIDs()
	*dst = ids
	return ok
}

// tokenIDs reads the rest of a non-empty list of integers (after its '['),
// as parseIntList (Prompt's own parser) reads one; null, an empty list or
// anything else is not handled. Its end is the first ']' when it is a list
// the decoder handles.
func (d *fastDecoder) tokenIDs() ([]int, bool) {
	end := bytes.IndexByte(d.b[d.i:], ']')
	if end < 0 {
		return nil, false
	}
	ids, ok := parseIntList(d.b[d.i-1 : d.i+end+1])
	if ok {
		d.i += end + 1
	}
	return ids, ok
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *fastDecoder) streamOptions(dst **StreamOptions) bool {
	if d.null() {
		return true
	}
	if !d.eat('{') {
		return false
	}
	so := &d.slots().streamOptions
	d.ws()
	if !d.eat('}') {
		var seen uint8
		for {
			key, ok := d.key()
			if !ok {
				return false
			}
			var bit uint8
			switch string(key) {
			case "include_usage":
				bit, ok = 1, d.boolean(&so.IncludeUsage)
			case "continuous_usage_stats":
				bit, ok = 2, d.boolean(&so.ContinuousUsageStats)
			default:
				return false
			}
			if !ok || seen&bit != 0 {
				return false
			}
			seen |= bit
			d.ws()
			if d.eat('}') {
				break
			}
			if !d.eat(',') {
				return false
			}
			d.ws()
		}
	}
	*dst = so
	return true
}

// stop keeps the raw bytes of a string, a list of strings or null, as
// json.RawMessage does (a copy of the value, without the whitespace around
// it; null too: RawMessage's UnmarshalJSON is called with it). Other shapes
// are left to the general decoder.
func (d *fastDecoder) stop(dst *json.RawMessage) bool {
	start := d.i
	switch {
	case d.null():
	case d.i < len(d.b) && d.b[d.i] == '"':
		if _, _, ok := d.scanString(); !ok {
			return false
		}
	case d.eat('['):
		d.ws()
		if !d.eat(']') {
			for {
				if _, _, ok := d.scanString(); !ok {
					return false
				}
				d.ws()
				if d.eat(']') {
					break
				}
				if !d.eat(',') {
					return false
				}
				d.ws()
			}
		}
	default:
		return false
	}
	*dst = append(json.RawMessage(nil), d.b[start:d.i]...)
	return true
}
