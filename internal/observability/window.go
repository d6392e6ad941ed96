package observability

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Window keeps the latest requests' outcomes in memory so the gateway's
// status page can show rates and quantiles with no Prometheus running.
// Counts are kept per second for the last minute, so rates and the error
// ratio are exact at any load; latencies of answered requests are kept
// in a ring of fixed capacity, so the quantiles are those of the latest
// requests when more than that many ended in the span.
type Window struct {
	span      time.Duration // quantiles and the error ratio
	rateSpan  time.Duration // rates: short, so they follow the load
	objective float64       // seconds; answered within it is good
	mu        sync.Mutex
	secs      [64]second // by Unix second modulo 64 (span ≤ 60 s)
	buf       []sample
	next      int
	n         int
}

type second struct {
	unix                    int64
	total, ok, good, failed int
}

type sample struct {
	at      time.Time
	seconds float64
}

// NewWindow keeps rates over rateSpan and quantiles and the error ratio
// over span (at most a minute), remembering up to capacity latencies;
// answered requests no slower than objective count as good.
func NewWindow(capacity int, span, rateSpan, objective time.Duration) *Window {
	span = min(span, time.Minute)
	return &Window{span: span, rateSpan: min(rateSpan, span), objective: objective.Seconds(), buf: make([]sample, capacity)}
}

// Observe records a request that ended at at after d.
func (w *Window) Observe(at time.Time, d time.Duration, outcome string) {
	sec := d.Seconds()
	ok := outcome == OutcomeOK
	w.mu.Lock()
	defer w.mu.Unlock()
	u := at.Unix()
	b := &w.secs[u&63]
	if b.unix != u {
		*b = second{unix: u}
	}
	b.total++
	switch {
	case ok:
		b.ok++
		if sec <= w.objective {
			b.good++
		}
		w.buf[w.next] = sample{at: at, seconds: sec}
		w.next = (w.next + 1) % len(w.buf)
		w.n = min(w.n+1, len(w.buf))
	case outcome == OutcomeRejected || outcome == OutcomeError:
		b.failed++
	}
}

// Stats are figures over the requests that ended in the window.
type Stats struct {
	// WindowSeconds is the span of Requests, ErrorRatio and the quantiles;
	// RateWindowSeconds that of the rates.
	WindowSeconds     float64 `json:"window_seconds"`
	RateWindowSeconds float64 `json:"rate_window_seconds"`
	Requests          int     `json:"requests"`
	RPS               float64 `json:"rps"`      // all requests that ended, per second
	OKRPS             float64 `json:"ok_rps"`   // answered ones
	GoodRPS           float64 `json:"good_rps"` // answered within the latency objective
	// ErrorRatio is refused and failed requests over those plus the
	// answered ones, as the SLO counts.
	ErrorRatio float64 `json:"error_ratio"`
	// Quantiles of the answered requests' latency (0 when none).
	P50 float64 `json:"p50_seconds"`
	P95 float64 `json:"p95_seconds"`
	P99 float64 `json:"p99_seconds"`
}

// Stats summarises the whole seconds before now's: rates over the rate
// span, the rest over the span. When the window started (since) less than
// a span ago, the spans shrink to the whole seconds since then (at least
// one).
func (w *Window) Stats(now, since time.Time) Stats {
	cur := now.Unix()
	up := max(cur-since.Unix(), 1)
	span := min(int64(w.span/time.Second), up)
	rateSpan := min(int64(w.rateSpan/time.Second), up)
	var st Stats
	var ok, failed, rTotal, rOK, rGood int
	w.mu.Lock()
	for s := cur - span; s < cur; s++ {
		b := w.secs[s&63]
		if b.unix != s {
			continue
		}
		st.Requests += b.total
		ok += b.ok
		failed += b.failed
		if s >= cur-rateSpan {
			rTotal += b.total
			rOK += b.ok
			rGood += b.good
		}
	}
	from, to := time.Unix(cur-span, 0), time.Unix(cur, 0)
	lat := make([]float64, 0, min(w.n, ok))
	for i := range w.n {
		s := w.buf[(w.next-1-i+2*len(w.buf))%len(w.buf)]
		if s.at.Before(from) {
			break // older ones follow
		}
		if s.at.Before(to) {
			lat = append(lat, s.seconds)
		}
	}
	w.mu.Unlock()
	st.WindowSeconds, st.RateWindowSeconds = float64(span), float64(rateSpan)
	r := float64(rateSpan)
	st.RPS, st.OKRPS, st.GoodRPS = float64(rTotal)/r, float64(rOK)/r, float64(rGood)/r
	if ok+failed > 0 {
		st.ErrorRatio = float64(failed) / float64(ok+failed)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		st.P50, st.P95, st.P99 = quantile(lat, 0.5), quantile(lat, 0.95), quantile(lat, 0.99)
	}
	return st
}

// quantile is the nearest-rank quantile of sorted values.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
