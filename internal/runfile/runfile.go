// Package runfile is the one record of a lab run: the JSON file that
// `llmlab bench` (live) and `llmlab sim run` (offline, virtual time) both
// write, and that the tuner and the report read. One schema for both means
// a live and an offline figure of the same name mean the same thing
// (docs/runfile.md defines every field).
//
// It holds the schema (this file), the shared figures' definitions
// (SustainedRPS), and the store: numbered names, atomic writes and reads
// (store.go).
package runfile

import (
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/llmlab/llmlab/internal/slo"
)

// SchemaVersion is the run-file format version; bump it when a field changes
// meaning or is removed (adding fields does not need a bump).
const SchemaVersion = 1

// Run-file kinds: which command wrote the file, and whether it is one run
// or a find-max search.
const (
	KindBench         = "bench"
	KindBenchFindMax  = "bench_find_max"
	KindSimRun        = "sim_run"
	KindSimRunFindMax = "sim_run_find_max"
	SourceLive        = "live"    // measured against a real server
	SourceOffline     = "offline" // simulated in virtual time
	// DefaultRunsDir is where run files go unless told otherwise.
	DefaultRunsDir = "experiments/runs"
)

// RunFile is the JSON record of a run or a find-max search
// (docs/runfile.md).
type RunFile struct {
	SchemaVersion int    `json:"schema_version"`
	Kind          string `json:"kind"`
	// Source is live (bench) or offline (sim run).
	Source      string      `json:"source"`
	ID          string      `json:"id"`
	CreatedAt   time.Time   `json:"created_at"`
	Profile     string      `json:"profile"`
	Config      Config      `json:"config"`
	Workload    Workload    `json:"workload"`
	SLO         SLORecord   `json:"slo"`
	Environment Environment `json:"environment"`
	// Sim is the simulated engine's configuration and memory plan; only
	// in offline run files.
	Sim *Sim `json:"sim,omitempty"`
	// Results is the run's figures; for find-max, those of the highest
	// rate that met the SLO (nil when none did).
	Results *Results `json:"results"`
	SLOMet  bool     `json:"slo_met"`
	FindMax *FindMax `json:"find_max,omitempty"`
}

// IsFindMax reports whether the file records a search.
func (rf *RunFile) IsFindMax() bool { return rf.FindMax != nil }

// AnyCompleted reports whether any request of the steady window completed
// in the run (in any step of a search). A run where none did measured
// nothing about the server: the commands exit non-zero for it.
func (rf *RunFile) AnyCompleted() bool {
	if rf.FindMax != nil {
		for _, s := range rf.FindMax.Steps {
			if s.Result.Completed > 0 {
				return true
			}
		}
		return false
	}
	return rf.Results != nil && rf.Results.Completed > 0
}

// Config is the load configuration as run (defaults applied).
type Config struct {
	URL      string  `json:"url"` // empty offline
	Model    string  `json:"model"`
	Endpoint string  `json:"endpoint"`
	Rate     float64 `json:"rate"` // 0 in a closed-loop run
	// Concurrency is the number of closed-loop clients (0: open loop).
	Concurrency    int     `json:"concurrency"`
	DurationS      float64 `json:"duration_s"`
	RampS          float64 `json:"ramp_s"`
	WarmupS        float64 `json:"warmup_s"`
	CooldownS      float64 `json:"cooldown_s"`
	Arrival        string  `json:"arrival"`
	Burstiness     float64 `json:"burstiness"`
	Seed           uint64  `json:"seed"`
	MaxConcurrency int     `json:"max_concurrency"`
	TimeoutS       float64 `json:"timeout_s"`
	LagThresholdS  float64 `json:"lag_threshold_s"`
	// MaxConns and MaxSendLagS: bench's connection pool and how late a
	// request may leave before it is a generator error (0 offline).
	MaxConns    int     `json:"max_conns,omitempty"`
	MaxSendLagS float64 `json:"max_send_lag_s,omitempty"`
}

// Workload is the shape of every request (a bench scenario).
type Workload struct {
	Name         string  `json:"name"`
	Endpoint     string  `json:"endpoint"`
	Model        string  `json:"model"`
	InputTokens  int     `json:"input_tokens"`
	OutputTokens int     `json:"output_tokens"`
	Prompt       string  `json:"prompt"`
	PromptFile   string  `json:"prompt_file,omitempty"`
	IgnoreEOS    bool    `json:"ignore_eos"`
	Temperature  float64 `json:"temperature"`
	Stream       bool    `json:"stream"`
}

// SLORecord is the SLO the run was judged by.
type SLORecord struct {
	P95E2ESeconds        float64 `json:"p95_e2e_seconds"`
	MaxErrorRate         float64 `json:"max_error_rate"`
	MeasurementDurationS float64 `json:"measurement_duration_s"`
}

// Sim is what an offline run simulated: the engine configuration (vLLM's
// flag names) and the start-up memory plan, plus figures only a simulator
// can see.
type Sim struct {
	GPU                  string  `json:"gpu"`
	ModelSpec            string  `json:"model_spec"`
	MaxModelLen          int     `json:"max_model_len"`
	GPUMemoryUtilization float64 `json:"gpu_memory_utilization"`
	MaxNumSeqs           int     `json:"max_num_seqs"`
	MaxNumBatchedTokens  int     `json:"max_num_batched_tokens"`
	EnableChunkedPrefill bool    `json:"enable_chunked_prefill"`
	BlockSize            int     `json:"block_size"`
	Calibrated           bool    `json:"calibrated"`

	KVTokens       int     `json:"kv_tokens"`
	KVBlocks       int     `json:"kv_blocks"`
	MaxConcurrency float64 `json:"max_concurrency"`
	StartupSeconds float64 `json:"startup_seconds"`
}

// Results is the "results" object of a run file. Latencies are seconds;
// steady-state figures cover the requests scheduled inside the steady
// window [warmup, duration − cooldown). docs/runfile.md defines each field;
// the fields marked offline are zero in a live run, those marked live
// zero offline.
type Results struct {
	Model string `json:"model"`

	Requests  int64            `json:"requests"`
	Completed int64            `json:"completed"`
	Failed    int64            `json:"failed"`
	ErrorRate float64          `json:"error_rate"`
	Errors    map[string]int64 `json:"errors"`

	RPS         float64 `json:"rps"`
	RPSOverall  float64 `json:"rps_overall"`
	GoodputRPS  float64 `json:"goodput_rps"`
	GoodputFrac float64 `json:"goodput_fraction"`

	ScheduledRate float64 `json:"scheduled_rate"`
	AchievedRate  float64 `json:"achieved_rate"`

	slo.Latencies

	SendLagP50  float64 `json:"send_lag_p50_s"`
	SendLagP95  float64 `json:"send_lag_p95_s"`
	SendLagP99  float64 `json:"send_lag_p99_s"`
	SendLagMax  float64 `json:"send_lag_max_s"`
	SendLagMean float64 `json:"send_lag_mean_s"`

	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	OutputTokensMean float64 `json:"output_tokens_mean"`
	OutputTokenRate  float64 `json:"output_throughput_tok_s"`

	SentTotal      int64            `json:"sent_total"`
	CompletedTotal int64            `json:"completed_total"`
	FailedTotal    int64            `json:"failed_total"`
	CanceledTotal  int64            `json:"canceled_total"`
	ErrorsTotal    map[string]int64 `json:"errors_total"`

	DurationS     float64 `json:"duration_s"`
	SteadyStartS  float64 `json:"steady_start_s"`
	SteadyEndS    float64 `json:"steady_end_s"`
	SteadyWindowS float64 `json:"steady_window_s"`
	WallS         float64 `json:"wall_s"`

	// Offline only: requests still unfinished when the drain cap ended
	// the simulation (counted at their age then), preemptions, peaks and
	// the simulated time.
	RequestsUnfinished int64   `json:"requests_unfinished,omitempty"`
	Preemptions        int64   `json:"preemptions,omitempty"`
	PeakRunning        int     `json:"peak_running,omitempty"`
	PeakWaiting        int     `json:"peak_waiting,omitempty"`
	PeakKVUsage        float64 `json:"peak_kv_usage,omitempty"`
	Steps              int64   `json:"steps,omitempty"`
	VirtualS           float64 `json:"virtual_s,omitempty"`

	// GeneratorErrors counts, by class, the steady window's requests the
	// generator failed to send (bench: generator_lag, generator_pool,
	// generator_dial); they are in neither requests nor error_rate.
	GeneratorErrors      map[string]int64 `json:"generator_errors"`
	GeneratorErrorsTotal map[string]int64 `json:"generator_errors_total"`
	// Invalid: the generator did not offer the scheduled load (it failed
	// to send requests of the steady window: GeneratorErrors), so the run
	// measures the generator, not the server; slo_met is then false and
	// InvalidReason says why.
	Invalid       bool   `json:"invalid"`
	InvalidReason string `json:"invalid_reason,omitempty"`

	SLOMet          bool     `json:"slo_met"`
	GeneratorBehind bool     `json:"generator_behind"`
	Interrupted     bool     `json:"interrupted"`
	Warnings        []string `json:"warnings"`
}

// SustainedRPS is the throughput of a steady cohort, the one definition of
// `rps` for live and offline runs: its successful requests end spaced by
// the rate the server kept up, whatever their latency, so (n−1) gaps over
// the span from the first end to the last. Counting the ends that fall
// inside the window instead would miss the cohort's last e2e worth of
// completions and read low on short runs. The span shrinks when latency
// falls during the run (the batch drains once arrivals stop), yet a cohort
// cannot be served faster than it arrived: the rate is capped at completed
// ÷ window. Times are seconds.
func SustainedRPS(completed int64, firstEnd, lastEnd, window float64) float64 {
	if window <= 0 {
		return 0
	}
	rps := float64(completed) / window
	if span := lastEnd - firstEnd; completed >= 2 && span > 0 {
		rps = min(rps, float64(completed-1)/span)
	}
	return rps
}

// FindMax is the record of a search for the highest rate meeting the SLO
// (internal/search).
type FindMax struct {
	// MaxRate is the highest scheduled rate that passed (0: none did).
	MaxRate float64 `json:"max_rate"`
	// MaxRPS is the sustained completed RPS measured at MaxRate.
	MaxRPS float64 `json:"max_rps"`
	// FailRate is the lowest rate that failed (0: none did, so MaxRate is
	// only a lower bound).
	FailRate      float64 `json:"fail_rate"`
	StepDurationS float64 `json:"step_duration_s"`
	MaxSteps      int     `json:"max_steps"`
	Steps         []Step  `json:"steps"`
	// GeneratorLimited is set when a failing step's generator fell behind:
	// the maximum may then say more about this machine than the server.
	GeneratorLimited bool `json:"generator_limited"`
}

// Step is one run of a search.
type Step struct {
	Step int     `json:"step"`
	Rate float64 `json:"rate"`
	// Pass is the step's slo_met; only passing steps can be the maximum.
	Pass   bool    `json:"pass"`
	Result Results `json:"result"`
}

// Best returns the passing step with the highest rate.
func (f *FindMax) Best() (Step, bool) {
	var b Step
	ok := false
	for _, s := range f.Steps {
		if s.Pass && (!ok || s.Rate > b.Rate) {
			b, ok = s, true
		}
	}
	return b, ok
}

// Environment says where the generator (or simulator) ran.
type Environment struct {
	Host       string `json:"host"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	Version    string `json:"llmlab_version"`
	Commit     string `json:"llmlab_commit,omitempty"`
	Modified   bool   `json:"llmlab_modified,omitempty"`
}

// CurrentEnvironment describes this process and machine; the version and
// commit come from the build information Go stamps into binaries.
func CurrentEnvironment() Environment {
	host, _ := os.Hostname()
	e := Environment{
		Host: host, OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), Version: "(devel)",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			e.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				e.Commit = s.Value
			case "vcs.modified":
				e.Modified = s.Value == "true"
			}
		}
	}
	return e
}

// NewSLORecord records spec.
func NewSLORecord(spec slo.Spec) SLORecord {
	return SLORecord{
		P95E2ESeconds: spec.SLO.P95E2ESeconds, MaxErrorRate: spec.SLO.MaxErrorRate,
		MeasurementDurationS: spec.Measurement.Duration.Seconds(),
	}
}
