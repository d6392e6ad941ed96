package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/sim/offline"
	"github.com/llmlab/llmlab/internal/sim/server"
	"github.com/llmlab/llmlab/internal/slo"
)

// defaultSimModel is what `vllm serve` would be given for the default model spec.
const defaultSimModel = "Qwen/Qwen2.5-0.5B-Instruct"

// defaultMaxModelLen is 512, not vLLM's default of the model's full 32,768.
// On the default 4 GB card the full context leaves KV cache for about one
// full-length sequence ("Maximum concurrency for 32,768 tokens per request:
// 1.10x") and fails outright with a larger token budget; the lab's workload
// is 200 in + 200 out tokens; and 512 is what configs/model_profiles use.
const defaultMaxModelLen = 512

// engineFlags are the flags `llmlab sim` and `llmlab sim run` share: vLLM's
// names and defaults, plus llmlab's own model of the hardware.
type engineFlags struct {
	model, servedModelName string
	maxModelLen            int
	gpuUtil                float64
	maxNumSeqs             int
	maxNumBatchedTokens    int
	chunked, noChunked     bool
	blockSize              int
	gpu, modelSpec         string
	seed                   int64
	calibration            string
	logLevel               string
}

func (e *engineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.model, "model", defaultSimModel, "model name (as for vllm serve; selects --model-spec when it names a known model)")
	fs.StringVar(&e.servedModelName, "served-model-name", "", "name clients use (default: --model)")
	fs.IntVar(&e.maxModelLen, "max-model-len", defaultMaxModelLen, "context length: prompt + output tokens (512 fits the default 4 GB card with the lab's 200+200 workload)")
	fs.Float64Var(&e.gpuUtil, "gpu-memory-utilization", 0.9, "fraction of GPU memory vLLM may use")
	fs.IntVar(&e.maxNumSeqs, "max-num-seqs", 256, "most sequences running at once")
	fs.IntVar(&e.maxNumBatchedTokens, "max-num-batched-tokens", 2048, "token budget of one scheduler step")
	fs.BoolVar(&e.chunked, "enable-chunked-prefill", true, "split long prefills across steps (vLLM V1 default: on)")
	fs.BoolVar(&e.noChunked, "no-enable-chunked-prefill", false, "turn chunked prefill off")
	fs.IntVar(&e.blockSize, "block-size", 16, "KV cache block size, tokens")
	fs.StringVar(&e.gpu, "gpu", engine.DefaultGPU, "modelled GPU: "+strings.Join(engine.GPUNames(), ", "))
	fs.StringVar(&e.modelSpec, "model-spec", "", "modelled architecture: "+strings.Join(engine.ModelNames(), ", ")+" (default: from --model, else "+engine.DefaultModelSpec+")")
	fs.Int64Var(&e.seed, "seed", 0, "random seed (sampled text; Poisson arrivals offline)")
	fs.StringVar(&e.calibration, "calibration", "", "JSON or YAML file of measured step-time coefficients (a_s, b_s_per_prefill_token, c_s_per_decode_seq, d_s_per_context_token)")
	fs.StringVar(&e.logLevel, "log-level", "info", "debug, info, warn or error")
}

// engineConfig turns the flags into an engine configuration.
func (e *engineFlags) engineConfig() (engine.Config, error) {
	spec := e.modelSpec
	if spec == "" {
		spec = modelSpecFor(e.model)
	}
	gpu := e.gpu
	if gpu == "" {
		gpu = engine.DefaultGPU // a profile may leave sim.gpu empty
	}
	cfg := engine.Config{
		GPU: gpu, ModelSpec: spec, MaxModelLen: e.maxModelLen,
		GPUMemoryUtilization: e.gpuUtil, MaxNumSeqs: e.maxNumSeqs,
		MaxNumBatchedTokens: e.maxNumBatchedTokens, EnableChunkedPrefill: e.chunked && !e.noChunked,
		BlockSize: e.blockSize,
	}
	if e.calibration != "" {
		c, err := engine.LoadCalibration(e.calibration)
		if err != nil {
			return engine.Config{}, err
		}
		cfg.Calibration = c
	}
	return cfg, nil
}

// modelSpecFor picks the model spec whose Hugging Face name matches model
// (case-insensitive, with or without "-Instruct"), else the default: the
// name is then only a label, as with any model llmlab does not know.
func modelSpecFor(model string) string {
	norm := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), "-instruct") }
	for _, name := range engine.ModelNames() {
		m, _ := engine.LookupModel(name)
		if norm(m.HFName) == norm(model) || strings.EqualFold(name, model) {
			return name
		}
	}
	return engine.DefaultModelSpec
}

// runSim is `llmlab sim` (serve like `vllm serve`) and `llmlab sim run`
// (offline, virtual time).
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runSimOffline(args[1:], stdout, stderr)
		case "plan":
			return runSimPlan(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("llmlab sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 8000, "port to listen on")
	startup := fs.Float64("startup-seconds", -1, "modelled load time before the port opens (default: what vLLM takes for this model on this GPU; 0 allowed)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab sim [flags]\n       llmlab sim run [flags]    (offline, virtual time; 'llmlab sim run -h')\n"+
			"       llmlab sim plan [flags]   (memory plan and modelled step times as JSON)\n\n"+
			"A simulated vLLM engine: the same flags, API, health and metrics as `vllm serve`. Flags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := ef.engineConfig()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	log, err := observability.NewLogger(stderr, ef.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	err = server.Run(ctx, server.Config{
		Engine: cfg, Host: *host, Port: *port, Model: ef.model, ServedModelName: ef.servedModelName,
		StartupSeconds: *startup, Seed: ef.seed, Logger: log, Stderr: stderr,
	})
	if err != nil {
		// server.Run already printed vLLM's message for a start-up failure;
		// exit 1 like vLLM's engine-core failure does.
		return &exitError{code: 1, err: err}
	}
	return nil
}

// parseFlags parses args and turns usage errors into exit status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2} // the flag package has printed the error and usage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

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

// simStartupError prints an engine start-up failure as vLLM does (the
// exception line on stderr) and exits 1.
func simStartupError(stderr io.Writer, err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "Error: ") {
		msg = "ValueError: " + msg
	}
	fmt.Fprintln(stderr, msg)
	return &exitError{code: 1}
}

// planReport is what `llmlab sim plan` prints: the start-up memory plan and
// the step-time model, for documentation and for checking a configuration
// without starting anything.
type planReport struct {
	GPU       string             `json:"gpu"`
	ModelSpec string             `json:"model_spec"`
	Plan      engine.Plan        `json:"plan"`
	Log       []string           `json:"log"`
	Linear    engine.Calibration `json:"step_linear"`
	// DecodeStepSeconds is the modelled time of a pure decode step at each
	// batch size, every sequence with a 300-token context.
	DecodeStepSeconds map[string]float64 `json:"decode_step_s_ctx300"`
	// Prefill200Seconds is a step prefilling one 200-token prompt alone.
	Prefill200Seconds float64 `json:"prefill_200_step_s"`
}

// runSimPlan is `llmlab sim plan`: it profiles memory as start-up would and
// prints the plan and modelled step times, or vLLM's error (exit 1).
func runSimPlan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab sim plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ef engineFlags
	ef.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab sim plan [flags]\n\nPrints the memory plan and modelled step times of a configuration as JSON. Flags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := ef.engineConfig()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	plan, err := engine.NewPlan(cfg)
	if err != nil {
		return simStartupError(stderr, err)
	}
	sm, err := engine.NewStepModel(cfg)
	if err != nil {
		return fmt.Errorf("step model: %w", err)
	}
	rep := planReport{
		GPU: cfg.GPU, ModelSpec: cfg.ModelSpec, Plan: plan, Log: plan.LogLines(cfg), Linear: sm.Linear(),
		DecodeStepSeconds: map[string]float64{},
		Prefill200Seconds: sm.Seconds(200, 0, 200),
	}
	for _, b := range []int{1, 8, 32, 64, 128, 256} {
		rep.DecodeStepSeconds[strconv.Itoa(b)] = sm.Seconds(0, b, 300*b)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	return nil
}
