package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/sim/offline"
	"github.com/llmlab/llmlab/internal/slo"
)

// runSimOffline is `llmlab sim run`: the load of `llmlab bench` (the same
// arrival schedule, steady window and figures) against the simulated
// engine in virtual time, recorded in the same run-file schema.
func runSimOffline(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab sim run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	rate := fs.Float64("rate", 1, "arrival rate, requests/s (with --find-max: where the search starts)")
	duration := fs.Duration("duration", 0, "arrival window, ramp included (default: the SLO file's measurement duration, 10m)")
	ramp := fs.Duration("ramp", 0, "linear ramp from 0 to --rate (default: 10% of the duration, at most 30s, as bench)")
	warmup := fs.Duration("warmup", 0, "excluded from the figures from the start (default: --ramp, as bench)")
	cooldown := fs.Duration("cooldown", 0, "excluded from the figures before the end")
	inputLen := fs.Int("input-len", 0, "prompt tokens per request (default: the SLO file's workload, 200)")
	outputLen := fs.Int("output-len", 0, "output tokens per request (default: the SLO file's workload, 200)")
	arrivalProc := fs.String("arrival", arrival.Constant, "arrival process: constant, poisson or gamma (the schedule bench sends by; --seed seeds it)")
	burstiness := fs.Float64("burstiness", 1, "gamma shape for --arrival gamma (1 = Poisson, <1 burstier)")
	concurrency := fs.Int("concurrency", 0, "closed loop: N clients, each sending its next request when the previous ends (no --rate)")
	sloPath := fs.String("slo", "", "SLO file (default: embedded configs/slo.yaml)")
	findMax := fs.Bool("find-max", false, "search for the highest rate that meets the SLO (the search bench --find-max makes)")
	jsonOut := fs.Bool("json", false, "print the run file's JSON on stdout instead of the summary")
	out := fs.String("out", "", "also write the run file to this path")
	profileName := fs.String("profile", "", "profile name recorded in the run file (default adhoc)")
	failOnSLO := fs.Bool("fail-on-slo", false, "exit 4 when the SLO is not met (find-max: when no rate meets it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab sim run --rate R [flags]\n\n"+
			"Runs the simulated engine's scheduler in virtual time over the load `llmlab bench`\n"+
			"would send (same arrival schedule, steady window and figures) and prints the\n"+
			"summary, or with --json the run file (docs/runfile.md). Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, exitCodesHelp)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(err error) error { return &exitError{code: exitUsage, err: err} }
	cfg, err := ef.engineConfig()
	if err != nil {
		return usage(err)
	}
	spec, err := slo.Load(*sloPath)
	if err != nil {
		return usage(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *concurrency < 0:
		return usage(fmt.Errorf("concurrency must be >= 0, got %d", *concurrency))
	case *concurrency > 0 && *findMax:
		return usage(errors.New("--concurrency (closed loop) has no rate for --find-max to search"))
	case *concurrency > 0 && (set["rate"] || set["arrival"] || set["burstiness"]):
		return usage(errors.New("--rate, --arrival and --burstiness do not apply to a closed loop (--concurrency)"))
	case set["burstiness"] && *arrivalProc != arrival.Gamma && *burstiness != 1:
		return usage(fmt.Errorf("--burstiness %v needs --arrival gamma (got %s)", *burstiness, *arrivalProc))
	case set["duration"] && *duration <= 0:
		return usage(fmt.Errorf("duration must be > 0, got %v", *duration))
	}
	opts := offline.Options{
		Engine: cfg, Rate: *rate, Duration: *duration, Ramp: *ramp, Warmup: *warmup, Cooldown: *cooldown,
		InputLen: *inputLen, OutputLen: *outputLen, Arrival: *arrivalProc, Burstiness: *burstiness,
		Seed: ef.seed, Concurrency: *concurrency, SLO: spec.SLO,
	}
	if opts.Duration == 0 {
		opts.Duration = spec.Measurement.Duration
	}
	// The same defaults as bench, so that the two see the same stream.
	if !set["ramp"] {
		opts.Ramp = min(opts.Duration/10, 30*time.Second)
	}
	if !set["warmup"] {
		opts.Warmup = opts.Ramp
	}
	if opts.InputLen == 0 {
		opts.InputLen = spec.Workload.InputTokens
	}
	if opts.OutputLen == 0 {
		opts.OutputLen = spec.Workload.OutputTokens
	}
	if err := offline.CheckOptions(opts); err != nil {
		return usage(err)
	}

	var rf runfile.RunFile
	if *findMax {
		m, err := offline.FindMax(opts)
		if err != nil {
			return simRunError(stderr, err)
		}
		rf = offline.NewFindMaxRunFile(opts, m, spec, *profileName)
	} else {
		res, err := offline.Run(opts)
		if err != nil {
			return simRunError(stderr, err)
		}
		rf = offline.NewRunFile(opts, res, spec, *profileName)
	}
	var saveErr error
	if *out != "" {
		saveErr = runfile.Write(*out, &rf)
	}
	if *jsonOut {
		err = writeJSON(stdout, &rf)
	} else {
		err = runfile.WriteSummary(stdout, rf)
	}
	if err != nil {
		return err
	}
	if saveErr != nil {
		return fmt.Errorf("run file not saved: %w", saveErr)
	}
	if *out != "" {
		fmt.Fprintf(stderr, "run file: %s\n", *out)
	}
	return runVerdict(&rf, *failOnSLO)
}

// simRunError reports a failed offline run: an engine that would not start
// prints vLLM's exception line and exits 1 as `vllm serve` does; anything
// else is an error (exit 1).
func simRunError(stderr io.Writer, err error) error {
	var se *engine.StartupError
	if errors.As(err, &se) {
		fmt.Fprintln(stderr, se.ExceptionLine())
		return &exitError{code: exitFailure}
	}
	return &exitError{code: exitFailure, err: err}
}
