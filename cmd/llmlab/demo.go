package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/demo"
)

// demoExitCodes is the demo's exit-code table for -h.
const demoExitCodes = `
Exit codes: 0 the full cycle STOPPED → STARTING → READY → served → STOPPED
was observed; 1 error (serve would not start, the worker did not start or
stop in time, a file not written, interrupted, or the cycle not observed);
2 usage error; 3 no request of the load completed.`

// runDemo runs the scale-to-zero demonstration (internal/demo).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	startup := fs.Float64("startup-seconds", 5, "the simulated worker's modelled load time, seconds (serve's --worker-startup-seconds; negative: the profile's, ~35 s on the RTX 3050 model)")
	idle := fs.Duration("idle-timeout", 15*time.Second, "serve's --idle-timeout: how long the worker may idle before it is stopped")
	rate := fs.Float64("rate", 2, "load: requests per second (open loop, constant)")
	load := fs.Duration("load-duration", 20*time.Second, "load: how long requests are sent")
	lead := fs.Duration("lead", 3*time.Second, "how long the stopped worker is shown before the load")
	profileName := fs.String("profile", "", "serve's --profile (default: serve's)")
	apiKey := fs.String("api-key", "", "an API key serve requires and the load sends (Authorization: Bearer)")
	scenario := fs.String("scenario", "", "request shape: a scenario name or YAML file (default "+bench.DefaultScenarioName+")")
	out := fs.String("out", "experiments/demo", "directory for timeline.json, demo.png, demo.svg, demo.gif and serve.log")
	asJSON := fs.Bool("json", false, "print the timeline as JSON on stdout (the transcript goes to stderr)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab demo [flags] [-- SERVE FLAGS]\n\n"+
			"Scale to zero, end to end: starts `llmlab serve` (a child process) with a short idle\n"+
			"timeout, waits until the worker is STOPPED, sends load, and shows the worker start by\n"+
			"itself, serve, and stop again once idle. Prints a timestamped transcript; writes the\n"+
			"timeline (worker state, queue depth, in flight, each request's latency marked cold or\n"+
			"warm) as JSON, a plot (PNG, SVG) and an animated GIF into --out. About a minute with the\n"+
			"defaults, on the simulated worker. Flags after -- go to serve as they are\n"+
			"(e.g. -- --max-in-flight 4 --queue-max 16); see llmlab serve -h.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, demoExitCodes)
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error {
		return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
	}
	var serveArgs []string
	if fs.NArg() > 0 {
		// flag stops at "--"; what follows is serve's.
		if i := len(args) - fs.NArg(); i == 0 || args[i-1] != "--" {
			return usage("unexpected arguments: %v (serve's flags go after --)", fs.Args())
		}
		serveArgs = fs.Args()
	}
	switch {
	case *idle <= 0:
		return usage("--idle-timeout must be > 0: scale-to-zero is what the demo shows")
	case *rate <= 0:
		return usage("--rate must be > 0")
	case *load <= 0:
		return usage("--load-duration must be > 0")
	case *lead < 0:
		return usage("--lead must be >= 0")
	}
	sc, err := bench.LoadScenario(*scenario)
	if err != nil {
		return usage("--scenario: %v", err)
	}
	transcript := stdout
	if *asJSON {
		transcript = stderr
	}
	tl, _, err := demo.Run(ctx, demo.Config{
		Profile: *profileName, StartupSeconds: *startup, IdleTimeout: *idle,
		Rate: *rate, Load: *load, Lead: *lead, APIKey: *apiKey, Scenario: sc,
		OutDir: *out, Transcript: transcript, ServeArgs: serveArgs,
	})
	if tl != nil && *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(tl); jerr != nil && err == nil {
			err = fmt.Errorf("write timeline: %w", jerr)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, demo.ErrNothingCompleted):
		return &exitError{code: exitNoSuccess, err: err}
	}
	return &exitError{code: exitFailure, err: err}
}
