package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

// fail sets the outcome's class, telling the run's own cancellation and the
// request's deadline apart from the fallback class.
func (r *runner) fail(runCtx context.Context, o *outcome, fallback string) {
	switch {
	case runCtx.Err() != nil:
		o.canceled = true
	case time.Since(r.start) >= o.sched+r.cfg.Timeout:
		o.class = ClassTimeout
	default:
		o.class = fallback
	}
}

func (r *runner) exchange(runCtx, ctx context.Context, w *worker, i int, o *outcome) {
	body, err := r.bodies.body(i)
	if err != nil {
		o.end = r.since()
		o.class = ClassBadResponse
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		o.end = r.since()
		o.class = ClassConnection
		return
	}
	addHeader(req, r.cfg.Header)
	req.Header.Set("Content-Type", "application/json")
	if r.cfg.Scenario.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		o.end = r.since()
		class := ClassConnection
		if localDialFailure(err) {
			class = ClassGenDial // this machine's limit, not the server's
		}
		r.fail(runCtx, o, class)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read the (small) error body so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		o.end = r.since()
		o.class = fmt.Sprintf("http_%d", resp.StatusCode)
		return
	}
	if !r.cfg.Scenario.Stream {
		r.readWhole(runCtx, resp.Body, o)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" && !isEventStream(ct) {
		// A 200 that is not an event stream (a server ignoring "stream", an
		// error object sent with 200, a proxy's HTML page) has no data
		// events: read as a stream it would pass for a truncated one.
		r.readWhole(runCtx, resp.Body, o)
		if o.class == "" || o.class == ClassShortStream {
			o.class = ClassBadResponse
		}
		return
	}
	sse := openai.NewSSEReaderBuffer(resp.Body, w.buf)
	var (
		last   time.Duration
		events int
		usage  *openai.Usage
	)
	for {
		data, err := sse.Next()
		now := r.since()
		if err != nil {
			o.end = now
			r.fail(runCtx, o, ClassIncompleteStream)
			return
		}
		if string(data) == openai.Done {
			o.end = now
			break
		}
		var c chunk
		if err := parseChunk(data, &c); err != nil {
			o.end = now
			o.class = ClassBadResponse
			return
		}
		if c.isError() {
			o.end = now
			o.class = ClassStreamError
			return
		}
		if len(c.Choices) > 0 {
			if events == 0 {
				o.ttft = now - o.sched
			} else {
				o.itls = append(o.itls, now-last)
			}
			last = now
			events++
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	// Drain to EOF so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o.output = events
	if usage != nil {
		o.output, o.prompt = usage.CompletionTokens, usage.PromptTokens
	}
	if r.cfg.Scenario.IgnoreEOS && o.output < r.cfg.Scenario.OutputTokens {
		o.class = ClassShortStream
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// readWhole handles a non-streamed response: TTFT is then the whole latency.
func (r *runner) readWhole(runCtx context.Context, body io.Reader, o *outcome) {
	b, err := io.ReadAll(io.LimitReader(body, 16<<20))
	o.end = r.since()
	if err != nil {
		r.fail(runCtx, o, ClassIncompleteStream)
		return
	}
	var c chunk
	if err := json.Unmarshal(b, &c); err != nil {
		o.class = ClassBadResponse
		return
	}
	if c.isError() {
		o.class = ClassStreamError
		return
	}
	o.ttft, o.whole = o.end-o.sched, true
	if c.Usage != nil {
		o.output, o.prompt = c.Usage.CompletionTokens, c.Usage.PromptTokens
	}
	if r.cfg.Scenario.IgnoreEOS && c.Usage != nil && o.output < r.cfg.Scenario.OutputTokens {
		o.class = ClassShortStream
	}
}
