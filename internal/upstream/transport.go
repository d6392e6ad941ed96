// Package upstream is a lean HTTP/1.1 client transport for a proxy that
// talks to workers on loopback or a LAN (vLLM's uvicorn server, or
// `llmlab sim`). It implements http.RoundTripper with all I/O in the
// caller's goroutine: the request is written on a pooled connection with
// one buffered write and flush, and the answer is parsed there with
// http.ReadResponse; reading the response body reads the connection. Unlike
// net/http's Transport there is no reader and writer goroutine per
// connection, so no goroutine hand-offs per request (they dominated the
// gateway's CPU profile).
//
// Pooling: keep-alive connections are kept per host:port, most recently
// used first, at most Config.MaxIdlePerHost of them. A connection goes back
// to the pool exactly once, when its response body has been read to EOF
// and neither the request nor the response asked to close it (or at once
// for a response without a body). A body closed before EOF closes the
// connection instead of draining it: a stream the client abandoned reaches
// the worker as a disconnect, which is how vLLM aborts the sequence. Idle
// connections older than Config.IdleTimeout are closed (one timer per host,
// no goroutine).
//
// Retry rule: a worker may close an idle connection at any time (uvicorn's
// keep-alive timeout). When a reused connection fails before any byte of
// the response arrived (EOF, connection reset or broken pipe while writing
// the request or waiting for the status line), the request is sent once
// more on a freshly dialed connection: the worker never answered it, and
// generation has no side effects. A request is never retried once response
// bytes arrived, nor when it failed on a fresh connection, nor when its
// context is done, nor when its body cannot be had again (no GetBody).
//
// Cancellation: the request's context is watched for the whole exchange
// (write, waiting for headers, reading the body), through the context's
// own abort hook when it has one (internal/http1's request contexts: see
// watch in conn.go), else with context.AfterFunc; when it ends, the
// connection is closed, which aborts the blocked I/O at once, and the
// error returned wraps context.Cause and ctx.Err(). The watch is stopped
// when the exchange ends.
//
// Waiting: a request's last bytes are written by the first read of its
// answer, so that waiting for the answer costs no read that finds
// nothing (wait.go).
//
// What it does not do is delegated to Config.Fallback (normally an
// http.Transport): schemes other than http, request bodies of unknown
// length, Transfer-Encoding or trailers on the request, Expect, Upgrade
// and CONNECT. Without a fallback such requests fail with
// ErrUnsupported.
package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Defaults of Config's zero fields.
const (
	// DefaultIdleTimeout is below the 5 s keep-alive timeout of the
	// workers' server: uvicorn's `timeout_keep_alive: int = 5`
	// (uvicorn/config.py, Config.__init__) and vLLM's
	// VLLM_HTTP_TIMEOUT_KEEP_ALIVE, default "5" (vllm/envs.py), which
	// vLLM's API server passes to uvicorn. Dropping a connection before the
	// worker does makes the stale-connection retry the exception.
	DefaultIdleTimeout = 4 * time.Second
	// DefaultMaxIdlePerHost bounds each host's idle connections.
	DefaultMaxIdlePerHost = 64
	// DefaultDialTimeout and DefaultKeepAlive are the values the gateway
	// used with net/http's Transport (net.Dialer's own defaults: 30 s
	// keep-alive probes).
	DefaultDialTimeout = 5 * time.Second
	DefaultKeepAlive   = 30 * time.Second
	// DefaultReadBufferSize is each connection's read buffer, the size
	// net/http's Transport uses (4 KiB).
	DefaultReadBufferSize = 4 << 10
	// DefaultWriteBufferSize is the buffer a request is written through,
	// held only while writing: a request of up to 16 KiB (a prompt of
	// some 4,000 tokens) is one write.
	DefaultWriteBufferSize = 16 << 10
)

// ErrUnsupported is returned for a request the transport cannot send
// itself when it has no fallback.
var ErrUnsupported = errors.New("upstream: request not supported without a fallback transport")

// Config sets a Transport's limits; zero fields take the defaults above.
type Config struct {
	// MaxIdlePerHost is the most idle keep-alive connections kept per
	// host:port; a connection beyond it is closed when released.
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle for longer. It should be below
	// the worker's keep-alive timeout.
	IdleTimeout time.Duration
	// DialTimeout bounds a connection's dial; KeepAlive is its TCP
	// keep-alive period (negative: off).
	DialTimeout time.Duration
	KeepAlive   time.Duration
	// ReadBufferSize sizes each connection's read buffer; WriteBufferSize
	// the pooled buffer a request is written through.
	ReadBufferSize, WriteBufferSize int
	// Fallback sends the requests this transport does not handle (see the
	// package comment). Nil: they fail with ErrUnsupported.
	Fallback http.RoundTripper
}

// Transport is an http.RoundTripper for plain-HTTP workers; see the package
// comment. It is safe for concurrent use. The zero value is not usable:
// use New.
type Transport struct {
	cfg    Config
	dialer net.Dialer

	readers sync.Pool // *bufio.Reader of ReadBufferSize, one per live connection
	writers sync.Pool // *bufio.Writer of WriteBufferSize, one per request being written
	// streamBufs are *[]byte of streamBufferSize, one per body being
	// streamed (stream.go).
	streamBufs sync.Pool

	mu   sync.Mutex
	idle map[string]*hostPool // by host:port
}

// hostPool is one host's idle connections, oldest first: taken from the
// end (the warmest), pruned from the front.
type hostPool struct {
	conns []*conn
	timer *time.Timer // armed while conns is not empty
}

// New returns a transport with cfg's limits.
func New(cfg Config) *Transport {
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = DefaultMaxIdlePerHost
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.WriteBufferSize <= 0 {
		cfg.WriteBufferSize = DefaultWriteBufferSize
	}
	t := &Transport{
		cfg:    cfg,
		dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive},
		idle:   make(map[string]*hostPool),
	}
	t.readers.New = func() any { return bufio.NewReaderSize(nil, cfg.ReadBufferSize) }
	t.writers.New = func() any { return bufio.NewWriterSize(nil, cfg.WriteBufferSize) }
	t.streamBufs.New = func() any { b := make([]byte, streamBufferSize); return &b }
	return t
}

// supported reports whether RoundTrip sends req itself.
func supported(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != "http" || req.Method == http.MethodConnect {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0 {
		return false // unknown length: would need chunked encoding
	}
	if len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
		return false
	}
	// Expect: 100-continue needs a wait between headers and body; Upgrade
	// hands the connection over.
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	_, ok := req.Header["Upgrade"]
	return !ok
}

// RoundTrip sends req and returns the worker's answer; see the package
// comment for pooling, retry and cancellation. Like every RoundTripper it
// closes req's body, even on errors, and does not modify req.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !supported(req) {
		if t.cfg.Fallback == nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, ErrUnsupported
		}
		return t.cfg.Fallback.RoundTrip(req)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	m := &message{method: req.Method, host: host, target: req.URL.RequestURI(), header: req.Header, req: req,
		closeReq: req.Close || hasToken(req.Header["Connection"], "close")}
	if m.method == "" {
		m.method = http.MethodGet
	}
	if req.Body != nil && req.Body != http.NoBody {
		m.body, m.n = req.Body, req.ContentLength
	}
	return t.send(req.Context(), hostKey(req), m)
}

// Field is one header field of a Call.
type Field struct{ Key, Value string }

// Call is a request for Send: the parts of an http.Request this transport
// reads, without what building one costs (a URL parsed per request, a
// header map, a body reader; a tenth of the gateway's own allocations).
type Call struct {
	Method string  // GET when empty
	Addr   string  // host:port to connect to; connections are pooled by it
	Host   string  // the Host field (Addr when empty)
	Target string  // the request-target: path and query, e.g. /v1/completions
	Header []Field // sent in order; Host, Content-Length, Transfer-Encoding, Trailer and Connection are not allowed
	Body   []byte  // sent with its Content-Length (for POST, PUT and PATCH also when empty)
}

// Send is RoundTrip for a Call, with the same pooling, retry and
// cancellation (ctx is the request's context). The response's Request is
// nil. c and its slices must not change until Send returns.
func (t *Transport) Send(ctx context.Context, c *Call) (*http.Response, error) {
	m := &message{method: c.Method, host: c.Host, target: c.Target, fields: c.Header, data: c.Body, n: int64(len(c.Body))}
	if m.method == "" {
		m.method = http.MethodGet
	}
	if m.host == "" {
		m.host = c.Addr
	}
	if m.target == "" {
		m.target = "/"
	}
	return t.send(ctx, c.Addr, m)
}

// message is a request as the connection writes it, from RoundTrip's
// http.Request or from Send's Call.
type message struct {
	method, host, target string
	header               http.Header // RoundTrip's fields
	fields               []Field     // Send's fields
	closeReq             bool
	n                    int64         // the body's length
	body                 io.ReadCloser // RoundTrip's body (nil: none)
	data                 []byte        // Send's body
	req                  *http.Request // RoundTrip's request, for the response (nil from Send)
}

// again makes m's body readable once more for a resend, and reports
// whether it could.
func (m *message) again() (bool, error) {
	if m.req == nil || m.req.Body == nil || m.req.Body == http.NoBody {
		return true, nil // Send's bytes, or no body
	}
	if m.req.GetBody == nil {
		return false, nil // the body is spent and cannot be had again
	}
	b, err := m.req.GetBody()
	if err != nil {
		return false, fmt.Errorf("upstream: retry on a new connection: get body: %w", err)
	}
	m.body = b
	return true, nil
}

// send runs one request on key's pool, resending it once on a fresh
// connection when a reused one turns out closed by the worker.
func (t *Transport) send(ctx context.Context, key string, m *message) (*http.Response, error) {
	for fresh := false; ; fresh = true {
		if err := ctx.Err(); err != nil {
			closeBody(m.body)
			return nil, ctxError("send request", ctx, err)
		}
		var c *conn
		if !fresh {
			c = t.getIdle(key)
		}
		reused := c != nil
		if c == nil {
			var err error
			if c, err = t.dial(ctx, key); err != nil {
				closeBody(m.body)
				if ctx.Err() != nil {
					return nil, ctxError("dial "+key, ctx, err)
				}
				return nil, fmt.Errorf("upstream: dial %s: %w", key, err)
			}
		}
		resp, retry, err := c.exchange(ctx, m)
		if err == nil {
			return resp, nil
		}
		if !reused || !retry || ctx.Err() != nil {
			return nil, err
		}
		// The worker closed the idle connection; any older idle ones to it
		// are as likely closed.
		t.dropOlder(key, c.idleAt)
		if ok, gerr := m.again(); gerr != nil {
			return nil, gerr
		} else if !ok {
			return nil, err
		}
	}
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		b.Close()
	}
}

// hostKey is req's host:port (port 80 when the URL has none).
func hostKey(req *http.Request) string {
	h := req.URL.Host
	if req.URL.Port() == "" {
		return net.JoinHostPort(req.URL.Hostname(), "80")
	}
	return h
}

// retryable reports whether err, on a reused connection before any
// response byte, means that the worker had closed it.
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// ctxError is an I/O failure caused by the request's context ending: it
// wraps the context's cause and its Err (context.Canceled or
// DeadlineExceeded), and names the I/O error.
func ctxError(op string, ctx context.Context, ioErr error) error {
	cause, cerr := context.Cause(ctx), ctx.Err()
	if cause == nil || cause == cerr {
		return fmt.Errorf("upstream: %s: %w (%v)", op, cerr, ioErr)
	}
	return fmt.Errorf("upstream: %s: %w: %w (%v)", op, cause, cerr, ioErr)
}

// dial opens a new connection to key.
func (t *Transport) dial(ctx context.Context, key string) (*conn, error) {
	nc, err := t.dialer.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	c := &conn{t: t, key: key, nc: nc, raw: rawConn(nc)}
	c.out.c, c.rd.c = c, c
	c.br = t.readers.Get().(*bufio.Reader)
	c.br.Reset(&c.rd)
	c.kill = c.abort
	return c, nil
}

// getIdle takes key's most recently used idle connection that has not
// been idle too long, or returns nil.
func (t *Transport) getIdle(key string) *conn {
	t.mu.Lock()
	p := t.idle[key]
	if p == nil || len(p.conns) == 0 {
		t.mu.Unlock()
		return nil
	}
	n := len(p.conns) - 1
	c := p.conns[n]
	p.conns[n] = nil
	p.conns = p.conns[:n]
	var expired []*conn
	if time.Since(c.idleAt) > t.cfg.IdleTimeout {
		// The newest is expired, so all are.
		expired = append(p.conns, c)
		p.conns = p.conns[:0:0]
		c = nil
	}
	t.mu.Unlock()
	for _, e := range expired {
		e.close(true)
	}
	return c
}

// put returns c to its host's pool, or closes it when the pool is full.
func (t *Transport) put(c *conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	p := t.idle[c.key]
	if p == nil {
		p = &hostPool{}
		t.idle[c.key] = p
	}
	if len(p.conns) >= t.cfg.MaxIdlePerHost {
		t.mu.Unlock()
		c.close(true)
		return
	}
	p.conns = append(p.conns, c)
	if len(p.conns) == 1 {
		// The timer fires when this, the oldest, expires; prune re-arms it
		// for the next oldest.
		if p.timer == nil {
			key := c.key
			p.timer = time.AfterFunc(t.cfg.IdleTimeout, func() { t.prune(key) })
		} else {
			p.timer.Reset(t.cfg.IdleTimeout)
		}
	}
	t.mu.Unlock()
}

// prune closes key's connections idle for longer than IdleTimeout and
// re-arms the timer for the oldest one left.
func (t *Transport) prune(key string) {
	now := time.Now()
	t.mu.Lock()
	p := t.idle[key]
	if p == nil {
		t.mu.Unlock()
		return
	}
	i := 0
	for i < len(p.conns) && now.Sub(p.conns[i].idleAt) >= t.cfg.IdleTimeout {
		i++
	}
	expired := p.expel(i)
	if len(p.conns) > 0 {
		p.timer.Reset(t.cfg.IdleTimeout - now.Sub(p.conns[0].idleAt))
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close(true)
	}
}

// expel removes and returns the i oldest connections. Called with t.mu.
func (p *hostPool) expel(i int) []*conn {
	if i == 0 {
		return nil
	}
	out := make([]*conn, i)
	copy(out, p.conns[:i])
	n := copy(p.conns, p.conns[i:])
	clear(p.conns[n:])
	p.conns = p.conns[:n]
	return out
}

// dropOlder closes key's idle connections that went idle no later than
// since.
func (t *Transport) dropOlder(key string, since time.Time) {
	t.mu.Lock()
	var expired []*conn
	if p := t.idle[key]; p != nil {
		i := 0
		for i < len(p.conns) && !p.conns[i].idleAt.After(since) {
			i++
		}
		expired = p.expel(i)
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close(true)
	}
}

// CloseIdleConnections closes every idle connection (connections in use
// are not affected and are pooled again when their exchange ends), and
// the fallback's if it has the method.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*conn
	for key, p := range t.idle {
		all = append(all, p.conns...)
		if p.timer != nil {
			p.timer.Stop()
		}
		delete(t.idle, key)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.close(true)
	}
	if f, ok := t.cfg.Fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}

// IdleConns returns how many idle connections are pooled for host:port.
func (t *Transport) IdleConns(hostport string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.idle[hostport]; p != nil {
		return len(p.conns)
	}
	return 0
}
