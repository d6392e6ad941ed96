package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/llmlab/llmlab/internal/search"
)

// FindMaxOptions bounds the search for the highest rate meeting the SLO
// (internal/search does the search; these are its live defaults).
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
	if o.StepDuration <= 0 {
		o.StepDuration = time.Minute
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 8
	}
	return o
}

// FindMax searches for the highest arrival rate whose run meets the SLO
// with search.Run, each probe a Run of StepDuration. A step whose
// generator fell behind still counts (its latencies only grew by the lag),
// but the search is flagged GeneratorLimited. On cancellation it returns
// the steps done so far, the last marked interrupted, with an error
// wrapping ctx.Err().
func FindMax(ctx context.Context, cfg Config, opts FindMaxOptions) (FindMaxResult, error) {
	opts = opts.withDefaults()
	out := FindMaxResult{StepDurationS: opts.StepDuration.Seconds(), MaxSteps: opts.MaxSteps}
	// One model look-up for all steps, so every step asks for the same
	// model. Each step has its own connection pool (Run's), sized for its
	// rate unless a Client or MaxConns is given.
	if cfg.Model == "" && cfg.Scenario.Model == "" {
		d, err := cfg.withDefaults()
		if err != nil {
			return out, err
		}
		client := cfg.Client
		if client == nil {
			tr := NewPoolTransport(1)
			defer tr.CloseIdleConnections()
			client = &http.Client{Transport: tr}
		}
		m, err := DiscoverModel(ctx, client, d.URL, cfg.Header)
		if err != nil {
			return out, fmt.Errorf("find-max: %w", err)
		}
		cfg.Model = m
	}
	probe := search.ProberFunc[Result](func(ctx context.Context, step int, rate float64) (Result, bool, error) {
		c := cfg
		c.Rate = rate
		c.Duration = opts.StepDuration
		c.Seed = cfg.Seed + uint64(step)
		res, err := Run(ctx, c)
		return res, res.SLOMet, err
	})
	sopts := search.Options{Start: opts.StartRate, Growth: opts.Growth, Precision: opts.Precision, MaxSteps: opts.MaxSteps}
	var onStep func(search.Step[Result])
	if opts.OnStep != nil {
		onStep = func(s search.Step[Result]) { opts.OnStep(stepRecord(s)) }
	}
	sr, err := search.Run(ctx, sopts, probe, onStep)
	out.MaxRate, out.FailRate = sr.MaxRate, sr.FailRate
	for _, s := range sr.Steps {
		out.Steps = append(out.Steps, stepRecord(s))
		if !s.Pass && !s.Interrupted && s.Result.GeneratorBehind {
			out.GeneratorLimited = true
		}
	}
	if b, ok := out.Best(); ok {
		out.MaxRPS = b.Result.RPS
	}
	return out, err
}

func stepRecord(s search.Step[Result]) FindMaxStep {
	return FindMaxStep{Step: s.Step, Rate: s.Rate, Pass: s.Pass, Result: s.Result}
}
