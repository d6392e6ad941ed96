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
	"strconv"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/sim/offline"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/tune"
)

// runTune is `llmlab tune`: build or resume a tune file, then hand off to
// internal/tune.
func runTune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab tune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		profileName  = fs.String("profile", "", "base profile: an embedded name ("+joinNames()+") or a YAML file (default "+profile.DefaultName+")")
		gridPath     = fs.String("grid", "", "YAML grid file (keys max_model_len, max_num_seqs, max_num_batched_tokens, gpu_memory_utilization: lists)")
		mml          = fs.String("max-model-len", "", "comma list (default 512)")
		seqs         = fs.String("max-num-seqs", "", "comma list (default 64,128,192,256)")
		batched      = fs.String("max-num-batched-tokens", "", "comma list (default 4096,8192,12288,16384)")
		util         = fs.Float64("gpu-memory-utilization", 0, "utilisation for every point (default: the profile's)")
		gpuSpec      = fs.String("gpu-spec", "", "sim only: a GPU spec YAML file for every worker (llmlab sim --gpu-spec)")
		startupS     = fs.Float64("startup-seconds", -1, "sim only: the workers' modelled load time (default: the profile's, else the modelled cold start)")
		duration     = fs.Duration("duration", 20*time.Second, "length of each probe of the search (the M0 measurement is 10m; the quick default gives a stable median on the sim)")
		repDur       = fs.Duration("repeat-duration", 0, "length of each confirmation run (default --duration)")
		repeats      = fs.Int("repeats", 2, "confirmation runs at each point's max rate; the point's figure is their median")
		startRate    = fs.Float64("start-rate", 1, "first probe's rate, req/s (with --predict: the point's predicted max)")
		maxSteps     = fs.Int("max-steps", 8, "most probes per point")
		precision    = fs.Float64("precision", 0.05, "end a point's search once (fail − pass)/pass ≤ this")
		growth       = fs.Float64("growth", 0, "rate multiplier while probes pass (default 2; 1.2 with --predict)")
		blowup       = fs.Float64("blowup-fraction", 0.5, "a point below this fraction of its row's best max RPS (or meeting the SLO at no rate) ends its row")
		predict      = fs.Bool("predict", false, "rank the grid with the offline simulator first and measure live only the top-k and points within --margin")
		topK         = fs.Int("top-k", 2, "with --predict: points measured live")
		margin       = fs.Float64("margin", 0, "with --predict: also measure points predicted within this fraction of the best (0: none; the calibrated sim predicts one maximum for most of the default grid, so a margin there selects nearly all of it)")
		resume       = fs.String("resume", "", "continue this tune file (its grid and settings) without redoing finished points")
		tunesDir     = fs.String("tunes-dir", runfile.DefaultTunesDir, "directory for tune files (YYYY-MM-DD_tuneXX.json)")
		runsDir      = fs.String("runs-dir", runfile.DefaultRunsDir, "directory for the run files of searches and repeats")
		sloPath      = fs.String("slo", "", "SLO file (default: embedded configs/slo.yaml)")
		scenarioPath = fs.String("scenario", "", "scenario YAML (default: embedded fixed_200_200)")
		timeout      = fs.Duration("timeout", 60*time.Second, "abandon a request this long after its scheduled send")
		startupTO    = fs.Duration("startup-timeout", 5*time.Minute, "longest a worker may take to become ready")
		jsonOut      = fs.Bool("json", false, "print the tune file's JSON on stdout (progress and table go to stderr)")
		failOnSLO    = fs.Bool("fail-on-slo", false, "exit 4 when no point meets the SLO")
		apiKey       = fs.String("api-key", os.Getenv("LLMLAB_API_KEY"), "API key sent as 'Authorization: Bearer <key>' (env LLMLAB_API_KEY; default none)")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab tune [flags]\n\n"+
			"Grid search over engine arguments: for every point a real worker (the profile's engine,\n"+
			"started by the supervisor as `llmlab serve` does), the highest rate meeting the SLO\n"+
			"(find-max), --repeats runs at it (median). Worker OOM at start is recorded and the points\n"+
			"needing more memory skipped; a latency blow-up ends its row. State and results go to a\n"+
			"tune file after every point (docs/runfile.md, \"Tune files\"); --resume continues one. Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nExit codes: 0 done; 1 error or interrupted (resume with --resume FILE); 2 usage error;\n4 --fail-on-slo and no point met the SLO.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error { return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)} }
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var (
		tf   *runfile.TuneFile
		path string
		prof profile.Profile
		err  error
	)
	if *resume != "" {
		for _, f := range []string{"profile", "grid", "max-model-len", "max-num-seqs", "max-num-batched-tokens", "gpu-memory-utilization",
			"gpu-spec", "startup-seconds", "duration", "repeat-duration", "repeats", "start-rate", "max-steps", "precision", "growth",
			"blowup-fraction", "predict", "top-k", "margin", "slo", "scenario"} {
			if set[f] {
				return usage("--%s cannot change a resumed tune (its file holds the grid and settings)", f)
			}
		}
		t, err := runfile.ReadTune(*resume)
		if err != nil {
			return usage("%w", err)
		}
		tf, path = &t, *resume
		if prof, err = profile.Load(tf.ProfileSource); err != nil {
			return usage("%w", err)
		}
		*sloPath, *scenarioPath = tf.Settings.SLOFile, tf.Settings.ScenarioFile
	} else {
		if prof, err = profile.Load(*profileName); err != nil {
			return usage("%w", err)
		}
		g := tune.DefaultGrid()
		if *gridPath != "" {
			if g, err = tune.LoadGrid(*gridPath); err != nil {
				return usage("%w", err)
			}
		}
		for _, l := range []struct {
			flag string
			val  string
			dst  *[]int
		}{{"max-model-len", *mml, &g.MaxModelLen}, {"max-num-seqs", *seqs, &g.MaxNumSeqs}, {"max-num-batched-tokens", *batched, &g.MaxNumBatchedTokens}} {
			if l.val == "" {
				continue
			}
			v, err := intList(l.val)
			if err != nil {
				return usage("--%s: %w", l.flag, err)
			}
			*l.dst = v
		}
		u := prof.EngineArgs.GPUMemoryUtilization
		if set["gpu-memory-utilization"] {
			u = *util
			g.GPUMemoryUtilization = nil
		}
		points, err := g.Points(u)
		if err != nil {
			return usage("%w", err)
		}
		switch {
		case *duration <= 0 || *repDur < 0:
			return usage("--duration must be > 0 and --repeat-duration >= 0")
		case *repeats < 0 || *maxSteps <= 0 || *topK <= 0:
			return usage("--repeats must be >= 0, --max-steps and --top-k > 0")
		case *margin < 0 || *blowup < 0 || *blowup > 1 || *precision <= 0:
			return usage("--margin must be >= 0, --blowup-fraction in [0, 1], --precision > 0")
		case prof.Engine == profile.EngineExternal:
			return usage("profile %s: engine external: the tuner starts its own workers (sim or vllm)", prof.Name)
		case prof.Engine != profile.EngineSim && (*gpuSpec != "" || set["startup-seconds"]):
			return usage("--gpu-spec and --startup-seconds apply to engine sim only")
		}
		if *repDur == 0 {
			*repDur = *duration
		}
		if *growth == 0 {
			*growth = 2
			if *predict {
				*growth = 1.2
			}
		}
		spec, err := slo.Load(*sloPath)
		if err != nil {
			return usage("%w", err)
		}
		// Absolute, so --resume from another directory finds them.
		for _, p := range []*string{sloPath, scenarioPath, gpuSpec} {
			if *p != "" {
				if a, err := filepath.Abs(*p); err == nil {
					*p = a
				}
			}
		}
		cfg := runfile.TuneConfig{
			ProbeDurationS: duration.Seconds(), RepeatDurationS: repDur.Seconds(), Repeats: *repeats, StartRate: *startRate,
			MaxSteps: *maxSteps, Growth: *growth, Precision: *precision, BlowupFraction: *blowup, StartupSeconds: *startupS,
			Predict: *predict, SLOFile: *sloPath, ScenarioFile: *scenarioPath,
		}
		if *predict {
			cfg.TopK, cfg.Margin = *topK, *margin
		}
		if *gpuSpec != "" {
			cfg.WorkerArgs = []string{"--gpu-spec", *gpuSpec}
		}
		tf = tune.NewFile(prof, points, cfg, runfile.NewSLORecord(spec))
		tf.ProfileSource = *profileName
	}

	spec, err := slo.Load(*sloPath)
	if err != nil {
		return usage("%w", err)
	}
	sc, err := bench.LoadScenario(*scenarioPath)
	if err != nil {
		return usage("%w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	bcfg := bench.Config{Scenario: sc, SLO: spec, Timeout: *timeout, Model: prof.ModelName()}
	if *apiKey != "" {
		bcfg.Header = http.Header{"Authorization": {"Bearer " + *apiKey}}
	}
	// Check the load once, as a probe at the first rate would run it.
	chk := bcfg
	chk.URL, chk.Rate, chk.Duration = "http://127.0.0.1:1", max(tf.Settings.StartRate, 1), time.Duration(tf.Settings.ProbeDurationS*float64(time.Second))
	chk.Ramp = min(chk.Duration/10, 30*time.Second)
	chk.Warmup = chk.Ramp
	if err := bench.CheckConfig(chk); err != nil {
		return usage("%w", err)
	}

	if path == "" {
		if path, err = runfile.NewTunePath(*tunesDir, time.Now().UTC()); err != nil {
			return err
		}
	}
	save := func() error { return runfile.WriteTune(path, tf) }
	if err := save(); err != nil {
		return err
	}
	info := stdout
	if *jsonOut {
		info = stderr
	}
	startup := 35 * time.Second // the modelled cold start of the default card (docs/results.md)
	if tf.Settings.StartupSeconds >= 0 {
		startup = time.Duration(tf.Settings.StartupSeconds * float64(time.Second))
	} else if prof.Sim.StartupSeconds != nil {
		startup = time.Duration(*prof.Sim.StartupSeconds * float64(time.Second))
	}
	t := tune.New(tune.Options{
		Profile: prof, Executable: exe, WorkerArgs: tf.Settings.WorkerArgs, StartupTimeout: *startupTO,
		Bench: bcfg, RunsDir: *runsDir, Progress: info,
		Predict: func(a runfile.EngineArgs) (tune.Prediction, error) { return predictPoint(prof, tf, spec, a) },
	}, tf, save, startup)
	fmt.Fprintf(info, "tune file: %s\n", path)
	if tf.Settings.Predict && tf.Prediction == nil {
		t0 := time.Now()
		if err := t.PredictAll(); err != nil {
			return err
		}
		fmt.Fprintf(info, "predicted %d points offline in %s: %d to measure live\n", len(tf.Points), time.Since(t0).Round(time.Millisecond), tf.Prediction.Selected)
	}
	n := t.Remaining()
	fmt.Fprintf(info, "estimate: %d points to measure live × ~%s each = ~%s (probes of %gs, up to %d per point, %d repeats of %gs)\n",
		n, t.PerPoint().Round(time.Second), (time.Duration(n) * t.PerPoint()).Round(time.Second),
		tf.Settings.ProbeDurationS, tf.Settings.MaxSteps, tf.Settings.Repeats, tf.Settings.RepeatDurationS)
	runErr := t.Run(ctx)
	if err := tune.WriteTable(info, tf); err != nil {
		return err
	}
	fmt.Fprintf(info, "tune file: %s\n", path)
	if runErr != nil {
		fmt.Fprintf(stderr, "resume with: llmlab tune --resume %s\n", path)
		return &exitError{code: exitFailure, err: runErr}
	}
	if *jsonOut {
		if err := writeTuneJSON(stdout, tf); err != nil {
			return err
		}
	}
	if *failOnSLO && tf.Best < 0 {
		return &exitError{code: exitSLOMissed, err: errors.New("no point met the SLO (--fail-on-slo)")}
	}
	return nil
}

// predictPoint runs the offline find-max for a point: the sim command
// line the worker would get, parsed by the sim's own flags, so the
// prediction models the same engine as the live worker.
func predictPoint(prof profile.Profile, tf *runfile.TuneFile, spec slo.Spec, a runfile.EngineArgs) (tune.Prediction, error) {
	p := prof
	p.EngineArgs.MaxModelLen, p.EngineArgs.MaxNumSeqs = a.MaxModelLen, a.MaxNumSeqs
	p.EngineArgs.MaxNumBatchedTokens, p.EngineArgs.GPUMemoryUtilization = a.MaxNumBatchedTokens, a.GPUMemoryUtilization
	args := append(p.SimArgs(tf.Settings.StartupSeconds), tf.Settings.WorkerArgs...)
	fs := flag.NewFlagSet("predict", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var ef engineFlags
	ef.register(fs)
	fs.Float64("startup-seconds", -1, "")
	if err := fs.Parse(args[1:]); err != nil {
		return tune.Prediction{}, err
	}
	cfg, err := ef.engineConfig()
	if err != nil {
		return tune.Prediction{}, err
	}
	d := time.Duration(tf.Settings.ProbeDurationS * float64(time.Second))
	ramp := min(d/10, 30*time.Second)
	opts := offline.Options{
		Engine: cfg, Rate: max(tf.Settings.StartRate, offlineMinRate), Duration: d, Ramp: ramp, Warmup: ramp,
		InputLen: spec.Workload.InputTokens, OutputLen: spec.Workload.OutputTokens, SLO: spec.SLO,
	}
	m, err := offline.FindMax(opts)
	var se *engine.StartupError
	if errors.As(err, &se) {
		return tune.Prediction{Starts: false}, nil
	}
	if err != nil {
		return tune.Prediction{}, err
	}
	return tune.Prediction{MaxRate: m.MaxRPSUnderSLO, E2EP95: m.E2EP95, Starts: true}, nil
}

const offlineMinRate = 0.01

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func writeTuneJSON(w io.Writer, tf *runfile.TuneFile) error {
	return writeAnyJSON(w, tf)
}
