package arrival

import (
	"math"
	"slices"
	"testing"
	"time"
)

func mustSchedule(t *testing.T, s Spec) []time.Duration {
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
	s := mustSchedule(t, Spec{Rate: 50, Duration: 10 * time.Second, Arrival: Constant})
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
	spec := Spec{Rate: 100, Duration: 20 * time.Second, Ramp: 10 * time.Second, Arrival: Constant}
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
		{Poisson, 1},
		{Gamma, 1},
		{Gamma, 0.5},
		{Gamma, 4},
	} {
		spec := Spec{Rate: 200, Duration: 100 * time.Second, Arrival: tc.arrival, Burstiness: tc.burstiness, Seed: 42}
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
	s := mustSchedule(t, Spec{Rate: 400, Duration: 60 * time.Second, Ramp: 60 * time.Second, Arrival: Poisson, Seed: 3})
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

func TestClosedLoopStart(t *testing.T) {
	if got := ClosedLoopStart(3, 4, 0); got != 0 {
		t.Errorf("no ramp: %v, want 0", got)
	}
	want := []time.Duration{0, 2500 * time.Millisecond, 5 * time.Second, 7500 * time.Millisecond}
	for i, w := range want {
		if got := ClosedLoopStart(i, 4, 10*time.Second); got != w {
			t.Errorf("client %d: %v, want %v", i, got, w)
		}
	}
}
