package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/sim/offline"
	"github.com/llmlab/llmlab/internal/slo"
)

// runSimOffline is `llmlab sim run`.
func runSimOffline(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab sim run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	rate := fs.Float64("rate", 1, "arrival rate, requests/s (with --find-max: where the search starts)")
	duration := fs.Duration("duration", 0, "arrival window (default: the SLO file's measurement duration, 10m)")
	inputLen := fs.Int("input-len", 0, "prompt tokens per request (default: the SLO file's workload, 200)")
	outputLen := fs.Int("output-len", 0, "output tokens per request (default: the SLO file's workload, 200)")
	arrival := fs.String("arrival", offline.ArrivalConstant, "arrival process: constant or poisson")
	sloPath := fs.String("slo", "", "SLO file (default: embedded configs/slo.yaml)")
	findMax := fs.Bool("find-max", false, "search for the highest rate that meets the SLO and print it (max_rps_under_slo) with the run at that rate")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab sim run --rate R [flags]\n\n"+
			"Runs the simulated engine's scheduler in virtual time over an open-loop arrival\n"+
			"process and prints one JSON object. Flags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := ef.engineConfig()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	spec, err := slo.Load(*sloPath)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	opts := offline.Options{
		Engine: cfg, Rate: *rate, Duration: *duration, InputLen: *inputLen, OutputLen: *outputLen,
		Arrival: *arrival, Seed: ef.seed, SLO: spec.SLO,
	}
	if opts.Duration == 0 {
		opts.Duration = spec.Measurement.Duration
	}
	if opts.InputLen == 0 {
		opts.InputLen = spec.Workload.InputTokens
	}
	if opts.OutputLen == 0 {
		opts.OutputLen = spec.Workload.OutputTokens
	}
	if err := engine.ValidateConfig(cfg); err != nil {
		return simStartupError(stderr, err)
	}
	var out any
	if *findMax {
		out, err = offline.FindMax(opts)
	} else {
		out, err = offline.Run(opts)
	}
	if err != nil {
		if _, planErr := engine.NewPlan(cfg); planErr != nil {
			return simStartupError(stderr, planErr)
		}
		return &exitError{code: 2, err: err}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
