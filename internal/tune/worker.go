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
		args = p.SimArgs(startupSeconds)
		args = append([]string{exe}, args...)
	default:
		return nil, fmt.Errorf("profile %s: engine %q: the tuner starts its own workers (sim or vllm)", p.Name, p.Engine)
	}
	args = append(args, extra...)
	return func(host string, port int) []string {
		return append(append([]string(nil), args...), "--host", host, "--port", strconv.Itoa(port))
	}, nil
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
