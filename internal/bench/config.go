package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/slo"
)

// Config is one run. The zero values of the optional fields take the
// defaults documented on each.
type Config struct {
	// URL is the base URL of the gateway or worker (no /v1 suffix).
	URL string
	// Scenario is the request shape; Model, when set, overrides its model.
	Scenario Scenario
	// Model is the model name; empty means the scenario's, else the first
	// of GET /v1/models.
	Model string

	Rate       float64       // steady arrival rate, requests/s (open loop)
	Duration   time.Duration // sending time, ramp included; 0: the SLO file's measurement duration
	Ramp       time.Duration // linear ramp from 0 to Rate
	Warmup     time.Duration // excluded from steady-state figures, from the start
	Cooldown   time.Duration // excluded from steady-state figures, before the end
	Arrival    string        // constant (default), poisson, gamma
	Burstiness float64       // gamma shape; 0 means 1 (Poisson)
	Seed       uint64

	// Concurrency, when > 0, makes the run closed-loop: that many clients
	// each send their next request as soon as the previous one ends (as
	// `vllm bench serve --max-concurrency` with an infinite rate), their
	// first sends spread over Ramp. Rate, Arrival and Burstiness are then
	// unused, and latencies count from each request's actual send.
	Concurrency int
	// MaxConcurrency caps requests in flight; 0 means no cap. Requests
	// waiting for a slot still count their wait in every latency.
	MaxConcurrency int
	// Timeout abandons a request this long after its scheduled send time
	// (default 60 s); it is counted as a "timeout" error.
	Timeout time.Duration
	// SLO judges the run; a zero value means slo.Default().
	SLO slo.Spec
	// Profile is recorded in the run file and names it.
	Profile string

	// LagThreshold is the p99 send lag above which the generator is said to
	// fall behind (default 10 ms).
	LagThreshold time.Duration
	// MaxConns bounds the connections to the server (and so the requests
	// on the wire at once); 0 sizes the pool from the load: Concurrency in
	// a closed loop, MaxConcurrency when set, else peak rate × Timeout
	// (Little's law with the longest a request may take, so the pool never
	// runs dry before the requests would time out anyway), clamped to
	// [MinPool, MaxPool]. A generator without a bound dials until dialling
	// fails and blames the server.
	MaxConns int
	// MaxSendLag is how late a request may leave, after its scheduled
	// time, before the generator gives up on it (default 1 s): a request the
	// generator could not send in time (dispatch lag, no free connection)
	// is a generator error, not the server's, and makes the run invalid.
	MaxSendLag time.Duration
	// Progress, when non-nil, receives a live progress line every
	// ProgressInterval (default 1 s). Meant for a terminal.
	Progress         io.Writer
	ProgressInterval time.Duration
	// ProgressWidth, when > 0, is the terminal's width: the line is cut
	// to fit, since a wrapped line cannot be redrawn in place by "\r".
	ProgressWidth int
	// Header is added to every request (including the model look-up):
	// the place for credentials such as Authorization.
	Header http.Header
	// Client sends the requests; nil means a client on NewTransport(),
	// whose idle connections are closed when Run returns.
	Client *http.Client
	// Requests, when set, receives one row per request (--save-requests;
	// requests.go). The caller closes it after Run.
	Requests *RequestLog
}

// withDefaults fills the optional fields.
func (c Config) withDefaults() (Config, error) {
	if c.SLO.SLO.P95E2ESeconds == 0 {
		s, err := slo.Default()
		if err != nil {
			return c, err
		}
		c.SLO = s
	}
	if c.Duration == 0 {
		c.Duration = c.SLO.Measurement.Duration
	}
	if c.Arrival == "" {
		c.Arrival = arrival.Constant
	}
	if c.Burstiness == 0 {
		c.Burstiness = 1
	}
	if c.Arrival == arrival.Poisson {
		c.Burstiness = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.LagThreshold == 0 {
		c.LagThreshold = 10 * time.Millisecond
	}
	if c.MaxSendLag == 0 {
		c.MaxSendLag = time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = c.poolSize()
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	if c.URL == "" {
		c.URL = "http://127.0.0.1:8080"
	}
	c.URL = strings.TrimSuffix(strings.TrimSuffix(c.URL, "/"), "/v1")
	if c.Model == "" {
		c.Model = c.Scenario.Model
	}
	return c, nil
}

// Validate checks a configuration with defaults applied.
func (c Config) validate() error {
	if err := c.Scenario.Validate(); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	if c.Concurrency < 0 {
		return errors.New("concurrency must be >= 0")
	}
	if c.Concurrency > 0 && c.MaxConcurrency > 0 {
		return errors.New("concurrency (closed loop) and max concurrency (open loop) exclude each other")
	}
	if c.Concurrency == 0 {
		if err := c.scheduleSpec().Validate(); err != nil {
			return err
		}
	} else if c.Duration <= 0 || c.Ramp < 0 || c.Ramp > c.Duration {
		return fmt.Errorf("closed loop needs duration > 0 and ramp in [0, duration], got %v and %v", c.Duration, c.Ramp)
	}
	// A URL without a scheme or host would not fail here but on every
	// request, as a run of connection errors that looks like a dead server.
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url must be http://host[:port] or https://…, got %q", c.URL)
	}
	switch {
	case c.Warmup < 0 || c.Cooldown < 0:
		return errors.New("warmup and cooldown must be >= 0")
	case c.Warmup+c.Cooldown >= c.Duration:
		return fmt.Errorf("warmup (%v) + cooldown (%v) leave no steady window in duration %v", c.Warmup, c.Cooldown, c.Duration)
	case c.MaxConcurrency < 0:
		return errors.New("max concurrency must be >= 0")
	case c.Timeout < 0:
		return errors.New("timeout must be > 0")
	case c.LagThreshold < 0:
		return errors.New("lag threshold must be >= 0")
	case c.MaxConns < 0:
		return errors.New("max conns must be >= 0")
	case c.MaxSendLag < 0:
		return errors.New("max send lag must be >= 0")
	}
	// A steady window without a scheduled request measures nothing: the
	// run would end with "no request completed" as if the server had
	// failed. The schedule is only built when few requests are expected.
	spec, from, to := c.scheduleSpec(), c.Warmup, c.Duration-c.Cooldown
	if c.Concurrency == 0 && spec.CumRate(to)-spec.CumRate(from) < 2 {
		sched, err := arrival.Schedule(spec)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(sched, func(at time.Duration) bool { return at >= from && at < to }) {
			return fmt.Errorf("no request is scheduled in the steady window %v–%v at %v req/s: raise the rate or the duration", from, to, c.Rate)
		}
	}
	return nil
}

// Connection-pool bounds of the automatic size (Config.MaxConns = 0).
// MinPool covers bursts at low rates; MaxPool stays well inside a common
// open-file limit and the ephemeral port range, which an unbounded
// generator exhausts (issue 12: 13,589 dial errors at 12k req/s).
const (
	MinPool = 64
	MaxPool = 4096
)

// poolSize is the automatic connection bound: see Config.MaxConns.
func (c Config) poolSize() int {
	switch {
	case c.Concurrency > 0:
		return c.Concurrency
	case c.MaxConcurrency > 0:
		return c.MaxConcurrency
	}
	peak := c.Rate
	if c.Arrival != arrival.Constant {
		peak *= 2 // Poisson and gamma arrivals bunch up
	}
	n := math.Ceil(peak * c.Timeout.Seconds())
	return int(min(max(n, MinPool), MaxPool))
}

func (c Config) scheduleSpec() arrival.Spec {
	return arrival.Spec{Rate: c.Rate, Duration: c.Duration, Ramp: c.Ramp, Arrival: c.Arrival, Burstiness: c.Burstiness, Seed: c.Seed}
}

// CheckConfig applies the defaults and validates cfg without sending
// anything, so a command line can report usage errors before a run.
func CheckConfig(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	// Building the bodies reads the prompt files: a missing one is a
	// usage error, to be told before the model look-up or the run.
	if _, err := newBodyBuilder(cfg.Scenario, "model", cfg.Seed); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	return nil
}
