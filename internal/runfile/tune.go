package runfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The tune file: the record of an `llmlab tune` grid search
// (docs/runfile.md, "Tune files"). The tuner rewrites it after every
// point, so it is also the state `--resume` continues from; the report and
// the admission work read it.

// KindTune is the kind of a tune file.
const KindTune = "tune"

// TuneSchemaVersion is the tune-file format version.
const TuneSchemaVersion = 1

// DefaultTunesDir is where tune files go unless told otherwise.
const DefaultTunesDir = "experiments/tunes"

// Point statuses.
const (
	PointPending     = "pending"      // not measured yet
	PointMeasured    = "measured"     // searched (and repeated) live
	PointOOM         = "oom"          // the worker would not start for lack of GPU memory
	PointStartFailed = "start_failed" // the worker would not start for another reason
	PointSkipped     = "skipped"      // not run: needs more memory than a point that ran out, or its row blew up
	PointNotSelected = "not_selected" // --predict ranked it out of the live shortlist
	PointFailed      = "failed"       // the live measurement itself failed (see error)
)

// TuneFile is an `llmlab tune` grid search.
type TuneFile struct {
	SchemaVersion int       `json:"schema_version"`
	Kind          string    `json:"kind"`
	ID            string    `json:"id"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// Done is set once every point has a final status.
	Done bool `json:"done"`

	Profile string `json:"profile"`
	// ProfileSource is what --profile named (an embedded name or a file),
	// for --resume.
	ProfileSource string `json:"profile_source"`
	// Engine is the base profile's engine: sim or vllm.
	Engine string `json:"engine"`
	Model  string `json:"model"`
	// GPU and Calibration describe the simulated card (engine sim).
	GPU         string      `json:"gpu"`
	Calibration string      `json:"calibration,omitempty"`
	BaseArgs    EngineArgs  `json:"base_engine_args"`
	SLO         SLORecord   `json:"slo"`
	Settings    TuneConfig  `json:"settings"`
	Environment Environment `json:"environment"`

	Points []TunePoint `json:"points"`

	// Best is the index in Points of the measured point with the highest
	// median max RPS (-1: none met the SLO).
	Best int `json:"best"`
	// SuggestedQueueMax is the queue depth observed at the best point's
	// max rate (its peak of requests in the engine, running + waiting,
	// median over its runs at that rate): the depth up to which the SLO
	// was shown to hold. 0 when no point met the SLO. Read by the
	// admission work (gateway queue_max).
	SuggestedQueueMax int `json:"suggested_queue_max"`

	// Prediction is the offline ranking (--predict); nil without it.
	Prediction *TunePrediction `json:"prediction,omitempty"`
	// LiveSeconds is the wall time spent measuring live so far.
	LiveSeconds float64 `json:"live_seconds"`
}

// EngineArgs are the engine arguments a grid point sets (vLLM's names).
type EngineArgs struct {
	MaxModelLen          int     `json:"max_model_len"`
	MaxNumSeqs           int     `json:"max_num_seqs"`
	MaxNumBatchedTokens  int     `json:"max_num_batched_tokens"`
	GPUMemoryUtilization float64 `json:"gpu_memory_utilization"`
}

// Label is the point's short name in tables and plots.
func (a EngineArgs) Label() string {
	return fmt.Sprintf("seqs=%d batched=%d len=%d util=%g", a.MaxNumSeqs, a.MaxNumBatchedTokens, a.MaxModelLen, a.GPUMemoryUtilization)
}

// NeedsAtLeast reports whether a needs at least the GPU memory b needs:
// the same context length and utilisation, and no fewer sequences or
// batched tokens (vLLM's profiling run, whose activation peak sets the
// KV budget, grows with both).
func (a EngineArgs) NeedsAtLeast(b EngineArgs) bool {
	return a.MaxModelLen == b.MaxModelLen && a.GPUMemoryUtilization == b.GPUMemoryUtilization &&
		a.MaxNumSeqs >= b.MaxNumSeqs && a.MaxNumBatchedTokens >= b.MaxNumBatchedTokens
}

// TuneConfig is how the tune ran.
type TuneConfig struct {
	ProbeDurationS  float64 `json:"probe_duration_s"`
	RepeatDurationS float64 `json:"repeat_duration_s"`
	Repeats         int     `json:"repeats"`
	StartRate       float64 `json:"start_rate"`
	MaxSteps        int     `json:"max_steps"`
	Growth          float64 `json:"growth"`
	Precision       float64 `json:"precision"`
	// BlowupFraction: a point whose max RPS is below this fraction of the
	// best so far in its row (same max_num_seqs), or that meets the SLO at
	// no rate, ends its row.
	BlowupFraction float64 `json:"blowup_fraction"`
	StartupSeconds float64 `json:"startup_seconds"` // -1: the profile's
	// SLOFile and ScenarioFile are the --slo and --scenario files (empty:
	// the embedded ones), reused by --resume.
	SLOFile      string `json:"slo_file,omitempty"`
	ScenarioFile string `json:"scenario_file,omitempty"`
	// WorkerArgs are appended to every worker's command line.
	WorkerArgs []string `json:"worker_args,omitempty"`
	Predict    bool     `json:"predict"`
	TopK       int      `json:"top_k,omitempty"`
	Margin     float64  `json:"margin,omitempty"`
}

// TunePoint is one configuration of the grid.
type TunePoint struct {
	Args   EngineArgs `json:"engine_args"`
	Status string     `json:"status"`
	// Reason explains a status other than measured: the worker's own error
	// line for oom/start_failed, the point that caused a skip.
	Reason string `json:"reason,omitempty"`

	Predicted *PointPrediction `json:"predicted,omitempty"`

	// The search at this point (internal/search).
	MaxRate  float64      `json:"max_rate"`
	FailRate float64      `json:"fail_rate"`
	Probes   []TuneProbe  `json:"probes,omitempty"`
	Repeats  []TuneRepeat `json:"repeats,omitempty"`
	// MaxRPS is the median sustained RPS over the runs at MaxRate (the
	// search's passing probe and the repeats); E2EP95 their median p95.
	MaxRPS float64 `json:"max_rps"`
	E2EP95 float64 `json:"e2e_p95_s"`
	// PeakInEngine is the median over those runs of the peak of requests
	// in the engine (running + waiting, sampled from its /metrics).
	PeakInEngine int `json:"peak_in_engine"`
	PeakWaiting  int `json:"peak_waiting"`
	// EndsRow is set when the point's latency blew up (no rate met the
	// SLO, or its max RPS fell below blowup_fraction of its row's best):
	// the rest of its row is skipped.
	EndsRow bool `json:"ends_row,omitempty"`
	// Error is why a live measurement failed (status failed).
	Error string `json:"error,omitempty"`
	// SearchRunFile is the find-max run file of this point's search.
	SearchRunFile string  `json:"search_run_file,omitempty"`
	StartupS      float64 `json:"startup_s,omitempty"`
	WallS         float64 `json:"wall_s"`
}

// TuneProbe is one probe of a point's search (or a repeat).
type TuneProbe struct {
	Rate         float64 `json:"rate"`
	Pass         bool    `json:"pass"`
	RPS          float64 `json:"rps"`
	E2EP95       float64 `json:"e2e_p95_s"`
	ErrorRate    float64 `json:"error_rate"`
	PeakInEngine int     `json:"peak_in_engine"`
	PeakWaiting  int     `json:"peak_waiting"`
}

// TuneRepeat is one confirmation run at a point's max rate.
type TuneRepeat struct {
	TuneProbe
	// RunFile is its run file; RequestsFile its per-request rows.
	RunFile      string `json:"run_file"`
	RequestsFile string `json:"requests_file,omitempty"`
}

// PointPrediction is the offline simulator's figure for a point.
type PointPrediction struct {
	MaxRate  float64 `json:"max_rate"`
	E2EP95   float64 `json:"e2e_p95_s"`
	Starts   bool    `json:"starts"`
	Selected bool    `json:"selected"`
}

// TunePrediction is the --predict summary.
type TunePrediction struct {
	// Best is the index of the predicted best point (-1: none).
	Best int `json:"best"`
	// Selected counts the points measured live.
	Selected int `json:"selected"`
	// SavedSeconds estimates the live time not spent on unselected points.
	SavedSeconds float64 `json:"saved_seconds"`
	// Agree is set, once done, when the live best is the predicted best.
	Agree bool `json:"agree"`
	// Tied counts the points predicted at exactly the best's max rate
	// (ranked among themselves by predicted p95, then grid order): when
	// more than one, agreement among them is down to live noise.
	Tied int `json:"tied"`
}

// BestPoint returns the best point, if any.
func (t *TuneFile) BestPoint() (TunePoint, bool) {
	if t.Best < 0 || t.Best >= len(t.Points) {
		return TunePoint{}, false
	}
	return t.Points[t.Best], true
}

var tuneName = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})_tune(\d+)\.json$`)

// IsTuneName reports whether a file name is a tune file's.
func IsTuneName(name string) bool { return tuneName.MatchString(name) }

// NewTunePath returns a new, unused dir/YYYY-MM-DD_tuneXX.json (XX one more
// than the highest that day), reserving it by creating it empty; the tuner
// then writes it with WriteTune.
func NewTunePath(dir string, day time.Time) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create tunes dir: %w", err)
	}
	date := day.Format("2006-01-02")
	for range 100 {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", fmt.Errorf("list tune files: %w", err)
		}
		path := filepath.Join(dir, fmt.Sprintf("%s_tune%02d.json", date, nextNumber(entries, tuneName, date)))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create tune file: %w", err)
		}
		f.Close()
		return path, nil
	}
	return "", fmt.Errorf("no free tune number in %s", dir)
}

// WriteTune writes t to path atomically (a reader sees the old or the new
// file), setting its ID from the name.
func WriteTune(path string, t *TuneFile) error {
	t.ID = strings.TrimSuffix(filepath.Base(path), ".json")
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("encode tune file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write tune file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write tune file %s: %w", path, err)
	}
	return nil
}

// ReadTune reads a tune file.
func ReadTune(path string) (TuneFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return TuneFile{}, fmt.Errorf("read tune file: %w", err)
	}
	var t TuneFile
	if err := json.Unmarshal(b, &t); err != nil {
		return TuneFile{}, fmt.Errorf("decode tune file %s: %w", path, err)
	}
	if t.Kind != KindTune {
		return TuneFile{}, fmt.Errorf("%s is not a tune file (kind %q)", path, t.Kind)
	}
	if t.SchemaVersion > TuneSchemaVersion {
		return TuneFile{}, fmt.Errorf("tune file %s: schema version %d is newer than this llmlab (%d)", path, t.SchemaVersion, TuneSchemaVersion)
	}
	return t, nil
}
