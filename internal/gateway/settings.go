package gateway

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Settings are the control plane's knobs. They come from, in rising
// precedence: Defaults, the profile's `gateway:` section, LLMLAB_*
// environment variables, and command-line flags. Every knob has one key
// (idle_timeout) that names it in all four places: LLMLAB_IDLE_TIMEOUT,
// --idle-timeout.
type Settings struct {
	Host             string
	Port             int
	IdleTimeout      time.Duration // 0 disables scale-to-zero
	StartupTimeout   time.Duration // worker start-up bound
	ColdStartTimeout time.Duration // how long a request may wait for a place and a READY worker
	QueueMax         int
	MaxInFlight      int // 0: the profile's max_num_seqs
	MaxBodyBytes     int64
	// StreamWriteTimeout bounds each write of a relayed answer to the
	// client; 0 means no bound.
	StreamWriteTimeout time.Duration
	ShutdownTimeout    time.Duration // grace for in-flight requests on SIGTERM
	DrainTimeout       time.Duration // grace for in-flight requests before a worker stop
	StopGrace          time.Duration // SIGTERM → SIGKILL for the worker
	RestartBackoff     time.Duration
	MaxRestartBackoff  time.Duration
	LogDir             string
	LogLevel           string
	// WorkerStartupSeconds overrides the simulated worker's modelled load
	// time (--startup-seconds); negative means the profile's or the sim's.
	WorkerStartupSeconds float64
	// WorkerHost and WorkerPort say where a managed worker listens; port 0
	// picks a free port at every start. A fixed port gives Prometheus a
	// scrape target for the worker's own metrics.
	WorkerHost string
	WorkerPort int
}

// Defaults are the settings when nothing else is given.
func Defaults() Settings {
	return Settings{
		Host:                 "127.0.0.1",
		Port:                 8080,
		IdleTimeout:          180 * time.Second,
		StartupTimeout:       5 * time.Minute,
		ColdStartTimeout:     3 * time.Minute,
		QueueMax:             256,
		MaxBodyBytes:         1 << 20,
		StreamWriteTimeout:   30 * time.Second,
		ShutdownTimeout:      30 * time.Second,
		DrainTimeout:         30 * time.Second,
		StopGrace:            10 * time.Second,
		RestartBackoff:       time.Second,
		MaxRestartBackoff:    30 * time.Second,
		LogLevel:             "info",
		WorkerStartupSeconds: -1,
		WorkerHost:           "127.0.0.1",
	}
}

// Knob describes one setting for flags, environment and help.
type Knob struct {
	Key   string // snake_case, as in the profile
	Usage string
	ptr   any
}

// Flag is the knob's command-line name.
func (k Knob) Flag() string { return strings.ReplaceAll(k.Key, "_", "-") }

// Env is the knob's environment variable.
func (k Knob) Env() string { return "LLMLAB_" + strings.ToUpper(k.Key) }

// Default renders the knob's current value, for help text.
func (k Knob) Default() string {
	switch p := k.ptr.(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return p.String()
	case *float64:
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	return ""
}

// Knobs lists the settings bound to s.
func (s *Settings) Knobs() []Knob {
	return []Knob{
		{"host", "address to listen on", &s.Host},
		{"port", "port to listen on (0: any free port)", &s.Port},
		{"idle_timeout", "stop the worker after this long with nothing queued or in flight (0: never)", &s.IdleTimeout},
		{"startup_timeout", "worker start-up limit before it counts as failed", &s.StartupTimeout},
		{"cold_start_timeout", "how long a request may be held for a place and a ready worker before 504", &s.ColdStartTimeout},
		{"queue_max", "most requests waiting for a place; beyond it 429", &s.QueueMax},
		{"max_in_flight", "most requests sent to the worker at once (0: the profile's max_num_seqs)", &s.MaxInFlight},
		{"max_body_bytes", "largest request body accepted; beyond it 413", &s.MaxBodyBytes},
		{"stream_write_timeout", "longest a single write of an answer (a stream event or a piece of a body) to a client may block; a client that stops reading for longer loses its request (error reason client_stalled), which frees its place and the worker's sequence (0: wait forever)", &s.StreamWriteTimeout},
		{"shutdown_timeout", "on SIGTERM, grace for in-flight requests", &s.ShutdownTimeout},
		{"drain_timeout", "before a worker stop, grace for in-flight requests", &s.DrainTimeout},
		{"stop_grace", "time between SIGTERM and SIGKILL for the worker", &s.StopGrace},
		{"restart_backoff", "first delay between restarts after repeated worker failures (doubles)", &s.RestartBackoff},
		{"max_restart_backoff", "cap of the restart back-off", &s.MaxRestartBackoff},
		{"log_dir", "directory for worker log files (default: a temporary directory)", &s.LogDir},
		{"log_level", "debug, info, warn or error", &s.LogLevel},
		{"worker_host", "address a managed worker (sim or vllm) listens on and is reached at", &s.WorkerHost},
		{"worker_port", "port of a managed worker, fixed so Prometheus can scrape its /metrics (0: a free port at every start)", &s.WorkerPort},
		{"worker_startup_seconds", "sim engine only: modelled worker load time, passed as --startup-seconds (negative: the profile's)", &s.WorkerStartupSeconds},
	}
}

// Set parses value into the knob named key. Durations accept Go syntax
// ("90s", "3m") or a bare number of seconds.
func (s *Settings) Set(key, value string) error {
	for _, k := range s.Knobs() {
		if k.Key != key {
			continue
		}
		var err error
		switch p := k.ptr.(type) {
		case *string:
			*p = value
		case *int:
			*p, err = strconv.Atoi(value)
		case *int64:
			*p, err = strconv.ParseInt(value, 10, 64)
		case *float64:
			*p, err = strconv.ParseFloat(value, 64)
			if err == nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				err = fmt.Errorf("want a finite number, got %q", value)
			}
		case *time.Duration:
			*p, err = parseDuration(value)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("unknown setting %q", key)
}

func parseDuration(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		// NaN, Inf and huge values would convert to an arbitrary duration
		// (and then fail validation with a misleading message).
		if math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64)/float64(time.Second) {
			return 0, fmt.Errorf("want a duration like 90s or a number of seconds, got %q", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration like 90s or a number of seconds, got %q", v)
	}
	return d, nil
}

// ApplyProfile applies a profile's `gateway:` mapping (keys as in Knobs).
// A zero node (no section) changes nothing.
func (s *Settings) ApplyProfile(n yaml.Node) error {
	if n.Kind == 0 {
		return nil
	}
	var m map[string]yaml.Node
	if err := n.Decode(&m); err != nil {
		return fmt.Errorf("profile gateway section: %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("profile gateway.%s: want a scalar value", k)
		}
		if err := s.Set(k, v.Value); err != nil {
			return fmt.Errorf("profile gateway.%w", err)
		}
	}
	return nil
}

// ApplyEnv applies every LLMLAB_<KEY> that getenv returns non-empty.
func (s *Settings) ApplyEnv(getenv func(string) string) error {
	for _, k := range s.Knobs() {
		if v := getenv(k.Env()); v != "" {
			if err := s.Set(k.Key, v); err != nil {
				return fmt.Errorf("%s: %w", k.Env(), err)
			}
		}
	}
	return nil
}

// Validate checks ranges.
func (s *Settings) Validate() error {
	var errs []error
	if s.Port < 0 || s.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", s.Port))
	}
	if s.WorkerPort < 0 || s.WorkerPort > 65535 {
		errs = append(errs, fmt.Errorf("worker_port %d out of range", s.WorkerPort))
	} else if s.WorkerPort != 0 && s.WorkerPort == s.Port && s.WorkerHost == s.Host {
		errs = append(errs, fmt.Errorf("worker_port %d is the gateway's own port", s.WorkerPort))
	}
	if s.WorkerHost == "" {
		errs = append(errs, errors.New("worker_host must not be empty"))
	}
	if s.QueueMax < 0 || s.MaxInFlight < 0 {
		errs = append(errs, errors.New("queue_max and max_in_flight must be >= 0"))
	}
	if s.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("max_body_bytes must be > 0"))
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"startup_timeout", s.StartupTimeout}, {"cold_start_timeout", s.ColdStartTimeout}, {"shutdown_timeout", s.ShutdownTimeout}, {"stop_grace", s.StopGrace}, {"drain_timeout", s.DrainTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0", d.k))
		}
	}
	if s.IdleTimeout < 0 {
		errs = append(errs, errors.New("idle_timeout must be >= 0"))
	}
	if s.StreamWriteTimeout < 0 {
		errs = append(errs, errors.New("stream_write_timeout must be >= 0"))
	}
	// The supervisor would silently replace a non-positive back-off with its
	// default; say so instead of ignoring what was asked.
	if s.RestartBackoff <= 0 || s.MaxRestartBackoff <= 0 {
		errs = append(errs, errors.New("restart_backoff and max_restart_backoff must be > 0"))
	} else if s.MaxRestartBackoff < s.RestartBackoff {
		errs = append(errs, fmt.Errorf("max_restart_backoff %s is below restart_backoff %s", s.MaxRestartBackoff, s.RestartBackoff))
	}
	return errors.Join(errs...)
}
