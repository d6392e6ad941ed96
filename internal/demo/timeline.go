package demo

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// Worker states as the supervisor names them (internal/supervisor).
const (
	StateStopped  = "STOPPED"
	StateStarting = "STARTING"
	StateReady    = "READY"
	StateDraining = "DRAINING"
	StateFailed   = "FAILED"
)

// KindTimeline names the timeline file's schema.
const KindTimeline = "llmlab-demo-timeline"

// Timeline is what a demo saw, written as timeline.json. Every time T is
// in seconds since StartedAt (the moment the demo launched serve).
type Timeline struct {
	Kind      string    `json:"kind"`
	Version   int       `json:"version"`
	StartedAt time.Time `json:"started_at"`
	Settings  Settings  `json:"settings"`
	// LoadStart and LoadEnd bound the load phase: the first send and the
	// end of the last request.
	LoadStart float64 `json:"load_start_s"`
	LoadEnd   float64 `json:"load_end_s"`
	// End is when sampling stopped.
	End         float64      `json:"end_s"`
	Samples     []Sample     `json:"samples"`
	Transitions []Transition `json:"transitions"`
	Requests    []Request    `json:"requests"`
	Cycle       Cycle        `json:"cycle"`
	Summary     Summary      `json:"summary"`
}

// Settings are the demo's inputs, recorded so a timeline explains itself.
type Settings struct {
	Profile            string  `json:"profile"` // as serve reported it on /status
	StartupSeconds     float64 `json:"startup_seconds"`
	IdleTimeoutSeconds float64 `json:"idle_timeout_seconds"`
	Rate               float64 `json:"rate"`
	LoadSeconds        float64 `json:"load_seconds"`
	Scenario           string  `json:"scenario"`
	GatewayURL         string  `json:"gateway_url"`
	SampleInterval     float64 `json:"sample_interval_s"`
}

// Sample is one reading of the gateway's GET /status.
type Sample struct {
	T          float64 `json:"t"`
	State      string  `json:"state"`
	QueueDepth int     `json:"queue_depth"`
	InFlight   int     `json:"in_flight"`
}

// Transition is one worker state change, as the supervisor recorded it.
type Transition struct {
	T                float64 `json:"t"`
	From             string  `json:"from"`
	To               string  `json:"to"`
	Cause            string  `json:"cause,omitempty"`
	ColdStartSeconds float64 `json:"cold_start_seconds,omitempty"`
	Error            string  `json:"error,omitempty"`
}

// Request is one request of the load: when it was sent, how long it took
// and whether it met a cold worker (one that was not READY when it was
// sent, so it waited for a start).
type Request struct {
	Sent        float64 `json:"t_sent"`
	Done        float64 `json:"t_done"`
	Latency     float64 `json:"latency_s"`
	FirstByte   float64 `json:"first_byte_s,omitempty"`
	Status      int     `json:"status,omitempty"`
	Error       string  `json:"error,omitempty"`
	StateAtSend string  `json:"state_at_send"`
	Cold        bool    `json:"cold"`
}

// OK reports whether the request completed with a 2xx answer.
func (r Request) OK() bool { return r.Error == "" && r.Status >= 200 && r.Status < 300 }

// Cycle says which steps of the scale-to-zero cycle the demo observed.
type Cycle struct {
	StoppedBeforeLoad bool `json:"stopped_before_load"`
	Started           bool `json:"started"`
	Ready             bool `json:"ready"`
	Served            bool `json:"served"`
	StoppedAfter      bool `json:"stopped_after"`
	// Complete: all of the above, in that order.
	Complete bool `json:"complete"`
}

// Summary are the figures the transcript ends with.
type Summary struct {
	Requests  int `json:"requests"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Cold      int `json:"cold"`
	Warm      int `json:"warm"`
	// Latency quantiles of completed requests, seconds.
	ColdP50 float64 `json:"cold_latency_p50_s"`
	ColdMax float64 `json:"cold_latency_max_s"`
	WarmP50 float64 `json:"warm_latency_p50_s"`
	WarmP95 float64 `json:"warm_latency_p95_s"`
	// ColdStartSeconds is the supervisor's measure of the start.
	ColdStartSeconds float64 `json:"cold_start_s"`
	// IdleToStopSeconds is from the end of the load to the worker's
	// STOPPED: the idle timeout plus the drain.
	IdleToStopSeconds float64 `json:"idle_to_stop_s"`
}

// StateAt is the worker's state at t according to the transitions (the
// supervisor's own timestamps), falling back to the samples.
func (tl *Timeline) StateAt(t float64) string {
	state := ""
	for _, tr := range tl.Transitions {
		if tr.T > t {
			if state == "" {
				state = tr.From
			}
			break
		}
		state = tr.To
	}
	if state != "" {
		return state
	}
	for _, s := range tl.Samples {
		if s.T > t && state != "" {
			break
		}
		state = s.State
	}
	return state
}

// finish classifies the requests, checks the cycle and computes the
// summary; the samples, transitions and requests must be in place.
func (tl *Timeline) finish() {
	slices.SortFunc(tl.Transitions, func(a, b Transition) int { return cmpFloat(a.T, b.T) })
	slices.SortFunc(tl.Requests, func(a, b Request) int { return cmpFloat(a.Sent, b.Sent) })
	for i := range tl.Requests {
		r := &tl.Requests[i]
		r.StateAtSend = tl.StateAt(r.Sent)
		r.Cold = r.StateAtSend != StateReady
	}
	tl.Cycle = tl.cycle()
	tl.Summary = tl.summary()
}

// cycle finds STOPPED at the load's start, then STARTING, READY, a
// completed request and STOPPED again, in that order.
func (tl *Timeline) cycle() Cycle {
	var c Cycle
	c.StoppedBeforeLoad = tl.StateAt(tl.LoadStart) == StateStopped
	var readyAt, stoppedAt float64
	for _, tr := range tl.Transitions {
		switch {
		case tr.T < tl.LoadStart:
		case !c.Started && tr.To == StateStarting:
			c.Started = true
		case c.Started && !c.Ready && tr.To == StateReady:
			c.Ready, readyAt = true, tr.T
		case c.Ready && !c.StoppedAfter && tr.To == StateStopped:
			c.StoppedAfter, stoppedAt = true, tr.T
		}
	}
	for _, r := range tl.Requests {
		if c.Ready && r.OK() && r.Done >= readyAt && (!c.StoppedAfter || r.Done <= stoppedAt) {
			c.Served = true
			break
		}
	}
	c.Complete = c.StoppedBeforeLoad && c.Started && c.Ready && c.Served && c.StoppedAfter
	return c
}

func (tl *Timeline) summary() Summary {
	var s Summary
	var cold, warm []float64
	for _, r := range tl.Requests {
		s.Requests++
		if r.Cold {
			s.Cold++
		} else {
			s.Warm++
		}
		if !r.OK() {
			s.Failed++
			continue
		}
		s.Completed++
		if r.Cold {
			cold = append(cold, r.Latency)
		} else {
			warm = append(warm, r.Latency)
		}
	}
	s.ColdP50, s.ColdMax = quantile(cold, 0.5), quantile(cold, 1)
	s.WarmP50, s.WarmP95 = quantile(warm, 0.5), quantile(warm, 0.95)
	for _, tr := range tl.Transitions {
		if tr.T >= tl.LoadStart && tr.To == StateReady && tr.ColdStartSeconds > 0 {
			s.ColdStartSeconds = tr.ColdStartSeconds
			break
		}
	}
	for _, tr := range tl.Transitions {
		if tr.T >= tl.LoadEnd && tr.To == StateStopped {
			s.IdleToStopSeconds = tr.T - tl.LoadEnd
			break
		}
	}
	return s
}

// quantile is the nearest-rank q-quantile of xs (0 when empty).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WriteJSON writes the timeline to path, indented.
func (tl *Timeline) WriteJSON(path string) error {
	b, err := json.MarshalIndent(tl, "", "  ")
	if err != nil {
		return fmt.Errorf("encode timeline: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	return nil
}

// ReadTimeline reads a timeline.json.
func ReadTimeline(path string) (*Timeline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	var tl Timeline
	if err := json.Unmarshal(b, &tl); err != nil {
		return nil, fmt.Errorf("read timeline %s: %w", path, err)
	}
	if tl.Kind != KindTimeline {
		return nil, fmt.Errorf("read timeline %s: kind %q, want %q", path, tl.Kind, KindTimeline)
	}
	return &tl, nil
}
