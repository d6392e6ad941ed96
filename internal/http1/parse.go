package http1

import (
	"bufio"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// parseTarget reads the request target (RFC 9112 §3.2).
func parseTarget(method, target string) (*url.URL, error) {
	switch {
	case target == "":
		return nil, badRequest("empty request target")
	case method == http.MethodConnect:
		if !httpguts.ValidHostHeader(target) || strings.Contains(target, "/") {
			return nil, badRequest("malformed CONNECT target")
		}
		return &url.URL{Host: target}, nil
	case target == "*":
		return &url.URL{Path: "*"}, nil
	case target[0] == '/':
		if path, query, q := strings.Cut(target, "?"); plainPath(path) && plainQuery(query) {
			return &url.URL{Path: path, RawQuery: query, ForceQuery: q && query == ""}, nil
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, badRequest("malformed request target")
	}
	return u, nil
}

// plainPath: a path url.ParseRequestURI would take as it is (no escapes,
// nothing it would escape again), so parsing it can be skipped.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/!$&'()*+,;=:@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// plainQuery: no control bytes or spaces, which url.ParseRequestURI
// refuses.
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func validHost(h string) bool { return httpguts.ValidHostHeader(h) }

func writeStatusLine(b *bufio.Writer, code int) {
	b.WriteString("HTTP/1.1 ")
	b.Write(append(strconv.AppendInt(b.AvailableBuffer(), int64(code), 10), ' '))
	if t := http.StatusText(code); t != "" {
		b.WriteString(t)
	} else {
		b.WriteString("status code ")
		b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(code), 10))
	}
	b.WriteString("\r\n")
}

// dateCache holds the Date header's value, formatted once a second.
type dateCache struct{ v atomic.Pointer[dateVal] }

type dateVal struct {
	sec int64
	val string
}

func (d *dateCache) get() string {
	now := time.Now()
	if v := d.v.Load(); v != nil && v.sec == now.Unix() {
		return v.val
	}
	v := &dateVal{now.Unix(), now.UTC().Format(http.TimeFormat)}
	d.v.Store(v)
	return v.val
}

// bufPool recycles connections' buffers (*bufio.Reader, *bufio.Writer).
type bufPool[T any] struct{ p sync.Pool }

// get returns a pooled buffer, or make's.
func (p *bufPool[T]) get(make func() T) T {
	if v, ok := p.p.Get().(T); ok {
		return v
	}
	return make()
}

func (p *bufPool[T]) put(v T) { p.p.Put(v) }
