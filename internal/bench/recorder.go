package bench

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/llmlab/llmlab/internal/slo"
)

// Error classes. HTTP errors are "http_<status>".
const (
	ClassTimeout          = "timeout"           // the per-request --timeout passed
	ClassConnection       = "connection"        // dial, refused, reset before a response
	ClassStreamError      = "stream_error"      // a `data: {"error":…}` event (HTTP 200)
	ClassIncompleteStream = "incomplete_stream" // the stream ended or broke without [DONE]
	ClassShortStream      = "short_stream"      // [DONE] came with fewer tokens than asked (ignore_eos)
	ClassBadResponse      = "bad_response"      // a body or event that is not valid JSON, or a 200 stream that is not text/event-stream
)

// Generator error classes: the request never reached the server because
// the generator could not send it. They are counted apart (generator_errors),
// never in the server's error rate or SLO verdict, and make the run invalid.
const (
	ClassGenLag  = "generator_lag"  // the generator was more than MaxSendLag late to send it
	ClassGenPool = "generator_pool" // no free connection in the pool within MaxSendLag
	ClassGenDial = "generator_dial" // dialling failed for want of a local resource (fd, port, buffer)
)

// IsGeneratorClass reports whether an error class is the generator's own.
func IsGeneratorClass(class string) bool {
	return class == ClassGenLag || class == ClassGenPool || class == ClassGenDial
}

// outcome is what one request leaves behind; it lives only until recorded,
// so memory does not grow with the number of requests.
type outcome struct {
	sched    time.Duration // scheduled send, offset from the run's start
	sent     time.Duration // actual send (goroutine started), offset
	end      time.Duration // last byte or failure, offset
	ttft     time.Duration // first token − scheduled; 0 when none
	itls     []time.Duration
	prompt   int
	output   int
	whole    bool   // not streamed: ttft is the whole latency, so no TPOT
	class    string // "" when the request succeeded
	canceled bool   // the run itself was canceled: neither success nor error
}

// Histogram bounds: 1 µs to 1 hour at 3 significant digits, about 200 KiB
// each whatever the number of requests.
const (
	histMin    = 1
	histMax    = int64(time.Hour / time.Microsecond)
	histDigits = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histDigits) }

func recordDur(h *hdr.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = h.RecordValue(us) // cannot fail: clamped into range
}

// recorder aggregates outcomes into fixed-size histograms and counters.
// One mutex is enough: each request takes it once, at its end.
type recorder struct {
	mu sync.Mutex

	steadyFrom, steadyTo time.Duration // scheduled-time window of the steady state
	sloE2E               time.Duration // per-request goodput threshold

	// Steady-state requests (by scheduled time).
	e2e, ttft, tpot, itl *hdr.Histogram
	requests, completed  int64
	errors               map[string]int64
	promptTokens         int64
	outputTokens         int64

	// Throughput of the steady cohort: the span of its successful
	// requests' ends, and how many of them met the per-request SLO.
	firstEnd, lastEndSteady time.Duration
	good                    int64
	sentInWindow            int64 // actual sends inside the window: achieved rate

	// Every request.
	lag                         *hdr.Histogram
	sentAll, doneAll, failedAll int64
	canceled                    int64
	errorsAll                   map[string]int64
	lastEnd                     time.Duration

	// Requests the generator failed to send (IsGeneratorClass): in the
	// steady window (by scheduled time) and in the whole run.
	genErrors, genErrorsAll map[string]int64
	genAll                  int64

	// Progress: since the last snapshot.
	winE2E *hdr.Histogram
	winOK  int64
}

func newRecorder(steadyFrom, steadyTo, sloE2E time.Duration) *recorder {
	return &recorder{
		steadyFrom: steadyFrom, steadyTo: steadyTo, sloE2E: sloE2E,
		e2e: newHist(), ttft: newHist(), tpot: newHist(), itl: newHist(),
		lag: newHist(), winE2E: newHist(),
		errors: map[string]int64{}, errorsAll: map[string]int64{},
		genErrors: map[string]int64{}, genErrorsAll: map[string]int64{},
	}
}

func (r *recorder) inWindow(t time.Duration) bool { return t >= r.steadyFrom && t < r.steadyTo }

// started counts a request as sent and records its send lag.
func (r *recorder) started(sched, sent time.Duration) {
	r.mu.Lock()
	r.sentAll++
	recordDur(r.lag, sent-sched)
	if r.inWindow(sent) {
		r.sentInWindow++
	}
	r.mu.Unlock()
}

func (r *recorder) record(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.end > r.lastEnd {
		r.lastEnd = o.end
	}
	if o.canceled {
		r.canceled++
		return
	}
	if IsGeneratorClass(o.class) {
		// Never sent: not a request the server saw, nor part of the
		// achieved send rate.
		r.genAll++
		r.genErrorsAll[o.class]++
		if r.inWindow(o.sent) {
			r.sentInWindow--
		}
		if r.inWindow(o.sched) {
			r.genErrors[o.class]++
		}
		return
	}
	e2e := o.end - o.sched
	ok := o.class == ""
	if ok {
		r.doneAll++
		recordDur(r.winE2E, e2e)
		r.winOK++
	} else {
		r.failedAll++
		r.errorsAll[o.class]++
	}
	if !r.inWindow(o.sched) {
		return
	}
	r.requests++
	if !ok {
		r.errors[o.class]++
		return
	}
	if r.completed == 0 || o.end < r.firstEnd {
		r.firstEnd = o.end
	}
	r.lastEndSteady = max(r.lastEndSteady, o.end)
	if e2e <= r.sloE2E {
		r.good++
	}
	r.completed++
	r.promptTokens += int64(o.prompt)
	r.outputTokens += int64(o.output)
	recordDur(r.e2e, e2e)
	if o.ttft > 0 {
		recordDur(r.ttft, o.ttft)
		if o.output > 1 && !o.whole {
			recordDur(r.tpot, (e2e-o.ttft)/time.Duration(o.output-1))
		}
	}
	for _, d := range o.itls {
		recordDur(r.itl, d)
	}
}

// progress is a live snapshot for the progress line.
type progress struct {
	sent, done, failed, inflight int64
	genErrors                    int64
	windowOK                     int64
	windowP95                    time.Duration
}

// snapshot returns the counters and resets the progress window.
func (r *recorder) snapshot() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := progress{
		sent: r.sentAll, done: r.doneAll, failed: r.failedAll,
		inflight:  r.sentAll - r.doneAll - r.failedAll - r.canceled - r.genAll,
		genErrors: r.genAll,
		windowOK:  r.winOK,
	}
	if r.winOK > 0 {
		p.windowP95 = time.Duration(r.winE2E.ValueAtQuantile(95)) * time.Microsecond
	}
	r.winE2E.Reset()
	r.winOK = 0
	return p
}

func dist(h *hdr.Histogram) slo.Dist {
	if h.TotalCount() == 0 {
		return slo.Dist{}
	}
	s := func(us int64) float64 { return float64(us) / 1e6 }
	return slo.Dist{
		P50:  s(h.ValueAtQuantile(50)),
		P95:  s(h.ValueAtQuantile(95)),
		P99:  s(h.ValueAtQuantile(99)),
		Max:  s(h.Max()),
		Mean: h.Mean() / 1e6,
	}
}

func copyClasses(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
