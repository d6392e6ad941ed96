// Package profile loads model profiles: which engine serves which model with
// which engine arguments. Shipped profiles (throughput, aggressive, safe) are
// embedded; a path to a YAML file works as well.
package profile

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/configs"
)

// Engines a profile can name.
const (
	EngineSim      = "sim"
	EngineVLLM     = "vllm"
	EngineExternal = "external"
)

// DefaultName is the profile used when none is given.
const DefaultName = "throughput"

// EngineArgs are the engine flags, with vLLM's names.
type EngineArgs struct {
	MaxModelLen          int     `yaml:"max_model_len" json:"max_model_len"`
	GPUMemoryUtilization float64 `yaml:"gpu_memory_utilization" json:"gpu_memory_utilization"`
	MaxNumSeqs           int     `yaml:"max_num_seqs" json:"max_num_seqs"`
	MaxNumBatchedTokens  int     `yaml:"max_num_batched_tokens" json:"max_num_batched_tokens"`
	EnableChunkedPrefill bool    `yaml:"enable_chunked_prefill" json:"enable_chunked_prefill"`
	BlockSize            int     `yaml:"block_size" json:"block_size"`
}

// Sim says what the simulated engine models.
type Sim struct {
	GPU       string `yaml:"gpu" json:"gpu"`
	ModelSpec string `yaml:"model_spec" json:"model_spec"`
	// StartupSeconds overrides the modelled load time; nil means the
	// engine's default for the GPU and model.
	StartupSeconds *float64 `yaml:"startup_seconds,omitempty" json:"startup_seconds,omitempty"`
	Calibration    string   `yaml:"calibration,omitempty" json:"calibration,omitempty"`
	Seed           *int64   `yaml:"seed,omitempty" json:"seed,omitempty"`
}

// Profile is one file of configs/model_profiles.
type Profile struct {
	Name            string     `yaml:"name" json:"name"`
	Engine          string     `yaml:"engine" json:"engine"`
	Model           string     `yaml:"model" json:"model"`
	ServedModelName string     `yaml:"served_model_name" json:"served_model_name"`
	EngineArgs      EngineArgs `yaml:"engine_args" json:"engine_args"`
	Sim             Sim        `yaml:"sim" json:"sim"`
	// VLLMCommand documents the equivalent real command line.
	VLLMCommand string `yaml:"vllm_command" json:"vllm_command"`
	// URL is the worker's base URL for engine "external".
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Gateway holds control-plane settings; zero values mean the defaults
	// of `llmlab serve`.
	Gateway yaml.Node `yaml:"gateway,omitempty" json:"-"`
}

// ModelName is the name clients use: served_model_name, else model.
func (p Profile) ModelName() string {
	if p.ServedModelName != "" {
		return p.ServedModelName
	}
	return p.Model
}

// EngineFlags returns the engine arguments as vLLM command-line flags.
func (p Profile) EngineFlags() []string {
	a := p.EngineArgs
	f := []string{
		"--max-model-len", strconv.Itoa(a.MaxModelLen),
		"--gpu-memory-utilization", strconv.FormatFloat(a.GPUMemoryUtilization, 'f', -1, 64),
		"--max-num-seqs", strconv.Itoa(a.MaxNumSeqs),
		"--max-num-batched-tokens", strconv.Itoa(a.MaxNumBatchedTokens),
	}
	// Both vLLM (V1 turns chunked prefill on by default) and the sim take
	// the negated flag, so "off" must be said explicitly.
	if a.EnableChunkedPrefill {
		f = append(f, "--enable-chunked-prefill")
	} else {
		f = append(f, "--no-enable-chunked-prefill")
	}
	return append(f, "--block-size", strconv.Itoa(a.BlockSize))
}

// VLLMArgs returns the argv of the equivalent `vllm serve` command.
func (p Profile) VLLMArgs() []string {
	args := []string{"vllm", "serve", p.Model}
	if p.ServedModelName != "" {
		args = append(args, "--served-model-name", p.ServedModelName)
	}
	return append(args, p.EngineFlags()...)
}

// SimArgs returns `llmlab sim …` for the profile, without the executable,
// host and port: the worker `llmlab serve` and `llmlab tune` start for
// engine sim, and the command line the offline predictor parses, so all
// three model the same engine. startupSeconds >= 0 overrides the profile's
// modelled load time.
func (p Profile) SimArgs(startupSeconds float64) []string {
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

// Names lists the embedded profiles.
func Names() []string {
	entries, err := fs.ReadDir(configs.FS, "model_profiles")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Load returns a profile by embedded name ("throughput") or by file path
// (anything containing a path separator or ending in .yaml/.yml). An empty
// name means DefaultName.
func Load(nameOrPath string) (Profile, error) {
	if nameOrPath == "" {
		nameOrPath = DefaultName
	}
	var (
		b   []byte
		err error
	)
	if strings.ContainsRune(nameOrPath, os.PathSeparator) || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		b, err = os.ReadFile(nameOrPath)
		if err != nil {
			return Profile{}, fmt.Errorf("read profile: %w", err)
		}
	} else {
		b, err = fs.ReadFile(configs.FS, "model_profiles/"+nameOrPath+".yaml")
		if err != nil {
			return Profile{}, fmt.Errorf("unknown profile %q (known: %s)", nameOrPath, strings.Join(Names(), ", "))
		}
	}
	p, err := Parse(b)
	if err != nil {
		return Profile{}, fmt.Errorf("profile %s: %w", nameOrPath, err)
	}
	return p, nil
}

// Parse decodes and validates a profile, filling vLLM's defaults for
// omitted engine arguments. Unknown keys are an error.
func Parse(b []byte) (Profile, error) {
	p := Profile{
		Engine: EngineSim,
		EngineArgs: EngineArgs{
			MaxModelLen:          512,
			GPUMemoryUtilization: 0.9,
			MaxNumSeqs:           256,
			MaxNumBatchedTokens:  2048,
			EnableChunkedPrefill: true,
			BlockSize:            16,
		},
		Sim: Sim{GPU: "rtx3050-4gb-laptop", ModelSpec: "qwen2.5-0.5b"},
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("parse: %w", err)
	}
	return p, p.Validate()
}

// Validate checks that the profile can be served.
func (p Profile) Validate() error {
	a := p.EngineArgs
	switch {
	case p.Name == "":
		return fmt.Errorf("name is required")
	case p.Engine != EngineSim && p.Engine != EngineVLLM && p.Engine != EngineExternal:
		return fmt.Errorf("engine %q: want %s, %s or %s", p.Engine, EngineSim, EngineVLLM, EngineExternal)
	case p.Engine == EngineExternal && p.URL == "":
		return fmt.Errorf("engine external needs url")
	case p.Model == "":
		return fmt.Errorf("model is required")
	case a.MaxModelLen <= 0 || a.MaxNumSeqs <= 0 || a.MaxNumBatchedTokens <= 0 || a.BlockSize <= 0:
		return fmt.Errorf("engine_args: max_model_len, max_num_seqs, max_num_batched_tokens and block_size must be > 0")
	case a.GPUMemoryUtilization <= 0 || a.GPUMemoryUtilization > 1:
		return fmt.Errorf("engine_args.gpu_memory_utilization must be in (0, 1]")
	case !a.EnableChunkedPrefill && a.MaxNumBatchedTokens < a.MaxModelLen:
		// vLLM refuses this too: without chunking a whole prompt must fit one step.
		return fmt.Errorf("engine_args: max_num_batched_tokens (%d) is smaller than max_model_len (%d) without chunked prefill", a.MaxNumBatchedTokens, a.MaxModelLen)
	}
	return nil
}
