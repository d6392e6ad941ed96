package offline

import (
	"time"

	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/slo"
)

// NewRunFile builds the run file of an offline run: the schema `llmlab
// bench` writes (internal/runfile), with kind sim_run, source offline and
// the engine in "sim". spec is the SLO file the run was judged by (its
// objective must be opts.SLO); profile names the file.
func NewRunFile(opts Options, res Result, spec slo.Spec, profile string) runfile.RunFile {
	opts = opts.withDefaults()
	r := res.Results
	c := res.Config
	return runfile.RunFile{
		SchemaVersion: runfile.SchemaVersion, Kind: runfile.KindSimRun, Source: runfile.SourceOffline,
		CreatedAt: time.Now().UTC(), Profile: runfile.ProfileName(profile),
		Config: runfile.Config{
			Model: opts.Engine.ModelSpec, Endpoint: "completions", Rate: c.Rate, Concurrency: c.Concurrency,
			DurationS: c.DurationS, RampS: c.RampS, WarmupS: c.WarmupS, CooldownS: c.CooldownS,
			Arrival: c.Arrival, Burstiness: c.Burstiness, Seed: uint64(c.Seed),
		},
		// What the engine is given: a token-id prompt of InputLen and
		// exactly OutputLen tokens out (ignore_eos), streamed.
		Workload: runfile.Workload{
			Name: "offline", Endpoint: "completions", Model: opts.Engine.ModelSpec, InputTokens: opts.InputLen,
			OutputTokens: opts.OutputLen, Prompt: "tokens", IgnoreEOS: true, Stream: true,
		},
		SLO:         runfile.NewSLORecord(spec),
		Environment: runfile.CurrentEnvironment(),
		Sim: &runfile.Sim{
			GPU: c.GPU, ModelSpec: c.ModelSpec, MaxModelLen: c.MaxModelLen, GPUMemoryUtilization: c.GPUMemoryUtilization,
			MaxNumSeqs: c.MaxNumSeqs, MaxNumBatchedTokens: c.MaxNumBatchedTokens, EnableChunkedPrefill: c.EnableChunkedPrefill,
			BlockSize: c.BlockSize, Calibrated: c.Calibrated,
			KVTokens: res.KVTokens, KVBlocks: res.KVBlocks, MaxConcurrency: res.MaxConcurrency, StartupSeconds: res.StartupSeconds,
		},
		Results: &r,
		SLOMet:  r.SLOMet,
	}
}

// NewFindMaxRunFile builds the run file of an offline search: Results
// holds the figures at the highest passing rate (nil when none passed).
func NewFindMaxRunFile(opts Options, m MaxResult, spec slo.Spec, profile string) runfile.RunFile {
	rf := NewRunFile(opts, m.Result, spec, profile)
	rf.Kind = runfile.KindSimRunFindMax
	fm := &runfile.FindMax{
		MaxRate: m.MaxRPSUnderSLO, FailRate: m.LowestFailingRate, StepDurationS: opts.Duration.Seconds(),
		MaxSteps: maxProbes, Steps: m.StepRecords,
	}
	if b, ok := fm.Best(); ok {
		fm.MaxRPS = b.Result.RPS
	} else {
		rf.Results = nil
	}
	rf.SLOMet = m.MaxRPSUnderSLO > 0
	rf.FindMax = fm
	return rf
}
