package offline

import (
	"context"

	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/search"
)

// Search bounds for FindMax (internal/search does the search).
const (
	// minRate is the lowest rate probed; below it the answer is 0.
	minRate = 0.01
	// maxRate caps the growth phase.
	maxRate = 4096
	// relTolerance ends the bisection once (fail − pass)/pass is this
	// small: offline probes cost milliseconds, so the bracket can be
	// narrower than live.
	relTolerance = 0.01
	// maxProbes bounds the number of simulated runs.
	maxProbes = 40
)

// Probe is one run of the search.
type Probe struct {
	Rate   float64 `json:"rate"`
	SLOMet bool    `json:"slo_met"`
	E2EP95 float64 `json:"e2e_p95_s"`
	RPS    float64 `json:"rps"`
}

// MaxResult is the outcome of FindMax: the highest rate found that meets
// the SLO and the full result of the run at that rate.
type MaxResult struct {
	MaxRPSUnderSLO float64 `json:"max_rps_under_slo"`
	// LowestFailingRate is the bracket's upper end (0 if none failed up to
	// the search cap).
	LowestFailingRate float64 `json:"lowest_failing_rate"`
	Probes            []Probe `json:"probes"`
	// StepRecords are the probes with their full figures, for the run file.
	StepRecords []runfile.Step `json:"-"`
	Result
}

// SearchOptions are the offline search's bounds, for a caller that runs
// search.Run itself; start is the first probe's rate.
func SearchOptions(start float64, opts Options) search.Options {
	// No probe may exceed the per-run request limit (Options.validate).
	top := min(maxRate, maxRequests/opts.Duration.Seconds())
	return search.Options{Start: start, Growth: 2, Precision: relTolerance, MaxSteps: maxProbes, Min: minRate, Max: top}
}

// FindMax searches for the highest arrival rate whose run meets the SLO
// with search.Run (the search `llmlab bench --find-max` makes live),
// starting at opts.Rate, within 1 % and at most 40 probes. It assumes that
// meeting the SLO is monotone in the rate, which holds for this engine up
// to small effects of batching; the probes are reported so a reader can
// see the boundary. MaxRPSUnderSLO is 0 when even minRate fails; then
// Result is the run at minRate.
func FindMax(opts Options) (MaxResult, error) {
	var r runner
	probe := search.ProberFunc[Result](func(_ context.Context, _ int, rate float64) (Result, bool, error) {
		o := opts
		o.Rate = rate
		res, err := r.run(o)
		return res, res.SLOMet, err
	})
	sr, err := search.Run(context.Background(), SearchOptions(opts.Rate, opts), probe, nil)
	if err != nil {
		return MaxResult{}, err
	}
	out := MaxResult{MaxRPSUnderSLO: sr.MaxRate, LowestFailingRate: sr.FailRate}
	for _, s := range sr.Steps {
		out.Probes = append(out.Probes, Probe{Rate: s.Rate, SLOMet: s.Pass, E2EP95: s.Result.E2EP95, RPS: s.Result.RPS})
		out.StepRecords = append(out.StepRecords, runfile.Step{Step: s.Step, Rate: s.Rate, Pass: s.Pass, Result: s.Result.Results})
	}
	if b, ok := sr.Best(); ok {
		out.Result = b.Result
	} else if n := len(sr.Steps); n > 0 {
		out.Result = sr.Steps[n-1].Result
	}
	return out, nil
}
