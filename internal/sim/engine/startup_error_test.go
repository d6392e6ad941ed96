package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// NewPlan's refusals are typed: callers use errors.As, not vLLM's wording.
func TestStartupErrorIsTyped(t *testing.T) {
	cfg := Config{GPU: DefaultGPU, ModelSpec: DefaultModelSpec, MaxModelLen: 512, GPUMemoryUtilization: 0.9,
		MaxNumSeqs: 256, MaxNumBatchedTokens: 2048, EnableChunkedPrefill: true, BlockSize: 16}
	bad := cfg
	bad.BlockSize = 7
	var se *StartupError
	if _, err := NewPlan(bad); !errors.As(err, &se) || se.Reason != ReasonConfig || IsOutOfMemory(err) {
		t.Errorf("invalid config: %v (%+v)", err, se)
	}
	oom := cfg
	oom.GPUMemoryUtilization = 0.05 // less than the weights
	_, err := NewPlan(oom)
	if !IsOutOfMemory(fmt.Errorf("wrapped: %w", err)) || !errors.As(err, &se) || !strings.HasPrefix(se.ExceptionLine(), "ValueError: ") {
		t.Errorf("tiny budget: %v", err)
	}
	if _, err := NewPlan(cfg); err != nil {
		t.Errorf("default config: %v", err)
	}
}
