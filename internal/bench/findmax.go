package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// FindMaxOptions bounds the search for the highest rate meeting the SLO.
type FindMaxOptions struct {
	// StartRate is the first step's rate (default 1 req/s).
	StartRate float64
	// MaxSteps is the most runs the search makes (default 8).
	MaxSteps int
	// StepDuration is each run's duration (default 60 s); the Config's
	// ramp, warm-up and cool-down apply inside it.
	StepDuration time.Duration
	// Growth multiplies the rate while every step meets the SLO (default 2).
	Growth float64
	// Precision ends the bisection once (fail − pass)/pass is at most this
	// (default 0.05).
	Precision float64
	// OnStep, when set, is called after each step (for live reporting).
	OnStep func(FindMaxStep)
}

func (o FindMaxOptions) withDefaults() FindMaxOptions {
	if o.StartRate <= 0 {
		o.StartRate = 1
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 8
	}
	if o.StepDuration <= 0 {
		o.StepDuration = time.Minute
	}
	if o.Growth <= 1 {
		o.Growth = 2
	}
	if o.Precision <= 0 {
		o.Precision = 0.05
	}
	return o
}

// FindMaxStep is one run of the search.
type FindMaxStep struct {
	Step int     `json:"step"`
	Rate float64 `json:"rate"`
	// Pass is the step's slo_met; only passing steps can be the maximum.
	// A step whose generator fell behind still counts (its latencies only
	// grew by the lag), but the search is flagged GeneratorLimited.
	Pass   bool   `json:"pass"`
	Result Result `json:"result"`
}

// FindMaxResult is the outcome of a search.
type FindMaxResult struct {
	// MaxRate is the highest scheduled rate that passed (0: none did).
	MaxRate float64 `json:"max_rate"`
	// MaxRPS is the sustained completed RPS measured at MaxRate.
	MaxRPS float64 `json:"max_rps"`
	// FailRate is the lowest rate that failed (0: none did, so MaxRate is
	// only a lower bound).
	FailRate      float64       `json:"fail_rate"`
	StepDurationS float64       `json:"step_duration_s"`
	MaxSteps      int           `json:"max_steps"`
	Steps         []FindMaxStep `json:"steps"`
	// GeneratorLimited is set when a failing step's generator fell behind:
	// the maximum may then say more about this machine than the server.
	GeneratorLimited bool `json:"generator_limited"`
}

// best returns the passing step with the highest rate.
func (f *FindMaxResult) best() (FindMaxStep, bool) {
	var b FindMaxStep
	ok := false
	for _, s := range f.Steps {
		if s.Pass && (!ok || s.Rate > b.Rate) {
			b, ok = s, true
		}
	}
	return b, ok
}

// FindMax searches for the highest arrival rate whose run meets the SLO:
// the rate grows by Growth from StartRate until a step fails, then the
// interval between the best pass and the lowest failure is bisected, all
// within MaxSteps runs of StepDuration each. If the first step fails the
// rate is divided by Growth until one passes. On cancellation it returns
// the steps done so far with an error wrapping ctx.Err().
func FindMax(ctx context.Context, cfg Config, opts FindMaxOptions) (FindMaxResult, error) {
	opts = opts.withDefaults()
	out := FindMaxResult{StepDurationS: opts.StepDuration.Seconds(), MaxSteps: opts.MaxSteps}
	// One client and one model look-up for all steps: connections stay warm
	// between steps and every step asks for the same model.
	if cfg.Client == nil {
		tr := NewTransport()
		defer tr.CloseIdleConnections()
		cfg.Client = &http.Client{Transport: tr}
	}
	if cfg.Model == "" && cfg.Scenario.Model == "" {
		d, err := cfg.withDefaults()
		if err != nil {
			return out, err
		}
		m, err := DiscoverModel(ctx, cfg.Client, d.URL)
		if err != nil {
			return out, fmt.Errorf("find-max: %w", err)
		}
		cfg.Model = m
	}
	pass, fail := 0.0, math.Inf(1)
	rate := opts.StartRate
	for step := 1; step <= opts.MaxSteps; step++ {
		c := cfg
		c.Rate = rate
		c.Duration = opts.StepDuration
		c.Seed = cfg.Seed + uint64(step)
		res, err := Run(ctx, c)
		if err != nil && !errors.Is(err, ctx.Err()) {
			out.finish(pass, fail) // the steps so far still bracket the maximum
			return out, fmt.Errorf("find-max step %d at %.3g req/s: %w", step, rate, err)
		}
		s := FindMaxStep{Step: step, Rate: rate, Pass: res.SLOMet, Result: res}
		out.Steps = append(out.Steps, s)
		if opts.OnStep != nil {
			opts.OnStep(s)
		}
		if err != nil {
			out.finish(pass, fail)
			return out, fmt.Errorf("find-max: %w", err)
		}
		if res.GeneratorBehind && !s.Pass {
			out.GeneratorLimited = true
		}
		if s.Pass {
			pass = math.Max(pass, rate)
		} else {
			fail = math.Min(fail, rate)
		}
		switch {
		case math.IsInf(fail, 1):
			rate *= opts.Growth
		case pass == 0:
			rate /= opts.Growth
		default:
			if (fail-pass)/pass <= opts.Precision {
				out.finish(pass, fail)
				return out, nil
			}
			rate = (pass + fail) / 2
		}
	}
	out.finish(pass, fail)
	return out, nil
}

func (f *FindMaxResult) finish(pass, fail float64) {
	f.MaxRate = pass
	if !math.IsInf(fail, 1) {
		f.FailRate = fail
	}
	if b, ok := f.best(); ok {
		f.MaxRPS = b.Result.RPS
	}
}

// NewFindMaxRunFile builds the record of a search: Results holds the best
// passing step's figures.
func NewFindMaxRunFile(cfg Config, fm FindMaxResult) (RunFile, error) {
	var res Result
	best, ok := fm.best()
	if ok {
		res = best.Result
		cfg.Rate = best.Rate
	} else if len(fm.Steps) > 0 {
		res.Model = fm.Steps[0].Result.Model
	}
	cfg.Duration = time.Duration(fm.StepDurationS * float64(time.Second))
	rf, err := NewRunFile(cfg, res)
	if err != nil {
		return RunFile{}, err
	}
	rf.Kind = KindFindMax
	if !ok {
		rf.Results = nil
	}
	rf.SLOMet = ok
	rf.FindMax = &fm
	return rf, nil
}
