package demo

import (
	"context"
	"encoding/json"
	"image/gif"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cycleTimeline is a hand-written scale-to-zero cycle: stopped, a start
// triggered at 2 s, ready at 5 s, idle from 9 s, stopped at 12 s.
func cycleTimeline() *Timeline {
	tl := &Timeline{Kind: KindTimeline, Version: 1, LoadStart: 2, LoadEnd: 9, End: 13,
		Settings: Settings{StartupSeconds: 3, IdleTimeoutSeconds: 3, Rate: 1, LoadSeconds: 5}}
	tl.Transitions = []Transition{
		{T: 2.1, From: StateStopped, To: StateStarting, Cause: "request waiting"},
		{T: 5, From: StateStarting, To: StateReady, ColdStartSeconds: 2.9},
		{T: 11.9, From: StateReady, To: StateDraining},
		{T: 12, From: StateDraining, To: StateStopped},
	}
	for i := 0; i <= 52; i++ {
		t := float64(i) / 4
		s := Sample{T: t, State: StateStopped}
		if t >= 2.1 && t < 9 {
			s.InFlight = 1 + i%3
		}
		tl.Samples = append(tl.Samples, s)
	}
	for _, sent := range []float64{2, 3, 4, 5.5, 6.5, 7.5} {
		lat := 2.0
		if sent < 5 {
			lat = 5 - sent + 2
		}
		tl.Requests = append(tl.Requests, Request{Sent: sent, Done: sent + lat, Latency: lat, Status: 200})
	}
	tl.finish()
	return tl
}

func TestStateAtAndCycle(t *testing.T) {
	tl := cycleTimeline()
	for _, c := range []struct {
		t    float64
		want string
	}{{0, StateStopped}, {2.1, StateStarting}, {4.99, StateStarting}, {5, StateReady}, {11.95, StateDraining}, {12.5, StateStopped}} {
		if got := tl.StateAt(c.t); got != c.want {
			t.Errorf("StateAt(%v) = %s, want %s", c.t, got, c.want)
		}
	}
	if !tl.Cycle.Complete {
		t.Errorf("cycle %+v", tl.Cycle)
	}
	s := tl.Summary
	if s.Cold != 3 || s.Warm != 3 || s.Completed != 6 || s.ColdStartSeconds != 2.9 || s.IdleToStopSeconds != 3 {
		t.Errorf("summary %+v", s)
	}
	if s.ColdMax != 5 || s.WarmP50 != 2 {
		t.Errorf("latencies: cold max %v (want 5), warm p50 %v (want 2)", s.ColdMax, s.WarmP50)
	}
}

func TestCycleIncomplete(t *testing.T) {
	// No STOPPED after the load: the worker never scaled back to zero.
	tl := cycleTimeline()
	tl.Transitions = tl.Transitions[:2]
	tl.finish()
	if tl.Cycle.Complete || tl.Cycle.StoppedAfter || !tl.Cycle.Served {
		t.Errorf("cycle %+v: want served but not stopped, so incomplete", tl.Cycle)
	}
	// Every request failed: nothing served.
	tl = cycleTimeline()
	for i := range tl.Requests {
		tl.Requests[i].Status = 503
		tl.Requests[i].Error = "HTTP 503"
	}
	tl.finish()
	if tl.Cycle.Served || tl.Cycle.Complete || tl.Summary.Completed != 0 || tl.Summary.Failed != 6 {
		t.Errorf("cycle %+v summary %+v", tl.Cycle, tl.Summary)
	}
	// The worker was already up when the load began: no stop before it.
	tl = cycleTimeline()
	tl.LoadStart = 6
	tl.finish()
	if tl.Cycle.StoppedBeforeLoad || tl.Cycle.Complete {
		t.Errorf("cycle %+v", tl.Cycle)
	}
}

func TestWriteFiles(t *testing.T) {
	tl := cycleTimeline()
	dir := t.TempDir()
	f := Files{Timeline: filepath.Join(dir, "t.json"), PNG: filepath.Join(dir, "d.png"), SVG: filepath.Join(dir, "d.svg"), GIF: filepath.Join(dir, "d.gif")}
	// Few frames: rendering is the slow part, and -race slows it more.
	if err := tl.WriteJSON(f.Timeline); err != nil {
		t.Fatal(err)
	}
	if err := tl.WritePlot(f.PNG, f.SVG); err != nil {
		t.Fatal(err)
	}
	const frames = 5
	if err := tl.WriteGIF(f.GIF, frames); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTimeline(f.Timeline)
	if err != nil {
		t.Fatal(err)
	}
	if back.Cycle != tl.Cycle || len(back.Requests) != len(tl.Requests) {
		t.Errorf("timeline did not read back: %+v", back.Cycle)
	}
	svg, err := os.ReadFile(f.SVG)
	if err != nil || !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "STARTING") {
		t.Errorf("svg: %v", err)
	}
	g, err := os.Open(f.GIF)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	anim, err := gif.DecodeAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(anim.Image) != frames || anim.Delay[len(anim.Delay)-1] != lastFrameDelay {
		t.Errorf("%d frames, last delay %d", len(anim.Image), anim.Delay[len(anim.Delay)-1])
	}
	// Later frames hold only what changed: smaller than the first.
	if b := anim.Image[1].Bounds(); b.Dx()*b.Dy() >= anim.Config.Width*anim.Config.Height {
		t.Errorf("frame 1 is a full frame %v", b)
	}
	if _, err := ReadTimeline(f.SVG); err == nil {
		t.Error("ReadTimeline accepted an SVG")
	}
}

// The tracer times a streamed answer from send to the end of its body
// and marks HTTP errors; other requests pass untraced.
func TestTracer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "busy", http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("data: a\n\n"))
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		w.Write([]byte("data: [DONE]\n\n"))
	}))
	defer srv.Close()
	var mu sync.Mutex
	var done []Request
	tr := &tracer{base: http.DefaultTransport, path: "/v1/completions", t0: time.Now(), onDone: func(r Request) {
		mu.Lock()
		done = append(done, r)
		mu.Unlock()
	}}
	c := &http.Client{Transport: tr}
	for _, u := range []string{"/v1/completions", "/v1/completions?fail=1", "/v1/models"} {
		resp, err := c.Post(srv.URL+u, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	reqs := tr.requests()
	if len(reqs) != 2 || len(done) != 2 {
		t.Fatalf("traced %d, done %d: %+v", len(reqs), len(done), reqs)
	}
	if !reqs[0].OK() || reqs[0].Latency < 0.05 || reqs[0].FirstByte <= 0 || reqs[0].FirstByte > reqs[0].Latency {
		t.Errorf("streamed request %+v", reqs[0])
	}
	if reqs[1].OK() || reqs[1].Status != 429 || reqs[1].Error == "" {
		t.Errorf("refused request %+v", reqs[1])
	}
}

// The sampler reads /status, records each transition once (the ring
// repeats them on every poll) and stops with its context.
func TestSampler(t *testing.T) {
	t0 := time.Now()
	var mu sync.Mutex
	state, trs := StateStopped, []map[string]any{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{
			"worker": map[string]any{"state": state}, "queue": map[string]any{"depth": 2, "in_flight": 3},
			"transitions": trs,
		})
	}))
	defer srv.Close()
	var seen []Transition
	var smu sync.Mutex
	s := newSampler(srv.Client(), srv.URL, t0, 10*time.Millisecond, func(tr Transition) {
		smu.Lock()
		seen = append(seen, tr)
		smu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	if err := s.waitFor(ctx, 5*time.Second, "stopped", func(x Sample) bool { return x.State == StateStopped }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	state = StateStarting
	trs = append(trs, map[string]any{"from": StateStopped, "to": StateStarting, "at": time.Now(), "cause": "request waiting"},
		map[string]any{"from": StateReady, "to": StateStopped, "at": t0.Add(-time.Second)}) // before the demo: ignored
	mu.Unlock()
	if err := s.waitFor(ctx, 5*time.Second, "starting", func(x Sample) bool { return x.State == StateStarting }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a few more polls of the same ring
	if err := s.waitFor(ctx, 30*time.Millisecond, "never", func(Sample) bool { return false }); err == nil {
		t.Error("waitFor of a condition that never holds returned nil")
	}
	cancel()
	<-done
	samples, transitions, _ := s.snapshot()
	smu.Lock()
	defer smu.Unlock()
	if len(transitions) != 1 || len(seen) != 1 || transitions[0].To != StateStarting || transitions[0].Cause != "request waiting" {
		t.Errorf("transitions %+v, seen %+v", transitions, seen)
	}
	if last := samples[len(samples)-1]; last.QueueDepth != 2 || last.InFlight != 3 {
		t.Errorf("sample %+v", last)
	}
}
