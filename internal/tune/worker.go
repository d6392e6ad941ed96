package tune

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/llmlab/llmlab/internal/profile"
)

// WorkerCommand returns the worker argv for the profile, as `llmlab serve`
// starts it (internal/gateway's workerCommand: the real `vllm serve` for
// engine vllm, `llmlab sim` with the same vLLM flags for engine sim), plus
// extra arguments. startupSeconds >= 0 overrides the sim's modelled load
// time.
func WorkerCommand(p profile.Profile, exe string, startupSeconds float64, extra []string) (func(host string, port int) []string, error) {
	var args []string
	switch p.Engine {
	case profile.EngineVLLM:
		args = p.VLLMArgs()
	case profile.EngineSim:
		if exe == "" {
			return nil, errors.New("engine sim needs the llmlab executable")
		}
		args = SimArgs(p, startupSeconds)
		args = append([]string{exe}, args...)
	default:
		return nil, fmt.Errorf("profile %s: engine %q: the tuner starts its own workers (sim or vllm)", p.Name, p.Engine)
	}
	args = append(args, extra...)
	return func(host string, port int) []string {
		return append(append([]string(nil), args...), "--host", host, "--port", strconv.Itoa(port))
	}, nil
}

// SimArgs is `llmlab sim …` for the profile (without the executable, host
// and port): the command line the offline predictor parses too, so the
// prediction and the live worker model the same engine.
func SimArgs(p profile.Profile, startupSeconds float64) []string {
	args := []string{"sim", "--model", p.Model, "--served-model-name", p.ModelName()}
	args = append(args, p.EngineFlags()...)
	args = append(args, "--gpu", p.Sim.GPU, "--model-spec", p.Sim.ModelSpec)
	switch {
	case startupSeconds >= 0:
		args = append(args, "--startup-seconds", strconv.FormatFloat(startupSeconds, 'f', -1, 64))
	case p.Sim.StartupSeconds != nil:
		args = append(args, "--startup-seconds", strconv.FormatFloat(*p.Sim.StartupSeconds, 'f', -1, 64))
	}
	if p.Sim.Seed != nil {
		args = append(args, "--seed", strconv.FormatInt(*p.Sim.Seed, 10))
	}
	if p.Sim.Calibration != "" {
		args = append(args, "--calibration", p.Sim.Calibration)
	}
	return args
}

// oomLine matches vLLM's start-up failures for lack of GPU memory, the
// worker's own words (the sim prints the same): vllm/v1/core/kv_cache_utils.py
// check_enough_kv_cache_memory ("No available memory for the cache blocks",
// "… is larger than the available KV cache memory"), vllm/v1/worker/gpu_worker.py
// (free memory at start "is less than desired GPU memory utilization"),
// and PyTorch's "CUDA out of memory" / OutOfMemoryError from the profiling
// run. A real worker is another process: its line is all the tuner has.
var oomLine = regexp.MustCompile(`(?i)no available memory for the cache blocks|larger than the available kv cache memory|less than desired gpu memory utilization|cuda out of memory|outofmemoryerror`)

// IsOOMLine reports whether a worker's error line says it ran out of GPU
// memory at start.
func IsOOMLine(line string) bool { return oomLine.MatchString(line) }
