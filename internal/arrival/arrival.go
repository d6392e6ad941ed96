// Package arrival is the one request schedule of the lab: when each
// request of an open-loop run is sent, as offsets from the run's start. The
// live load generator (internal/bench) and the offline simulator
// (internal/sim/offline) both take their arrivals from Schedule, so a live
// run and an offline run with the same Spec see the same request stream.
//
// A closed-loop run (a fixed number of clients, each sending its next
// request when the previous one ends, as `vllm bench serve
// --max-concurrency` with an infinite rate) has no schedule; ClosedLoopStart
// only staggers the clients' first sends over the ramp.
package arrival

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Arrival processes.
const (
	Constant = "constant"
	Poisson  = "poisson"
	Gamma    = "gamma"
	// ClosedLoop is what a run file records as the arrival process of a
	// closed-loop run, which has no schedule.
	ClosedLoop = "closed_loop"
)

// Spec says when requests are sent: a target rate reached after a
// linear ramp, and the shape of the gaps between arrivals.
type Spec struct {
	// Rate is the steady arrival rate, requests per second.
	Rate float64
	// Duration is how long requests are sent (ramp included).
	Duration time.Duration
	// Ramp is the time over which the rate rises linearly from 0 to Rate.
	Ramp time.Duration
	// Arrival is constant, poisson or gamma.
	Arrival string
	// Burstiness is the gamma shape as in vLLM's benchmark_serving: 1 is
	// Poisson, < 1 burstier, > 1 more regular. Used by gamma only.
	Burstiness float64
	// Seed makes poisson and gamma schedules reproducible.
	Seed uint64
}

// Validate checks the spec.
func (s Spec) Validate() error {
	switch {
	case !(s.Rate > 0) || math.IsInf(s.Rate, 0):
		return fmt.Errorf("rate must be > 0, got %v", s.Rate)
	case s.Duration <= 0:
		return fmt.Errorf("duration must be > 0")
	case s.Ramp < 0 || s.Ramp > s.Duration:
		return fmt.Errorf("ramp must be in [0, duration], got %v", s.Ramp)
	case s.Arrival != Constant && s.Arrival != Poisson && s.Arrival != Gamma:
		return fmt.Errorf("arrival must be constant, poisson or gamma, got %q", s.Arrival)
	case s.Arrival == Gamma && (!(s.Burstiness > 0) || math.IsInf(s.Burstiness, 0)):
		return fmt.Errorf("burstiness must be > 0, got %v", s.Burstiness)
	}
	return nil
}

// ExpectedCount is the expected number of arrivals: the integral of the rate
// over the duration, Rate·(Duration − Ramp/2).
func (s Spec) ExpectedCount() float64 {
	return s.Rate * (s.Duration.Seconds() - s.Ramp.Seconds()/2)
}

// Schedule returns every request's send time as an offset from the start,
// in increasing order. It is a pure function of spec.
//
// The arrivals are generated in "operational time" u, where they form a
// renewal process of unit rate (constant: gaps of 1; poisson: exponential
// gaps of mean 1; gamma: gamma gaps of shape Burstiness and mean 1), and
// mapped to wall time through the inverse of the cumulative rate
// Λ(t) = ∫₀ᵗ rate. This gives a ramp for every process without thinning and
// keeps the steady part exactly the requested process.
func Schedule(spec Spec) ([]time.Duration, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 0x6c6c6d6c6162)) // "llmlab"
	gap := func() float64 { return 1 }
	switch spec.Arrival {
	case Poisson:
		gap = rng.ExpFloat64
	case Gamma:
		k := spec.Burstiness
		gap = func() float64 { return gammaRand(rng, k) / k }
	}
	total := spec.ExpectedCount()
	out := make([]time.Duration, 0, int(total*1.05)+16)
	// A constant schedule starts half a gap in, so that the count over the
	// duration is exactly round(expected) rather than one more.
	u := 0.0
	if spec.Arrival == Constant {
		u = 0.5
	} else {
		u = gap()
	}
	for u < total {
		out = append(out, invCumRate(spec, u))
		u += gap()
	}
	return out, nil
}

// invCumRate maps operational time u (expected arrivals so far) to the wall
// offset t with Λ(t) = u. During the ramp Λ(t) = R·t²/(2T).
func invCumRate(s Spec, u float64) time.Duration {
	r, ramp := s.Rate, s.Ramp.Seconds()
	var t float64
	if rampArrivals := r * ramp / 2; u < rampArrivals {
		t = math.Sqrt(2 * ramp * u / r)
	} else {
		t = ramp + (u-rampArrivals)/r
	}
	return time.Duration(t * float64(time.Second))
}

// CumRate is Λ(t), the expected number of arrivals before offset t.
func (s Spec) CumRate(t time.Duration) float64 {
	r, ramp, x := s.Rate, s.Ramp.Seconds(), t.Seconds()
	if x < ramp {
		return r * x * x / (2 * ramp)
	}
	return r*ramp/2 + r*(x-ramp)
}

// RateAt is the scheduled arrival rate at offset t.
func (s Spec) RateAt(t time.Duration) float64 {
	if t < s.Ramp {
		return s.Rate * t.Seconds() / s.Ramp.Seconds()
	}
	return s.Rate
}

// gammaRand draws from Gamma(k, 1) with Marsaglia and Tsang's method
// (k < 1 by the boost Gamma(k) = Gamma(k+1)·U^(1/k)).
func gammaRand(r *rand.Rand, k float64) float64 {
	if k < 1 {
		return gammaRand(r, k+1) * math.Pow(r.Float64(), 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

// ClosedLoopStart is when client i of n closed-loop clients sends its first
// request: spread evenly over the ramp (all at 0 without one), so that a
// closed-loop run ramps its concurrency as an open-loop run ramps its rate.
func ClosedLoopStart(i, n int, ramp time.Duration) time.Duration {
	if n <= 0 || ramp <= 0 {
		return 0
	}
	return time.Duration(float64(ramp) * float64(i) / float64(n))
}
