package tune

import (
	"bytes"
	"fmt"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/runfile"
)

// Grid is the set of engine arguments to try: the cross product of its
// lists, max_num_seqs major and max_num_batched_tokens ascending, so that
// every row (one max_num_seqs) grows in memory and a point that runs out
// comes before the points needing more.
type Grid struct {
	MaxModelLen          []int     `yaml:"max_model_len"`
	MaxNumSeqs           []int     `yaml:"max_num_seqs"`
	MaxNumBatchedTokens  []int     `yaml:"max_num_batched_tokens"`
	GPUMemoryUtilization []float64 `yaml:"gpu_memory_utilization"`
}

// DefaultGrid is the plan's (M4): max_model_len 512, max_num_seqs {64, 128,
// 192, 256} × max_num_batched_tokens {4096, 8192, 12288, 16384}; the
// utilisation comes from the profile.
func DefaultGrid() Grid {
	return Grid{
		MaxModelLen:         []int{512},
		MaxNumSeqs:          []int{64, 128, 192, 256},
		MaxNumBatchedTokens: []int{4096, 8192, 12288, 16384},
	}
}

// LoadGrid reads a YAML grid file (keys as Grid's; unknown keys are an
// error; an omitted list keeps the default's).
func LoadGrid(path string) (Grid, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Grid{}, fmt.Errorf("read grid: %w", err)
	}
	var g Grid
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil {
		return Grid{}, fmt.Errorf("grid %s: %w", path, err)
	}
	d := DefaultGrid()
	if len(g.MaxModelLen) == 0 {
		g.MaxModelLen = d.MaxModelLen
	}
	if len(g.MaxNumSeqs) == 0 {
		g.MaxNumSeqs = d.MaxNumSeqs
	}
	if len(g.MaxNumBatchedTokens) == 0 {
		g.MaxNumBatchedTokens = d.MaxNumBatchedTokens
	}
	return g, nil
}

// Points expands the grid; util is used when the grid names none.
func (g Grid) Points(util float64) ([]runfile.EngineArgs, error) {
	utils := g.GPUMemoryUtilization
	if len(utils) == 0 {
		utils = []float64{util}
	}
	for _, l := range [][]int{g.MaxModelLen, g.MaxNumSeqs, g.MaxNumBatchedTokens} {
		for _, v := range l {
			if v <= 0 {
				return nil, fmt.Errorf("grid values must be > 0, got %d", v)
			}
		}
	}
	for _, u := range utils {
		if u <= 0 || u > 1 {
			return nil, fmt.Errorf("gpu_memory_utilization must be in (0, 1], got %v", u)
		}
	}
	sorted := func(s []int) []int { s = slices.Clone(s); slices.Sort(s); return slices.Compact(s) }
	var out []runfile.EngineArgs
	for _, u := range utils {
		for _, l := range sorted(g.MaxModelLen) {
			for _, s := range sorted(g.MaxNumSeqs) {
				for _, b := range sorted(g.MaxNumBatchedTokens) {
					out = append(out, runfile.EngineArgs{MaxModelLen: l, MaxNumSeqs: s, MaxNumBatchedTokens: b, GPUMemoryUtilization: u})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty grid")
	}
	return out, nil
}

// sameRow reports whether two points share a row: everything but
// max_num_batched_tokens.
func sameRow(a, b runfile.EngineArgs) bool {
	return a.MaxModelLen == b.MaxModelLen && a.MaxNumSeqs == b.MaxNumSeqs && a.GPUMemoryUtilization == b.GPUMemoryUtilization
}
