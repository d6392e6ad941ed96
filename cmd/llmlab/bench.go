package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/term"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/slo"
)

// runBench is `llmlab bench`: parse flags, run internal/bench, print the
// summary and save the run file.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		url          = fs.String("url", "http://127.0.0.1:8080", "base URL of the gateway or worker")
		model        = fs.String("model", "", "model name (default: the scenario's, else the first of GET /v1/models)")
		endpoint     = fs.String("endpoint", "", "completions or chat (default: the scenario's)")
		scenarioPath = fs.String("scenario", "", "scenario YAML file (default: embedded loadtest/scenarios/fixed_200_200.yaml)")
		inputLen     = fs.Int("input-len", 0, "input tokens per request (overrides the scenario)")
		outputLen    = fs.Int("output-len", 0, "output tokens per request (overrides the scenario)")
		prompt       = fs.String("prompt", "", "tokens (token-id prompt) or text (configs/prompts/prompt_200.txt); default: the scenario's")
		rate         = fs.Float64("rate", 1, "steady arrival rate, requests/s (with --find-max: the first step's rate)")
		duration     = fs.Duration("duration", 0, "sending time, ramp included (default: the SLO file's measurement duration, 10m)")
		ramp         = fs.Duration("ramp", 0, "linear ramp from 0 to --rate (default: 10% of the duration, at most 30s)")
		warmup       = fs.Duration("warmup", 0, "excluded from steady-state figures from the start (default: --ramp)")
		cooldown     = fs.Duration("cooldown", 0, "excluded from steady-state figures before the end")
		arrivalProc  = fs.String("arrival", arrival.Constant, "arrival process: constant, poisson or gamma")
		burstiness   = fs.Float64("burstiness", 1, "gamma shape for --arrival gamma (1 = Poisson, <1 burstier)")
		maxConc      = fs.Int("max-concurrency", 0, "cap on requests in flight (0: none; waiting counts in latency)")
		concurrency  = fs.Int("concurrency", 0, "closed loop: N clients, each sending its next request when the previous ends (no --rate; latency from the send)")
		jsonOut      = fs.Bool("json", false, "print the run file's JSON on stdout instead of the summary (the run file path goes to stderr)")
		failOnSLO    = fs.Bool("fail-on-slo", false, "exit 4 when the SLO is not met (find-max: when no rate meets it)")
		seed         = fs.Uint64("seed", 1, "seed for the arrival schedule (prompts differ on every run, so a prefix cache cannot hit)")
		timeout      = fs.Duration("timeout", 60*time.Second, "abandon a request this long after its scheduled send (counted as timeout)")
		sloPath      = fs.String("slo", "", "SLO file (default: embedded configs/slo.yaml)")
		profileName  = fs.String("profile", "", "profile name recorded in the run file and its name (default adhoc)")
		out          = fs.String("out", "", "run file path (default: experiments/runs/YYYY-MM-DD_runXX_<profile>.json)")
		runsDir      = fs.String("runs-dir", runfile.DefaultRunsDir, "directory for numbered run files")
		noSave       = fs.Bool("no-save", false, "do not write a run file")
		lagThreshold = fs.Duration("lag-threshold", 10*time.Millisecond, "send-lag p99 above which the generator is said to fall behind")
		maxConns     = fs.Int("max-conns", 0, "most connections to the server (0: sized from the load: --concurrency, --max-concurrency, or rate × --timeout in [64, 4096])")
		maxSendLag   = fs.Duration("max-send-lag", time.Second, "a request the generator cannot send this long after its scheduled time (behind, or no free connection) is not sent: a generator error, and the run is invalid (exit 5)")
		quiet        = fs.Bool("quiet", false, "no live progress line even on a terminal")
		findMax      = fs.Bool("find-max", false, "search for the highest rate meeting the SLO")
		steps        = fs.Int("find-max-steps", 8, "most runs of the --find-max search")
		stepDur      = fs.Duration("step-duration", 60*time.Second, "duration of each --find-max run")
		saveRequests = fs.Bool("save-requests", false, "also keep one row per request (scheduled time, TTFT, e2e, tokens, status) beside the run file, as <run>.requests.jsonl.gz")
		apiKey       = fs.String("api-key", os.Getenv("LLMLAB_API_KEY"), "API key sent as 'Authorization: Bearer <key>' (env LLMLAB_API_KEY; default none)")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab bench [flags]\n\nLoad generator: sends the scenario's requests at --rate (open loop, latency from\n"+
			"each request's scheduled send time) or from --concurrency clients (closed loop),\nand writes a run file (docs/runfile.md). Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, exitCodesHelp)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error { return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)} }

	spec, err := slo.Load(*sloPath)
	if err != nil {
		return usage("%w", err)
	}
	sc, err := bench.LoadScenario(*scenarioPath)
	if err != nil {
		return usage("%w", err)
	}
	if *endpoint != "" {
		sc.Endpoint = *endpoint
	}
	if *prompt != "" {
		sc.Prompt = *prompt
	}
	if sc.Endpoint == bench.EndpointChat && *prompt == "" {
		sc.Prompt = bench.PromptText // chat cannot carry a token-id prompt
	}
	if *inputLen != 0 {
		sc.InputTokens = *inputLen
	}
	if *outputLen != 0 {
		sc.OutputTokens = *outputLen
	}
	if err := sc.Validate(); err != nil {
		return usage("scenario: %w", err)
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// 0 is the "not given" value of --duration and, in the library, of
	// the timeout and lag threshold; given explicitly it must not turn
	// into a 10-minute run or another silent default.
	switch {
	case set["duration"] && *duration <= 0:
		return usage("duration must be > 0, got %v", *duration)
	case *timeout <= 0:
		return usage("timeout must be > 0, got %v", *timeout)
	case *lagThreshold <= 0:
		return usage("lag-threshold must be > 0, got %v", *lagThreshold)
	case *maxSendLag <= 0:
		return usage("max-send-lag must be > 0, got %v", *maxSendLag)
	case *maxConns < 0:
		return usage("max-conns must be >= 0, got %d", *maxConns)
	case *findMax && *stepDur <= 0:
		return usage("step-duration must be > 0, got %v", *stepDur)
	case *findMax && *steps <= 0:
		return usage("find-max-steps must be > 0, got %d", *steps)
	case set["burstiness"] && *arrivalProc != arrival.Gamma && *burstiness != 1:
		// Constant and Poisson arrivals have no shape to set: the run
		// would silently not be the bursty load asked for.
		return usage("--burstiness %v needs --arrival gamma (got %s)", *burstiness, *arrivalProc)
	case *findMax && set["duration"]:
		return usage("--duration does not apply to --find-max; each step lasts --step-duration")
	case *saveRequests && (*findMax || *noSave):
		return usage("--save-requests needs a single saved run (not --find-max or --no-save)")
	case *concurrency < 0:
		return usage("concurrency must be >= 0, got %d", *concurrency)
	case *concurrency > 0 && *findMax:
		return usage("--concurrency (closed loop) has no rate for --find-max to search")
	case *concurrency > 0 && (set["rate"] || set["arrival"] || set["burstiness"]):
		return usage("--rate, --arrival and --burstiness do not apply to a closed loop (--concurrency)")
	}
	d := *duration
	if *findMax {
		d = *stepDur
	}
	if d == 0 {
		d = spec.Measurement.Duration
	}
	if !set["ramp"] {
		*ramp = min(d/10, 30*time.Second)
	}
	if !set["warmup"] {
		*warmup = *ramp
	}
	cfg := bench.Config{
		URL: *url, Scenario: sc, Model: *model,
		Rate: *rate, Duration: d, Ramp: *ramp, Warmup: *warmup, Cooldown: *cooldown,
		Arrival: *arrivalProc, Burstiness: *burstiness, Seed: *seed,
		MaxConcurrency: *maxConc, Concurrency: *concurrency, Timeout: *timeout, SLO: spec, Profile: *profileName,
		LagThreshold: *lagThreshold, MaxConns: *maxConns, MaxSendLag: *maxSendLag,
	}
	if *apiKey != "" {
		cfg.Header = http.Header{"Authorization": {"Bearer " + *apiKey}}
	}
	if f, ok := stderr.(*os.File); ok && !*quiet && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = stderr
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			cfg.ProgressWidth = w
		}
	}
	if err := bench.CheckConfig(cfg); err != nil {
		return usage("%w", err)
	}

	var reqTmp string
	if *saveRequests {
		dir := *runsDir
		if *out != "" {
			dir = filepath.Dir(*out)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create runs dir: %w", err)
		}
		reqTmp = filepath.Join(dir, fmt.Sprintf(".requests-%d.jsonl.gz.tmp", os.Getpid()))
		if cfg.Requests, err = bench.CreateRequestLog(reqTmp); err != nil {
			return err
		}
		defer cfg.Requests.Close()
		defer os.Remove(reqTmp) // renamed beside the run file once it is saved
	}
	var (
		rf     bench.RunFile
		runErr error
	)
	if *findMax {
		opts := bench.FindMaxOptions{
			StartRate: *rate, MaxSteps: *steps, StepDuration: *stepDur,
			OnStep: func(s bench.FindMaxStep) {
				verdict := "fail"
				if s.Pass {
					verdict = "pass"
				}
				fmt.Fprintf(stderr, "find-max step %d: rate %.3g req/s → %s (rps %.2f, e2e p95 %.3fs, error rate %.3f%%)\n",
					s.Step, s.Rate, verdict, s.Result.RPS, s.Result.E2EP95, 100*s.Result.ErrorRate)
			},
		}
		var fm bench.FindMaxResult
		fm, runErr = bench.FindMax(ctx, cfg, opts)
		if runErr != nil && len(fm.Steps) == 0 {
			if errors.Is(runErr, ctx.Err()) {
				return runErr
			}
			return &exitError{code: exitFailure, err: runErr}
		}
		rf, err = bench.NewFindMaxRunFile(cfg, fm)
	} else {
		var res bench.Result
		res, runErr = bench.Run(ctx, cfg)
		if runErr != nil && !res.Interrupted {
			return runErr
		}
		rf, err = bench.NewRunFile(cfg, res)
	}
	if err != nil {
		return err
	}
	if cfg.Requests != nil {
		if err := cfg.Requests.Close(); err != nil {
			return err
		}
	}

	var path string
	var saveErr error
	if !*noSave {
		if *out != "" {
			path, saveErr = *out, runfile.Write(*out, &rf)
		} else {
			path, saveErr = runfile.Save(*runsDir, &rf)
		}
	}
	// The summary comes first whatever happened to the file: a run file
	// that cannot be written must not take a long run's figures with it.
	info := stdout
	if *jsonOut {
		info = stderr // stdout holds the JSON alone
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
	if path != "" {
		fmt.Fprintf(info, "\nrun file: %s\n", path)
		if reqTmp != "" {
			if err := os.Rename(reqTmp, bench.RequestsPath(path)); err != nil {
				return fmt.Errorf("requests file: %w", err)
			}
			fmt.Fprintf(info, "requests file: %s\n", bench.RequestsPath(path))
		}
	}
	if runErr != nil {
		return runErr
	}
	return runVerdict(&rf, *failOnSLO)
}
