package gateway

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
	// client (in a stream: each flushed batch of events); 0 means no bound.
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

	// Security and connection limits (docs/security.md).
	APIKeys           []string // Bearer keys for /v1/* and /generate; none: open
	APIKeyFile        string   // more keys, one per line
	AdminToken        string   // Bearer token for /admin/* and /status details
	WorkerAPIKey      string   // Bearer key sent to the worker (its --api-key / VLLM_API_KEY)
	CORSOrigins       []string // browser origins allowed on /v1/* and /generate
	TLSCert           string
	TLSKey            string
	ReadHeaderTimeout time.Duration // headers of a request
	BodyReadTimeout   time.Duration // body of a request, after its headers
	IdleConnTimeout   time.Duration // keep-alive connection with no request
	WriteTimeout      time.Duration // a whole non-streamed answer
	MaxConns          int           // open client connections; 0: no cap
	HTTPServer        string        // "lean" (internal/http1) or "net/http"; TLS always net/http
	KeepLogs          bool          // keep a per-run log directory on exit
	LogMaxSizeMB      int           // worker log size before rotation
	LogMaxBackups     int           // rotated worker logs kept
	// WorkerHost and WorkerPort say where a managed worker listens; port 0
	// picks a free port at every start. A fixed port gives Prometheus a
	// scrape target for the worker's own metrics.
	WorkerHost string
	WorkerPort int
	// Pprof serves Go's profiling endpoints under /admin/debug/pprof/
	// (pprof.go); off by default.
	Pprof bool

	// Overload control (docs/admission.md).
	QueueMaxFrom        string        // tune file whose suggested_queue_max sets QueueMax
	SLOSeconds          float64       // end-to-end objective for admission and the ladder; 0: configs/slo.yaml
	DeadlineAdmission   bool          // refuse at arrival what is predicted to finish past the SLO
	AdmissionHeadroom   float64       // fraction of the SLO a prediction may use
	MaxRetryAfter       time.Duration // clamp of a 429's Retry-After
	AdmissionWindow     time.Duration // window of completions the predictions and the ladder read
	Degrade             bool          // the degradation ladder
	DegradeRestart      bool          // tiers 2–3 restart the worker (drained) instead of waiting for the next cold start
	DegradeMaxTier      int
	DegradeUpAfter      time.Duration
	DegradeDownAfter    time.Duration
	DegradeCooldown     time.Duration
	ClampMaxTokens      int           // tier 1's max_tokens
	DegradedMaxModelLen int           // tier 2's max_model_len
	BatchWindow         time.Duration // micro-batching window W (0: off)
	BatchMax            int           // ... or N requests, whichever first
	ControlInterval     time.Duration // tick of the ladder and the window's guardrail
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
		ReadHeaderTimeout:    10 * time.Second,
		BodyReadTimeout:      30 * time.Second,
		IdleConnTimeout:      120 * time.Second,
		WriteTimeout:         60 * time.Second,
		MaxConns:             1024,
		HTTPServer:           "lean",
		LogMaxSizeMB:         50,
		LogMaxBackups:        5,
		WorkerHost:           "127.0.0.1",
		MaxRetryAfter:        time.Minute,
		AdmissionHeadroom:    0.9,
		AdmissionWindow:      30 * time.Second,
		DegradeMaxTier:       4,
		DegradeUpAfter:       5 * time.Second,
		DegradeDownAfter:     30 * time.Second,
		DegradeCooldown:      10 * time.Second,
		ClampMaxTokens:       128,
		DegradedMaxModelLen:  448,
		BatchMax:             8,
		ControlInterval:      time.Second,
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
	case *bool:
		return strconv.FormatBool(*p)
	case *[]string:
		if len(*p) == 0 {
			return "none"
		}
		return strconv.Itoa(len(*p)) + " given"
	}
	return ""
}

// Type names the knob's kind of value for help text ("" for a switch).
func (k Knob) Type() string {
	switch k.ptr.(type) {
	case *string:
		return "string"
	case *int, *int64:
		return "int"
	case *time.Duration:
		return "duration"
	case *float64:
		return "float"
	case *[]string:
		return "list"
	}
	return ""
}

// IsBool reports whether the knob is a switch (--keep-logs).
func (k Knob) IsBool() bool { _, ok := k.ptr.(*bool); return ok }

// IsList reports whether the knob takes several values: a repeated flag,
// or values separated by commas in the environment or the profile.
func (k Knob) IsList() bool { _, ok := k.ptr.(*[]string); return ok }

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
		{"stream_write_timeout", "longest a single write of an answer (the stream events already received from the worker, flushed together, or a piece of a body) to a client may block; a client that stops reading for longer (in a stream: for 7/8 of it to all of it, as the deadline is renewed lazily) loses its request (error reason client_stalled), which frees its place and the worker's sequence (0: wait forever)", &s.StreamWriteTimeout},
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
		{"api_key", "key clients must send as 'Authorization: Bearer <key>' on /v1/* and /generate; repeat the flag (or separate with commas) for several keys (none: no key needed)", &s.APIKeys},
		{"api_key_file", "file with more API keys, one per line (# starts a comment)", &s.APIKeyFile},
		{"admin_token", "token for /admin/* and the worker details of /status, sent as 'Authorization: Bearer <token>' (empty: admin routes open only when listening on loopback)", &s.AdminToken},
		{"worker_api_key", "key the gateway sends its worker as 'Authorization: Bearer <key>' in place of the client's header: the worker's --api-key, which a managed worker also takes from VLLM_API_KEY (default: $VLLM_API_KEY; empty: the client's Authorization is passed on)", &s.WorkerAPIKey},
		{"cors_origin", "browser origin (scheme://host[:port]) allowed to call /v1/* and /generate cross-site; repeatable (none: no CORS preflight is answered)", &s.CORSOrigins},
		{"tls_cert", "TLS certificate file (PEM); with tls_key, serve HTTPS", &s.TLSCert},
		{"tls_key", "TLS private key file (PEM)", &s.TLSKey},
		{"read_header_timeout", "longest a client may take to send a request's headers", &s.ReadHeaderTimeout},
		{"body_read_timeout", "longest a client may take to send a request's body, after its headers; past it 408", &s.BodyReadTimeout},
		{"idle_conn_timeout", "keep-alive connections with no request for this long are closed", &s.IdleConnTimeout},
		{"write_timeout", "longest the writing of a whole non-streamed answer may take (streams are bounded per event by stream_write_timeout)", &s.WriteTimeout},
		{"http_server", "the plain-HTTP listener's server: lean (llmlab's HTTP/1.1 server, internal/http1: less CPU per request; it starts watching for a client that leaves once a request has run 1 ms) or net/http (Go's server, which watches every request's connection from its start); with TLS it is always net/http", &s.HTTPServer},
		{"max_conns", "most open client connections; a connection past it gets an immediate 503 and is closed (0: no cap)", &s.MaxConns},
		{"keep_logs", "keep the per-run worker log directory on exit (it is removed when log_dir is not given)", &s.KeepLogs},
		{"log_max_size_mb", "worker log size in MiB before it is rotated", &s.LogMaxSizeMB},
		{"log_max_backups", "rotated worker log files kept", &s.LogMaxBackups},
		{"pprof", "serve Go's profiling endpoints (CPU, heap, goroutines, trace) under /admin/debug/pprof/, guarded as the admin routes are", &s.Pprof},
		{"queue_max_from", "tune file (experiments/tunes/*.json) whose top-level suggested_queue_max sets queue_max (it wins over queue_max)", &s.QueueMaxFrom},
		{"slo_seconds", "end-to-end latency objective for admission and the ladder (0: p95_e2e_seconds of configs/slo.yaml)", &s.SLOSeconds},
		{"deadline_admission", "refuse at arrival (429, reason deadline) a request predicted, from the last completions, to finish after the SLO; a client's X-LLMLab-Deadline header is honoured either way", &s.DeadlineAdmission},
		{"admission_headroom", "fraction of the SLO (or the client's deadline) a predicted latency may use before deadline-aware admission refuses (the prediction is a central estimate, the SLO a p95)", &s.AdmissionHeadroom},
		{"max_retry_after", "largest Retry-After of a 429 (it is the queue's drain time at the measured completion rate)", &s.MaxRetryAfter},
		{"admission_window", "window of recent completions that the drain rate, the predictions and the ladder read", &s.AdmissionWindow},
		{"degrade", "turn the degradation ladder on (tiers 1 clamp max_tokens, 2 max_model_len, 3 max_num_seqs, 4 shed)", &s.Degrade},
		{"degrade_restart", "tiers 2-3 restart the worker at once, after draining it (otherwise their engine arguments apply at the next cold start)", &s.DegradeRestart},
		{"degrade_max_tier", "highest tier the ladder may reach (0-4)", &s.DegradeMaxTier},
		{"degrade_up_after", "pressure must last this long before the ladder steps up", &s.DegradeUpAfter},
		{"degrade_down_after", "calm must last this long before the ladder steps down", &s.DegradeDownAfter},
		{"degrade_cooldown", "least time between two tier changes", &s.DegradeCooldown},
		{"clamp_max_tokens", "tier 1: max_tokens above this is lowered to it", &s.ClampMaxTokens},
		{"degraded_max_model_len", "tier 2: the worker's max_model_len", &s.DegradedMaxModelLen},
		{"batch_window", "micro-batching window: hold admitted requests up to this long to send them together (0: off; 10ms-50ms to try)", &s.BatchWindow},
		{"batch_max", "micro-batching: release a batch once this many requests are in it", &s.BatchMax},
		{"control_interval", "tick of the degradation ladder and the batching window's guardrail", &s.ControlInterval},
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
		case *bool:
			*p, err = strconv.ParseBool(value)
		case *[]string:
			*p = splitList(value)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("unknown setting %q", key)
}

// splitList splits a comma-separated value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
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
		if v.Kind == yaml.SequenceNode {
			// A list knob (api_key, cors_origin) may be a YAML list.
			var items []string
			if err := v.Decode(&items); err != nil {
				return fmt.Errorf("profile gateway.%s: %w", k, err)
			}
			v = yaml.Node{Kind: yaml.ScalarNode, Value: strings.Join(items, ",")}
		}
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
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"read_header_timeout", s.ReadHeaderTimeout}, {"body_read_timeout", s.BodyReadTimeout}, {"idle_conn_timeout", s.IdleConnTimeout}, {"write_timeout", s.WriteTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0", d.k))
		}
	}
	if s.BatchWindow < 0 || s.BatchWindow > time.Second {
		errs = append(errs, fmt.Errorf("batch_window %s out of range [0, 1s]", s.BatchWindow))
	}
	if s.BatchMax < 1 {
		errs = append(errs, errors.New("batch_max must be >= 1"))
	}
	if s.DegradeMaxTier < 0 || s.DegradeMaxTier > 4 {
		errs = append(errs, fmt.Errorf("degrade_max_tier %d out of range [0, 4]", s.DegradeMaxTier))
	}
	if s.AdmissionHeadroom <= 0 || s.AdmissionHeadroom > 1 {
		errs = append(errs, fmt.Errorf("admission_headroom %v out of range (0, 1]", s.AdmissionHeadroom))
	}
	if s.SLOSeconds < 0 || s.ClampMaxTokens < 0 || s.DegradedMaxModelLen < 0 {
		errs = append(errs, errors.New("slo_seconds, clamp_max_tokens and degraded_max_model_len must be >= 0"))
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"max_retry_after", s.MaxRetryAfter}, {"admission_window", s.AdmissionWindow}, {"degrade_up_after", s.DegradeUpAfter},
		{"degrade_down_after", s.DegradeDownAfter}, {"degrade_cooldown", s.DegradeCooldown}, {"control_interval", s.ControlInterval}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0", d.k))
		}
	}
	if s.MaxConns < 0 {
		errs = append(errs, errors.New("max_conns must be >= 0 (0: no cap)"))
	}
	if s.LogMaxSizeMB <= 0 || s.LogMaxBackups < 0 {
		errs = append(errs, errors.New("log_max_size_mb must be > 0 and log_max_backups >= 0"))
	}
	if s.HTTPServer != "lean" && s.HTTPServer != "net/http" {
		errs = append(errs, fmt.Errorf("http_server %q: want lean or net/http", s.HTTPServer))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	for _, o := range s.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("cors_origin: %w", err))
		}
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
