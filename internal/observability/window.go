package observability

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Window keeps the latest requests' outcomes in memory so the gateway's
// status page can show rates and quantiles with no Prometheus running.
// It remembers at most its capacity of requests and only those of the
// last span; figures over it are exact for what it holds.
type Window struct {
	span     time.Duration // for quantiles and the error ratio
	rateSpan time.Duration // for rates: short, so they follow the load

	mu   sync.Mutex
	buf  []sample
	next int
	n    int
}

type sample struct {
	at      time.Time
	seconds float64
	ok      bool
	failed  bool // rejected or error: counts against the SLO
}

// NewWindow remembers up to capacity requests of the last span; rates are
// over the last rateSpan (at most span).
func NewWindow(capacity int, span, rateSpan time.Duration) *Window {
	return &Window{span: span, rateSpan: min(rateSpan, span), buf: make([]sample, capacity)}
}

// Observe records a finished request.
func (w *Window) Observe(at time.Time, d time.Duration, outcome string) {
	s := sample{at: at, seconds: d.Seconds(), ok: outcome == OutcomeOK,
		failed: outcome == OutcomeRejected || outcome == OutcomeError}
	w.mu.Lock()
	w.buf[w.next] = s
	w.next = (w.next + 1) % len(w.buf)
	w.n = min(w.n+1, len(w.buf))
	w.mu.Unlock()
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
	ErrorRatio        float64 `json:"error_ratio"`
	// Quantiles of the answered requests' latency (0 when none).
	P50 float64 `json:"p50_seconds"`
	P95 float64 `json:"p95_seconds"`
	P99 float64 `json:"p99_seconds"`
}

// Stats summarises the requests that ended before now: rates over the
// rate span, the rest over the span; good counts answered requests no
// slower than objective. When the window started (since) less than a rate
// span ago, rates divide by the time since.
func (w *Window) Stats(now, since time.Time, objective time.Duration) Stats {
	from, rateFrom := now.Add(-w.span), now.Add(-w.rateSpan)
	w.mu.Lock()
	lat := make([]float64, 0, w.n)
	var st Stats
	var ok, failed, recent, recentOK, recentGood int
	for i := range w.n {
		s := w.buf[(w.next-1-i+2*len(w.buf))%len(w.buf)]
		if s.at.Before(from) {
			break // older ones follow
		}
		st.Requests++
		inRate := !s.at.Before(rateFrom)
		if inRate {
			recent++
		}
		if s.ok {
			ok++
			lat = append(lat, s.seconds)
			if inRate {
				recentOK++
				if s.seconds <= objective.Seconds() {
					recentGood++
				}
			}
		}
		if s.failed {
			failed++
		}
	}
	w.mu.Unlock()
	span, rateSpan := w.span, w.rateSpan
	if d := now.Sub(since); d < rateSpan {
		rateSpan = max(d, time.Second)
	}
	if d := now.Sub(since); d < span {
		span = max(d, time.Second)
	}
	st.WindowSeconds, st.RateWindowSeconds = span.Seconds(), rateSpan.Seconds()
	sec := rateSpan.Seconds()
	st.RPS, st.OKRPS, st.GoodRPS = float64(recent)/sec, float64(recentOK)/sec, float64(recentGood)/sec
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
