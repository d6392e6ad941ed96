package bench

import (
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/runfile"
)

// Workload is the scenario as the run file records it.
func (s Scenario) Workload() runfile.Workload {
	return runfile.Workload{
		Name: s.Name, Endpoint: s.Endpoint, Model: s.Model, InputTokens: s.InputTokens,
		OutputTokens: s.OutputTokens, Prompt: s.Prompt, PromptFile: s.PromptFile,
		IgnoreEOS: s.IgnoreEOS, Temperature: s.Temperature, Stream: s.Stream,
	}
}

// recordConfig turns a Config (defaults applied) into its record.
func recordConfig(c Config) runfile.Config {
	rc := runfile.Config{
		URL: c.URL, Model: c.Model, Endpoint: c.Scenario.Endpoint, Rate: c.Rate, Concurrency: c.Concurrency,
		DurationS: c.Duration.Seconds(), RampS: c.Ramp.Seconds(), WarmupS: c.Warmup.Seconds(),
		CooldownS: c.Cooldown.Seconds(), Arrival: c.Arrival, Burstiness: c.Burstiness, Seed: c.Seed,
		MaxConcurrency: c.MaxConcurrency, TimeoutS: c.Timeout.Seconds(), LagThresholdS: c.LagThreshold.Seconds(),
		MaxConns: c.MaxConns, MaxSendLagS: c.MaxSendLag.Seconds(),
	}
	if c.Concurrency > 0 {
		rc.Rate, rc.Arrival, rc.Burstiness = 0, arrival.ClosedLoop, 0
	}
	return rc
}

// NewRunFile builds the record of one run.
func NewRunFile(cfg Config, res Result) (RunFile, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return RunFile{}, err
	}
	if res.Model != "" {
		cfg.Model = res.Model
	}
	sc := cfg.Scenario
	sc.Model = cfg.Model
	r := res
	return RunFile{
		SchemaVersion: runfile.SchemaVersion, Kind: KindRun, Source: runfile.SourceLive, CreatedAt: time.Now().UTC(),
		Profile: runfile.ProfileName(cfg.Profile), Config: recordConfig(cfg), Workload: sc.Workload(),
		SLO: runfile.NewSLORecord(cfg.SLO), Environment: runfile.CurrentEnvironment(), Results: &r, SLOMet: res.SLOMet,
	}, nil
}

// NewFindMaxRunFile builds the record of a search: Results holds the best
// passing step's figures.
func NewFindMaxRunFile(cfg Config, fm FindMaxResult) (RunFile, error) {
	var res Result
	best, ok := fm.Best()
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
