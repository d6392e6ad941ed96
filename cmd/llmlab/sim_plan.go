package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/llmlab/llmlab/internal/sim/engine"
)

// planReport is what `llmlab sim plan` prints: the start-up memory plan and
// the step-time model, for documentation and for checking a configuration
// without starting anything.
type planReport struct {
	GPU       string `json:"gpu"`
	ModelSpec string `json:"model_spec"`
	// VLLMVersion is the vLLM source the memory algorithm follows.
	VLLMVersion string `json:"vllm_version"`
	// KVBytesPerToken is the model's KV cache size per token as modelled.
	KVBytesPerToken int64 `json:"kv_bytes_per_token"`
	// FrontendRequestSeconds is the API server's modelled cost per request (in TTFT).
	FrontendRequestSeconds float64            `json:"frontend_request_s"`
	Plan                   engine.Plan        `json:"plan"`
	Log                    []string           `json:"log"`
	Linear                 engine.Calibration `json:"step_linear"`
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
		fmt.Fprintln(stderr, "usage: llmlab sim plan [MODEL] [flags]\n\n"+
			"Prints the memory plan (vLLM's start-up algorithm, "+engine.VLLMVersion+") and modelled\n"+
			"step times of a configuration as JSON; a configuration vLLM would refuse prints vLLM's\n"+
			"error and exits 1. Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, simPlanExitCodes)
	}
	if err := parseEngineArgs(fs, &ef, args); err != nil {
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
	m, _ := cfg.ResolveModel()
	rep := planReport{
		GPU: cfg.GPU, ModelSpec: cfg.ModelSpec, VLLMVersion: engine.VLLMVersion,
		KVBytesPerToken: m.KVBytesPerToken(), FrontendRequestSeconds: sm.FrontendRequestSeconds(),
		Plan: plan, Log: plan.LogLines(cfg), Linear: sm.Linear(),
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
