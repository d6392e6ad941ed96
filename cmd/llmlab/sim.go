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

// engineFlags are the flags `llmlab sim`, `sim run` and `sim plan` share:
// vLLM's names and defaults (what changes the modelled numbers), vLLM
// flags accepted without effect on the model (so a `vllm serve` line runs
// unchanged), plus llmlab's own model of the hardware.
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
	gpuSpec                string
	seed                   int64
	calibration            string
	logLevel               string
	dtype, quantization    string
	kvCacheDtype           string
	weightGiB              float64
	enforceEager           bool
	tensorParallel         int
	pipelineParallel       int
	positional             string // MODEL as `vllm serve MODEL` takes it
}

// acceptedVLLMFlags are `vllm serve` flags that take a value and change
// nothing llmlab models (tokenizer files, logging, download places, CPU
// swap space): accepted so that a vLLM command line runs unchanged.
var acceptedVLLMFlags = []string{
	"tokenizer", "tokenizer-mode", "tokenizer-revision", "revision", "code-revision", "download-dir",
	"load-format", "swap-space", "cpu-offload-gb", "uvicorn-log-level", "max-log-len", "chat-template",
	"response-role", "generation-config", "hf-token", "tool-call-parser", "reasoning-parser",
	"distributed-executor-backend", "config-format", "allowed-origins", "root-path",
}

// acceptedVLLMBoolFlags are `vllm serve` switches in the same position.
var acceptedVLLMBoolFlags = []string{
	"disable-log-requests", "enable-log-requests", "disable-log-stats", "trust-remote-code",
	"disable-frontend-multiprocessing", "enable-auto-tool-choice", "disable-fastapi-docs",
	"disable-uvicorn-access-log",
}

func (e *engineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.model, "model", defaultSimModel, "model: a Hugging Face name (selects a built-in spec when it names a known model; -AWQ/-GPTQ suffixes set --quantization) or a local directory or config.json file")
	fs.StringVar(&e.servedModelName, "served-model-name", "", "name clients use (default: --model)")
	fs.IntVar(&e.maxModelLen, "max-model-len", defaultMaxModelLen, "context length: prompt + output tokens (512 fits the default 4 GB card with the lab's 200+200 workload)")
	fs.Float64Var(&e.gpuUtil, "gpu-memory-utilization", 0.9, "fraction of GPU memory vLLM may use (must not exceed the free memory at start)")
	fs.IntVar(&e.maxNumSeqs, "max-num-seqs", 256, "most sequences running at once")
	fs.IntVar(&e.maxNumBatchedTokens, "max-num-batched-tokens", 2048, "token budget of one scheduler step")
	fs.BoolVar(&e.chunked, "enable-chunked-prefill", true, "split long prefills across steps (vLLM V1 default: on)")
	fs.BoolVar(&e.noChunked, "no-enable-chunked-prefill", false, "turn chunked prefill off")
	fs.BoolVar(&e.prefix, "enable-prefix-caching", true, "reuse the KV blocks of repeated prompt prefixes (vLLM V1 default: on)")
	fs.BoolVar(&e.noPrefix, "no-enable-prefix-caching", false, "turn prefix caching off")
	fs.IntVar(&e.blockSize, "block-size", 16, "KV cache block size, tokens")
	fs.StringVar(&e.dtype, "dtype", "auto", "weight/activation dtype: auto (the config's torch_dtype), half, float16, bfloat16, float, float32 (modelled: weight and activation bytes)")
	fs.StringVar(&e.quantization, "quantization", "", "awq, awq_marlin, gptq, gptq_marlin or fp8 (modelled: weight bytes); short -q")
	fs.StringVar(&e.quantization, "q", "", "short for --quantization")
	fs.StringVar(&e.kvCacheDtype, "kv-cache-dtype", "auto", "auto, fp8, fp8_e4m3 or fp8_e5m2 (modelled: KV bytes per token)")
	fs.BoolVar(&e.enforceEager, "enforce-eager", false, "no CUDA graphs (modelled: no graph pool at start-up; step time is not changed)")
	fs.IntVar(&e.tensorParallel, "tensor-parallel-size", 1, "GPUs to shard over; llmlab models one GPU and refuses > 1; short -tp")
	fs.IntVar(&e.tensorParallel, "tp", 1, "short for --tensor-parallel-size")
	fs.IntVar(&e.pipelineParallel, "pipeline-parallel-size", 1, "pipeline stages; llmlab models one GPU and refuses > 1")
	fs.Float64Var(&e.weightGiB, "weight-gib", 0, "override the modelled weight size, GiB (the figure vLLM logs as \"Model loading took X GiB\")")
	fs.StringVar(&e.gpu, "gpu", engine.DefaultGPU, "modelled GPU: "+strings.Join(engine.GPUNames(), ", "))
	fs.StringVar(&e.gpuSpec, "gpu-spec", "", "YAML file describing the GPU (name, memory_total_gib, memory_free_at_start_gib, bandwidth_gbs, fp16_tflops, optional terms); wins over --gpu")
	fs.StringVar(&e.modelSpec, "model-spec", "", "modelled architecture: "+strings.Join(engine.ModelNames(), ", ")+" (default: from the model, else "+engine.DefaultModelSpec+")")
	fs.Int64Var(&e.seed, "seed", 0, "random seed (sampled text; Poisson arrivals offline)")
	fs.StringVar(&e.calibration, "calibration", "", "YAML or JSON calibration (what 'llmlab sim calibrate' writes, or the linear a_s…d_s form)")
	fs.StringVar(&e.logLevel, "log-level", "info", "debug, info, warn or error")
	var ignored string
	for _, name := range acceptedVLLMFlags {
		fs.StringVar(&ignored, name, "", "vLLM flag, accepted; changes nothing llmlab models")
	}
	var ignoredBool bool
	for _, name := range acceptedVLLMBoolFlags {
		fs.BoolVar(&ignoredBool, name, false, "vLLM flag, accepted; changes nothing llmlab models")
	}
}

// engineConfig turns the flags into an engine configuration.
func (e *engineFlags) engineConfig() (engine.Config, error) {
	if e.tensorParallel != 1 || e.pipelineParallel != 1 {
		return engine.Config{}, fmt.Errorf("--tensor-parallel-size %d / --pipeline-parallel-size %d: llmlab sim models a single GPU; only 1 is supported",
			e.tensorParallel, e.pipelineParallel)
	}
	if e.positional != "" {
		e.model = e.positional
	}
	cfg := engine.Config{
		MaxModelLen: e.maxModelLen, GPUMemoryUtilization: e.gpuUtil, MaxNumSeqs: e.maxNumSeqs,
		MaxNumBatchedTokens: e.maxNumBatchedTokens, EnableChunkedPrefill: e.chunked && !e.noChunked,
		BlockSize: e.blockSize, EnforceEager: e.enforceEager,
	}
	// The GPU: a spec file, else a built-in card.
	cfg.GPU = e.gpu
	if cfg.GPU == "" {
		cfg.GPU = engine.DefaultGPU // a profile may leave sim.gpu empty
	}
	if e.gpuSpec != "" {
		g, err := engine.LoadGPUSpec(e.gpuSpec)
		if err != nil {
			return engine.Config{}, err
		}
		cfg.GPU, cfg.GPUSpec = g.Name, &g
	}
	// The model: a local config.json, else a built-in spec.
	var m engine.ModelSpec
	quant := e.quantization
	switch {
	case e.modelSpec != "":
		spec, err := engine.LookupModel(e.modelSpec)
		if err != nil {
			return engine.Config{}, err
		}
		m = spec
	case looksLikePath(e.model) && !isLocalPath(e.model):
		// vLLM would fail the same way: neither a directory nor a repository id.
		return engine.Config{}, fmt.Errorf("model %q: no such file or directory", e.model)
	case isLocalPath(e.model):
		spec, err := engine.LoadHFConfig(e.model)
		if err != nil {
			return engine.Config{}, err
		}
		m = spec
	default:
		name, q := modelSpecAndQuant(e.model)
		m, _ = engine.LookupModel(name)
		if quant == "" {
			quant = q
		}
	}
	custom := e.modelSpec == "" && isLocalPath(e.model)
	if quant != "" {
		if err := m.SetQuantization(quant); err != nil {
			return engine.Config{}, err
		}
		custom = true
	}
	switch strings.ToLower(e.dtype) {
	case "auto", "":
	case "half", "float16", "bfloat16":
		m.DtypeBytes, custom = 2, true
	case "float", "float32":
		if m.Quantization != "" {
			return engine.Config{}, fmt.Errorf("--dtype %s: %s kernels run float16 activations", e.dtype, m.Quantization)
		}
		m.DtypeBytes, custom = 4, true
	default:
		return engine.Config{}, fmt.Errorf("--dtype %q: want auto, half, float16, bfloat16, float or float32", e.dtype)
	}
	switch strings.ToLower(e.kvCacheDtype) {
	case "auto", "":
	case "fp8", "fp8_e4m3", "fp8_e5m2":
		m.KVDtypeBytes, custom = 1, true
	default:
		return engine.Config{}, fmt.Errorf("--kv-cache-dtype %q: want auto, fp8, fp8_e4m3 or fp8_e5m2", e.kvCacheDtype)
	}
	if e.weightGiB < 0 {
		return engine.Config{}, fmt.Errorf("--weight-gib must be >= 0, got %v", e.weightGiB)
	}
	if e.weightGiB > 0 {
		m.WeightBytesOverride, custom = int64(e.weightGiB*engine.GiB), true
	}
	cfg.ModelSpec = m.Name
	if custom {
		cfg.Model = &m
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

// isLocalPath reports whether model names a directory or file on disk, as
// vLLM checks before treating it as a Hugging Face repository.
func isLocalPath(model string) bool {
	_, err := os.Stat(model)
	return err == nil
}

// looksLikePath reports whether model is written as a filesystem path
// rather than a Hugging Face repository id.
func looksLikePath(model string) bool {
	return strings.HasPrefix(model, "/") || strings.HasPrefix(model, "./") ||
		strings.HasPrefix(model, "../") || strings.HasPrefix(model, "~")
}

// modelSpecAndQuant picks the model spec whose Hugging Face name matches
// model (case-insensitive, with or without "-Instruct" and a quantisation
// suffix), and the quantisation the suffix names; else the default spec:
// the name is then only a label, as with any model llmlab does not know.
func modelSpecAndQuant(model string) (spec, quant string) {
	norm := strings.ToLower(model)
	for suffix, q := range map[string]string{"-awq": "awq", "-gptq-int4": "gptq", "-gptq": "gptq", "-fp8": "fp8"} {
		if strings.HasSuffix(norm, suffix) {
			norm, quant = strings.TrimSuffix(norm, suffix), q
			break
		}
	}
	norm = strings.TrimSuffix(norm, "-instruct")
	for _, name := range engine.ModelNames() {
		m, _ := engine.LookupModel(name)
		if strings.TrimSuffix(strings.ToLower(m.HFName), "-instruct") == norm || strings.EqualFold(name, norm) {
			return name, quant
		}
	}
	return engine.DefaultModelSpec, ""
}

// modelSpecFor is modelSpecAndQuant's spec.
func modelSpecFor(model string) string {
	s, _ := modelSpecAndQuant(model)
	return s
}

// parseEngineArgs parses a `vllm serve`-style argument list: flags in
// vLLM's spelling (--max-model-len or --max_model_len, with a value after a
// space or '='), and at most one positional MODEL anywhere. An unknown flag
// is a usage error that names it.
func parseEngineArgs(fs *flag.FlagSet, ef *engineFlags, args []string) error {
	args = normaliseVLLMArgs(args)
	// Print our own one-line message for a bad flag, not the whole usage;
	// -h still prints the usage (once).
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			usage()
			return err
		}
		if err != nil {
			msg := err.Error()
			if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
				msg = fmt.Sprintf("unknown flag --%s: not a vLLM serve flag that llmlab sim models or accepts (see -h)", strings.TrimLeft(name, "-"))
			}
			return &exitError{code: 2, err: errors.New(msg)}
		}
		if fs.NArg() == 0 {
			return nil
		}
		if ef.positional != "" {
			return &exitError{code: 2, err: fmt.Errorf("unexpected arguments %q (only one MODEL may be given)", fs.Args())}
		}
		ef.positional = fs.Arg(0)
		args = fs.Args()[1:]
	}
}

// normaliseVLLMArgs turns vLLM's underscore spelling of long flags
// (--max_model_len) into the dashed one; values are left alone.
func normaliseVLLMArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if rest, ok := strings.CutPrefix(a, "--"); ok && rest != "" {
			name, val, hasVal := strings.Cut(rest, "=")
			name = strings.ReplaceAll(name, "_", "-")
			a = "--" + name
			if hasVal {
				a += "=" + val
			}
		}
		out[i] = a
	}
	return out
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
		case "calibrate":
			return runSimCalibrate(args[1:], stdout, stderr)
		case "serve":
			// `vllm serve MODEL …` with vllm replaced by `llmlab sim`.
			args = args[1:]
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
		fmt.Fprintln(stderr, "usage: llmlab sim [serve] [MODEL] [flags]\n"+
			"       llmlab sim run [flags]            (offline, virtual time; 'llmlab sim run -h')\n"+
			"       llmlab sim plan [MODEL] [flags]   (memory plan and modelled step times as JSON)\n"+
			"       llmlab sim calibrate MEASUREMENTS.yaml [flags]  (fit a card's terms; docs/calibration.md)\n\n"+
			"A simulated vLLM engine: the same flags, API, health and metrics as `vllm serve`; a\n"+
			"`vllm serve …` line runs with `vllm` replaced by `llmlab sim`. MODEL (or --model) is a\n"+
			"Hugging Face name or a local directory/config.json. Flags marked \"accepted\" are vLLM's\n"+
			"and change nothing llmlab models; any other unknown flag is an error (exit 2). Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, simExitCodes)
	}
	if err := parseEngineArgs(fs, &ef, args); err != nil {
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

// simStartupError prints an engine start-up failure as vLLM does (the
// exception line on stderr) and exits 1.
func simStartupError(stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, engine.ExceptionLine(err))
	return &exitError{code: 1}
}
