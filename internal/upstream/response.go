package upstream

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/llmlab/llmlab/internal/httpwire"
)

// readResponse reads a response head. The common case, a well-formed head
// already in the buffer framed by Content-Length, chunked encoding or the
// connection's end, is read by httpwire (one allocation for the head,
// bodies held by the connection); anything else goes to http.ReadResponse,
// so unusual or broken answers get net/http's own handling and errors.
// method is the request's (req is nil for a Send).
func (c *conn) readResponse(method string, req *http.Request) (*http.Response, error) {
	br := c.br
	buf, _ := br.Peek(br.Buffered())
	end := httpwire.HeadEnd(buf)
	if end == 0 {
		return readSlow(br, method, req)
	}
	head := string(buf[:end])
	line, rest := httpwire.NextLine(head)
	proto, status, ok := strings.Cut(line, " ")
	major, minor, vok := httpwire.ParseVersion(proto)
	code, cok := statusCode(status)
	if !ok || !vok || major != 1 || !cok {
		return readSlow(br, method, req)
	}
	h, err := httpwire.ParseHeader(rest)
	if err != nil {
		return readSlow(br, method, req)
	}
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	var n int64
	// Other codings, and both framings at once, are rare: net/http's
	// rules apply to them.
	noBody := method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	if hasTE && (hasCL || noBody || minor == 0 || len(te) != 1 || !asciiEqualFold(httpwire.TrimOWS(te[0]), "chunked")) {
		return readSlow(br, method, req)
	}
	if hasCL && !hasTE {
		if n, ok = httpwire.ParseContentLength(cl); !ok {
			return readSlow(br, method, req)
		}
	}
	_, _ = br.Discard(end)
	resp := &http.Response{Status: status, StatusCode: code, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
		Header: h, Request: req}
	// As net/http: a 1.1 "Connection: close" is taken out of the fields.
	if minor == 0 {
		resp.Close = !hasToken(h["Connection"], "keep-alive") || hasToken(h["Connection"], "close")
	} else if hasToken(h["Connection"], "close") {
		resp.Close = true
		delete(h, "Connection")
	}
	switch {
	case noBody:
		resp.Body = http.NoBody
		if method == http.MethodHead && hasCL && !hasTE {
			resp.ContentLength = n
		}
	case hasTE:
		delete(h, "Transfer-Encoding")
		resp.TransferEncoding = []string{"chunked"}
		resp.ContentLength = -1
		c.chunked = chunkedBody{c: c, r: httputil.NewChunkedReader(br)}
		resp.Body = &c.chunked
	case hasCL:
		resp.ContentLength = n
		if n == 0 {
			resp.Body = http.NoBody
			break
		}
		c.sized = sizedBody{br: br, n: n}
		resp.Body = &c.sized
	default:
		resp.ContentLength = -1
		resp.Close = true // the connection's end ends the body
		resp.Body = io.NopCloser(br)
	}
	return resp, nil
}

// readSlow reads a response with net/http's reader, which takes a nil
// request for a GET: a HEAD's answer has no body whatever its fields say.
// The response's Request stays req.
func readSlow(br *bufio.Reader, method string, req *http.Request) (*http.Response, error) {
	r := req
	if r == nil {
		r = &http.Request{Method: method}
	}
	resp, err := http.ReadResponse(br, r)
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

// statusCode reads "200 OK" (or "200"): three digits, then a space or
// nothing.
func statusCode(s string) (int, bool) {
	if len(s) < 3 || len(s) > 3 && s[3] != ' ' {
		return 0, false
	}
	code := 0
	for i := range 3 {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		code = code*10 + int(s[i]-'0')
	}
	return code, code >= 100
}

// sizedBody is a body framed by its Content-Length; it reports io.EOF with
// its last bytes, so the exchange ends (and the connection goes back to the
// pool) without another read.
type sizedBody struct {
	br *bufio.Reader
	n  int64
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.br.Read(p)
	b.n -= int64(k)
	if b.n == 0 {
		return k, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

func (b *sizedBody) Close() error { return nil }

// chunkedBody is a chunked body; its trailer fields are read and dropped
// (the gateway relays none).
type chunkedBody struct {
	c *conn
	r io.Reader
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	k, err := b.r.Read(p)
	if err != io.EOF {
		return k, err
	}
	for {
		line, rerr := b.c.br.ReadSlice('\n')
		if rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return k, rerr
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return k, io.EOF
		}
	}
}

func (b *chunkedBody) Close() error { return nil }
