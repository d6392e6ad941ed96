// Package slo holds Milestone 0: the latency SLO, the standard workload and
// the measurement length every experiment is judged by.
package slo

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/configs"
)

// Objective is the service-level objective.
type Objective struct {
	P95E2ESeconds float64 `yaml:"p95_e2e_seconds" json:"p95_e2e_seconds"`
	MaxErrorRate  float64 `yaml:"max_error_rate" json:"max_error_rate"`
}

// Workload is the standard request shape.
type Workload struct {
	InputTokens  int     `yaml:"input_tokens" json:"input_tokens"`
	OutputTokens int     `yaml:"output_tokens" json:"output_tokens"`
	Temperature  float64 `yaml:"temperature" json:"temperature"`
}

// Measurement says how long a sustained-RPS run lasts.
type Measurement struct {
	Duration time.Duration `yaml:"duration" json:"duration_s"`
}

// Spec is the whole of configs/slo.yaml.
type Spec struct {
	SLO         Objective   `yaml:"slo" json:"slo"`
	Workload    Workload    `yaml:"workload" json:"workload"`
	Measurement Measurement `yaml:"measurement" json:"measurement"`
}

// Met reports whether a run with the given p95 end-to-end latency (seconds)
// and error rate (0..1) meets the objective.
func (o Objective) Met(p95E2ESeconds, errorRate float64) bool {
	return p95E2ESeconds <= o.P95E2ESeconds && errorRate <= o.MaxErrorRate
}

// Default returns the embedded configs/slo.yaml.
func Default() (Spec, error) {
	b, err := fs.ReadFile(configs.FS, "slo.yaml")
	if err != nil {
		return Spec{}, fmt.Errorf("read embedded slo.yaml: %w", err)
	}
	return Parse(b)
}

// Load reads an SLO file; an empty path means the embedded default.
func Load(path string) (Spec, error) {
	if path == "" {
		return Default()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("read SLO file: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse decodes and validates an SLO file. Unknown keys are an error so a
// typo cannot silently loosen the objective.
func Parse(b []byte) (Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("parse SLO: %w", err)
	}
	switch {
	case s.SLO.P95E2ESeconds <= 0:
		return Spec{}, fmt.Errorf("slo.p95_e2e_seconds must be > 0")
	case s.SLO.MaxErrorRate < 0 || s.SLO.MaxErrorRate >= 1:
		return Spec{}, fmt.Errorf("slo.max_error_rate must be in [0, 1)")
	case s.Workload.InputTokens <= 0 || s.Workload.OutputTokens <= 0:
		return Spec{}, fmt.Errorf("workload input_tokens and output_tokens must be > 0")
	case s.Measurement.Duration <= 0:
		return Spec{}, fmt.Errorf("measurement.duration must be > 0")
	}
	return s, nil
}
