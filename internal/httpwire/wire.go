// Package httpwire reads HTTP/1.1 message heads (RFC 9112) the way the
// gateway's two hops need: a head that is already in a read buffer is
// copied into one string and its line and fields are slices of it, so
// reading a head costs one allocation and the header map. internal/http1
// reads requests with it, internal/upstream the worker's responses.
package httpwire

import (
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ValidToken reports whether s is a non-empty token (RFC 9110 §5.6.2).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// ValidValue: no control bytes but tab (RFC 9110 §5.5).
func ValidValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// CanonicalKey is textproto.CanonicalMIMEHeaderKey for a valid token,
// without an allocation when the name is already canonical. A canonical
// name is returned as is, a slice of its head (as are the values, so a
// header map keeps its head alive either way).
func CanonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return textproto.CanonicalMIMEHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

// TrimOWS trims the optional white space around a field value (RFC 9110
// §5.6.3: spaces and tabs).
func TrimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// ParseVersion reads an HTTP version such as HTTP/1.1.
func ParseVersion(p string) (major, minor int, ok bool) {
	switch p {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	return http.ParseHTTPVersion(p)
}

// ParseContentLength: digits only, and every copy the same.
func ParseContentLength(vs []string) (int64, bool) {
	first := strings.TrimSpace(vs[0])
	for _, v := range vs[1:] {
		if strings.TrimSpace(v) != first {
			return 0, false
		}
	}
	if first == "" || len(first) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(first); i++ {
		c := first[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// LineEnd is the length of buf's first line with its line end; 0 when
// no line is complete.
func LineEnd(buf []byte) int {
	return bytes.IndexByte(buf, '\n') + 1
}

// HeadEnd is the length of the head at buf's start, up to and with its
// empty line (a line end may be CRLF or LF); 0 when it is not all there.
func HeadEnd(buf []byte) int {
	for i := 0; ; {
		n := LineEnd(buf[i:])
		if n == 0 {
			return 0
		}
		if n == 1 || n == 2 && buf[i] == '\r' {
			return i + n
		}
		i += n
	}
}

// NextLine splits off head's first line, without its line end.
func NextLine(head string) (line, rest string) {
	line, rest, _ = strings.Cut(head, "\n")
	return strings.TrimSuffix(line, "\r"), rest
}

// ParseHeader reads the header fields of a head's rest.
func ParseHeader(rest string) (http.Header, error) {
	n := strings.Count(rest, "\n")
	h := make(http.Header, n)
	vals := make([]string, 0, n) // one backing array for single values
	for {
		var line string
		line, rest = NextLine(rest)
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, errors.New("obsolete line folding in headers")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, errors.New("malformed header line")
		}
		value = TrimOWS(value)
		if !ValidToken(name) {
			return nil, errors.New("invalid header name " + strconv.Quote(name))
		}
		if !ValidValue(value) {
			return nil, errors.New("invalid header value for " + strconv.Quote(name))
		}
		key := CanonicalKey(name)
		if old, dup := h[key]; dup {
			h[key] = append(old, value)
			continue
		}
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
}
