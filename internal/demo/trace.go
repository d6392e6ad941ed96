package demo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// tracer is the load generator's transport, wrapped to time each request
// of the load from its send to the end of its body: the demo needs every
// request's latency and send time, which the generator only aggregates.
type tracer struct {
	base   http.RoundTripper
	path   string // only POSTs to this path are traced
	t0     time.Time
	onDone func(Request)

	mu   sync.Mutex
	reqs []*traced
}

type traced struct {
	mu    sync.Mutex
	r     Request
	ended bool
}

func (t *tracer) since(now time.Time) float64 { return now.Sub(t.t0).Seconds() }

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.URL.Path != t.path {
		return t.base.RoundTrip(req)
	}
	tr := &traced{r: Request{Sent: t.since(time.Now())}}
	t.mu.Lock()
	t.reqs = append(t.reqs, tr)
	t.mu.Unlock()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.end(tr, 0, err)
		return nil, err
	}
	tr.mu.Lock()
	tr.r.Status = resp.StatusCode
	tr.mu.Unlock()
	resp.Body = &tracedBody{rc: resp.Body, t: t, tr: tr}
	return resp, nil
}

// end records the request's end once.
func (t *tracer) end(tr *traced, status int, err error) {
	now := t.since(time.Now())
	tr.mu.Lock()
	if tr.ended {
		tr.mu.Unlock()
		return
	}
	tr.ended = true
	if status != 0 {
		tr.r.Status = status
	}
	tr.r.Done, tr.r.Latency = now, now-tr.r.Sent
	switch {
	case err != nil:
		tr.r.Error = err.Error()
	case tr.r.Status >= 400:
		tr.r.Error = fmt.Sprintf("HTTP %d", tr.r.Status)
	}
	r := tr.r
	tr.mu.Unlock()
	if t.onDone != nil {
		t.onDone(r)
	}
}

// requests returns the traced requests; one still open counts as failed.
func (t *tracer) requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Request, 0, len(t.reqs))
	for _, tr := range t.reqs {
		tr.mu.Lock()
		r := tr.r
		if !tr.ended {
			r.Error = "unfinished"
		}
		tr.mu.Unlock()
		out = append(out, r)
	}
	return out
}

type tracedBody struct {
	rc    io.ReadCloser
	t     *tracer
	tr    *traced
	first bool
}

func (b *tracedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.first {
		b.first = true
		now := b.t.since(time.Now())
		b.tr.mu.Lock()
		b.tr.r.FirstByte = now - b.tr.r.Sent
		b.tr.mu.Unlock()
	}
	switch {
	case errors.Is(err, io.EOF):
		b.t.end(b.tr, 0, nil)
	case err != nil:
		b.t.end(b.tr, 0, err)
	}
	return n, err
}

// Close ends the request if the reader stopped before EOF: a streamed
// answer is read up to its [DONE] event and then closed.
func (b *tracedBody) Close() error {
	b.t.end(b.tr, 0, nil)
	return b.rc.Close()
}
