package offline

// Search bounds for FindMax.
const (
	// minRate is the lowest rate probed; below it the answer is 0.
	minRate = 0.01
	// maxRate caps the doubling phase.
	maxRate = 4096
	// relTolerance ends the bisection once the bracket is this narrow
	// relative to its upper end.
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

// MaxResult is what `llmlab sim run --find-max` prints: the highest rate
// found that meets the SLO and the full result of the run at that rate.
type MaxResult struct {
	MaxRPSUnderSLO float64 `json:"max_rps_under_slo"`
	// LowestFailingRate is the bracket's upper end (0 if none failed up to
	// the search cap).
	LowestFailingRate float64 `json:"lowest_failing_rate"`
	Probes            []Probe `json:"probes"`
	Result
}

// FindMax searches for the highest arrival rate whose run meets the SLO:
// it doubles the rate from opts.Rate (or halves it while the SLO fails)
// to bracket the boundary, then bisects until the bracket is within 1 %.
// It assumes that meeting the SLO is monotone in the rate, which holds for
// this engine up to small effects of batching; the probes are reported so
// a reader can see the boundary. MaxRPSUnderSLO is 0 when even minRate
// fails; then Result is the run at minRate.
func FindMax(opts Options) (MaxResult, error) {
	var r runner
	var out MaxResult
	probe := func(rate float64) (Result, error) {
		o := opts
		o.Rate = rate
		res, err := r.run(o)
		if err != nil {
			return Result{}, err
		}
		out.Probes = append(out.Probes, Probe{Rate: rate, SLOMet: res.SLOMet, E2EP95: res.E2EP95, RPS: res.RPS})
		return res, nil
	}
	start := opts.Rate
	if !(start > 0) {
		start = 1
	}
	// No probe may exceed the per-run request limit (Options.validate).
	top := min(maxRate, maxRequests/opts.Duration.Seconds())
	start = min(max(start, minRate), top)

	var best Result
	lo, hi := 0.0, 0.0 // lo passes (0: none yet), hi fails (0: none yet)
	res, err := probe(start)
	if err != nil {
		return MaxResult{}, err
	}
	if res.SLOMet {
		lo, best = start, res
		for rate := start * 2; rate <= top; rate *= 2 {
			res, err := probe(rate)
			if err != nil {
				return MaxResult{}, err
			}
			if !res.SLOMet {
				hi = rate
				break
			}
			lo, best = rate, res
		}
	} else {
		hi = start
		for rate := start / 2; rate >= minRate; rate /= 2 {
			res, err := probe(rate)
			if err != nil {
				return MaxResult{}, err
			}
			if res.SLOMet {
				lo, best = rate, res
				break
			}
			hi = rate
		}
		if lo == 0 {
			res, err := probe(minRate)
			if err != nil {
				return MaxResult{}, err
			}
			out.Result, out.LowestFailingRate = res, minRate
			return out, nil
		}
	}
	for hi > 0 && (hi-lo) > relTolerance*hi && len(out.Probes) < maxProbes {
		mid := (lo + hi) / 2
		res, err := probe(mid)
		if err != nil {
			return MaxResult{}, err
		}
		if res.SLOMet {
			lo, best = mid, res
		} else {
			hi = mid
		}
	}
	// If maxProbes cut the bisection short, the bracket [lo, hi] in the
	// result says how far it got.
	out.MaxRPSUnderSLO, out.LowestFailingRate, out.Result = lo, hi, best
	return out, nil
}
