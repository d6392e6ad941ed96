package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/sim/server"
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
	prefix, noPrefix       bool
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
	fs.BoolVar(&e.prefix, "enable-prefix-caching", true, "reuse the KV blocks of repeated prompt prefixes (vLLM V1 default: on)")
	fs.BoolVar(&e.noPrefix, "no-enable-prefix-caching", false, "turn prefix caching off")
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
	cfg.EnablePrefixCaching = e.prefix && !e.noPrefix
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
	var apiKeys []string
	fs.Func("api-key", "require \"Authorization: Bearer KEY\" on /v1/* as vllm serve --api-key does (repeatable; default $VLLM_API_KEY)", func(v string) error { apiKeys = append(apiKeys, v); return nil })
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
	if k := os.Getenv("VLLM_API_KEY"); len(apiKeys) == 0 && k != "" {
		apiKeys = []string{k}
	}
	err = server.Run(ctx, server.Config{
		Engine: cfg, Host: *host, Port: *port, Model: ef.model, ServedModelName: ef.servedModelName,
		StartupSeconds: *startup, Seed: ef.seed, Logger: log, Stderr: stderr, APIKeys: apiKeys,
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
