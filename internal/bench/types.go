package bench

import "github.com/llmlab/llmlab/internal/runfile"

// The run file's types, under the names bench has always used: a run's
// figures are the run file's "results" object, one schema for live and
// offline runs (internal/runfile, docs/runfile.md).
type (
	Result        = runfile.Results
	RunFile       = runfile.RunFile
	FindMaxResult = runfile.FindMax
	FindMaxStep   = runfile.Step
)

// Run-file kinds written by bench.
const (
	KindRun     = runfile.KindBench
	KindFindMax = runfile.KindBenchFindMax
)
