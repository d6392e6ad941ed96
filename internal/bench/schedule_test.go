package bench

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

func mustSchedule(t *testing.T, s ScheduleSpec) []time.Duration {
	t.Helper()
	out, err := Schedule(s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(out) {
		t.Fatal("schedule is not sorted")
	}
	if len(out) > 0 && (out[0] < 0 || out[len(out)-1] >= s.Duration) {
		t.Fatalf("schedule spans [%v, %v], outside [0, %v)", out[0], out[len(out)-1], s.Duration)
	}
	return out
}

func gaps(s []time.Duration) []float64 {
	g := make([]float64, 0, len(s))
	for i := 1; i < len(s); i++ {
		g = append(g, (s[i] - s[i-1]).Seconds())
	}
	return g
}

func meanCV(x []float64) (mean, cv float64) {
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss/float64(len(x))) / mean
}

func TestScheduleConstant(t *testing.T) {
	s := mustSchedule(t, ScheduleSpec{Rate: 50, Duration: 10 * time.Second, Arrival: ArrivalConstant})
	if len(s) != 500 {
		t.Fatalf("%d arrivals, want 500", len(s))
	}
	for i, g := range gaps(s) {
		if math.Abs(g-0.02) > 1e-6 {
			t.Fatalf("gap %d = %v, want 20 ms", i, g)
		}
	}
}

// With a ramp the rate rises linearly: Rate·Ramp/2 arrivals during the ramp,
// a quarter of them in its first half, then Rate per second.
func TestScheduleRamp(t *testing.T) {
	spec := ScheduleSpec{Rate: 100, Duration: 20 * time.Second, Ramp: 10 * time.Second, Arrival: ArrivalConstant}
	s := mustSchedule(t, spec)
	if want := 1500; len(s) != want {
		t.Fatalf("%d arrivals, want %d", len(s), want)
	}
	count := func(from, to time.Duration) int {
		n := 0
		for _, at := range s {
			if at >= from && at < to {
				n++
			}
		}
		return n
	}
	if n := count(0, 5*time.Second); n < 124 || n > 126 {
		t.Errorf("first half of ramp: %d arrivals, want 125", n)
	}
	if n := count(0, 10*time.Second); n < 499 || n > 501 {
		t.Errorf("ramp: %d arrivals, want 500", n)
	}
	if n := count(15*time.Second, 16*time.Second); n < 99 || n > 101 {
		t.Errorf("steady second: %d arrivals, want 100", n)
	}
	if r := spec.RateAt(2500 * time.Millisecond); r != 25 {
		t.Errorf("RateAt(2.5 s) = %v, want 25", r)
	}
}

func TestSchedulePoissonAndGamma(t *testing.T) {
	for _, tc := range []struct {
		arrival    string
		burstiness float64
	}{
		{ArrivalPoisson, 1},
		{ArrivalGamma, 1},
		{ArrivalGamma, 0.5},
		{ArrivalGamma, 4},
	} {
		spec := ScheduleSpec{Rate: 200, Duration: 100 * time.Second, Arrival: tc.arrival, Burstiness: tc.burstiness, Seed: 42}
		s := mustSchedule(t, spec)
		n := float64(len(s))
		// The count of a renewal process has variance ≈ n·CV²; allow 4σ.
		wantCV := 1 / math.Sqrt(tc.burstiness)
		if sigma := math.Sqrt(20000) * wantCV; math.Abs(n-20000) > 4*sigma {
			t.Errorf("%s/%v: %v arrivals, want 20000 ± %.0f", tc.arrival, tc.burstiness, n, 4*sigma)
		}
		mean, cv := meanCV(gaps(s))
		if math.Abs(mean-0.005)/0.005 > 0.03 {
			t.Errorf("%s/%v: mean gap %.5f s, want 0.005", tc.arrival, tc.burstiness, mean)
		}
		if math.Abs(cv-wantCV)/wantCV > 0.05 {
			t.Errorf("%s/%v: gap CV %.3f, want %.3f", tc.arrival, tc.burstiness, cv, wantCV)
		}
		again := mustSchedule(t, spec)
		if !slices.Equal(s, again) {
			t.Errorf("%s: same seed, different schedule", tc.arrival)
		}
		spec.Seed++
		if other := mustSchedule(t, spec); slices.Equal(s, other) {
			t.Errorf("%s: different seed, same schedule", tc.arrival)
		}
	}
}

// A Poisson ramp keeps the ramp's expected count: Rate·Ramp/2.
func TestSchedulePoissonRamp(t *testing.T) {
	s := mustSchedule(t, ScheduleSpec{Rate: 400, Duration: 60 * time.Second, Ramp: 60 * time.Second, Arrival: ArrivalPoisson, Seed: 3})
	if n := float64(len(s)); math.Abs(n-12000) > 4*math.Sqrt(12000) {
		t.Errorf("%v arrivals, want 12000", n)
	}
	firstHalf := 0
	for _, at := range s {
		if at < 30*time.Second {
			firstHalf++
		}
	}
	if f := float64(firstHalf); math.Abs(f-3000) > 4*math.Sqrt(3000) {
		t.Errorf("%v arrivals in the first half of the ramp, want 3000", f)
	}
}

func TestBodies(t *testing.T) {
	sc, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	if sc.InputTokens != 200 || sc.OutputTokens != 200 || !sc.IgnoreEOS || !sc.Stream || sc.Temperature != 0 {
		t.Fatalf("default scenario %+v is not the M0 workload", sc)
	}
	b, err := newBodyBuilder(sc, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw0, _ := b.body(0)
	raw1, _ := b.body(1)
	var r0, r1 openai.CompletionRequest
	if err := json.Unmarshal(raw0, &r0); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw1, &r1)
	if !r0.Prompt.IsTokens || len(r0.Prompt.TokenIDs) != 200 || *r0.MaxTokens != 200 || !r0.IgnoreEOS ||
		!r0.Stream || r0.StreamOptions == nil || !r0.StreamOptions.IncludeUsage || *r0.Temperature != 0 || r0.Model != "m" {
		t.Errorf("completion body %s", raw0)
	}
	if slices.Equal(r0.Prompt.TokenIDs, r1.Prompt.TokenIDs) {
		t.Error("two requests share a prompt (a prefix cache would hit)")
	}
	sc.Endpoint, sc.Prompt = EndpointChat, PromptText
	b, err = newBodyBuilder(sc, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b.body(3)
	var c openai.ChatCompletionRequest
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Messages) != 2 || c.Messages[0].Role != "system" || *c.MaxTokens != 200 || !c.IgnoreEOS {
		t.Errorf("chat body %s", raw)
	}
	if txt, _ := c.Messages[1].Text(); len(txt) < 500 {
		t.Errorf("user message %q is not the 200-token prompt", txt)
	}
}

// Two runs with the same seed (the default, or a tuner's repeats) must not
// send the same prompts: vLLM's prefix cache keeps the blocks of recent
// prompts, and a repeat would then measure cache hits instead of prefill.
func TestBodiesDifferBetweenRuns(t *testing.T) {
	for _, prompt := range []string{PromptTokens, PromptText} {
		sc, err := DefaultScenario()
		if err != nil {
			t.Fatal(err)
		}
		sc.Prompt = prompt
		a, err := newBodyBuilder(sc, "m", 1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := newBodyBuilder(sc, "m", 1)
		ra, _ := a.body(0)
		rb, _ := b.body(0)
		if string(ra) == string(rb) {
			t.Errorf("%s prompt: two runs with seed 1 send the same first request", prompt)
		}
	}
}
