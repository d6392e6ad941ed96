// Package supervisor owns the worker's lifecycle: a state machine
//
//	STOPPED → STARTING → READY → DRAINING → STOPPED, and FAILED (with back-off)
//
// that starts the inference worker on demand, declares it READY only when its
// /health answers 200, notices its exit at once, and stops it after an idle
// period. Callers never inspect the state and then act on it: EnsureReady
// decides inside the state machine whether a start is needed, in the manner
// of llama-swap's process.EnsureReady.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// State is the worker's lifecycle state.
type State int

// The states of the worker.
const (
	Stopped State = iota
	Starting
	Ready
	Draining
	Failed
)

var stateNames = [...]string{"STOPPED", "STARTING", "READY", "DRAINING", "FAILED"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// StateNames lists every state's name, for metrics.
func StateNames() []string { return stateNames[:] }

// ErrClosed is returned by EnsureReady once Close has begun.
var ErrClosed = errors.New("supervisor is shutting down")

// UnavailableError is returned by EnsureReady when the worker failed and may
// not be restarted yet (back-off), or failed while the caller waited.
type UnavailableError struct {
	Err        error         // the worker's failure, usually a *WorkerError
	RetryAfter time.Duration // when a new start may be attempted (0: now)
}

func (e *UnavailableError) Error() string { return "worker unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Config says how to run the worker and when to start and stop it.
type Config struct {
	// Command returns the worker's argv for a port chosen by the supervisor.
	// Nil means an external worker at URL that is never started or stopped.
	Command func(host string, port int) []string
	// URL is the base URL of an external worker (Command == nil).
	URL string
	// Host the worker binds to and is reached at (default 127.0.0.1).
	Host string
	// Env is appended to the supervisor's environment for the worker.
	Env []string
	// LogDir receives worker.log, the output of every worker process
	// (default: a new temporary directory, removed by Close unless
	// KeepLogs). See logs.go.
	LogDir        string
	KeepLogs      bool
	LogMaxSizeMB  int // size before rotation (default 50)
	LogMaxBackups int // rotated files kept
	// StartupTimeout bounds STARTING (default 5m).
	StartupTimeout time.Duration
	// IdleTimeout stops a READY worker that had nothing queued or in flight
	// for this long; 0 disables idle stop.
	IdleTimeout time.Duration
	// DrainTimeout bounds how long a stop waits for in-flight requests
	// before it signals the worker (default 30s).
	DrainTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL (default 10s).
	StopGrace time.Duration
	// RestartBackoff and MaxRestartBackoff shape the delay before a start
	// after consecutive failures: the first retry is immediate, then
	// RestartBackoff doubling up to MaxRestartBackoff (defaults 1s, 30s).
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// HealthInterval is the /health poll period while STARTING (default
	// 15ms, so a cold start gains well under 100 ms).
	HealthInterval time.Duration
	Logger         *slog.Logger
	// Observer learns of every state transition (metrics, status page);
	// may be nil.
	Observer Observer
	// Port fixes the worker's port so a scrape target can name it; 0 picks
	// a free port at every start.
	Port int
}

func (c *Config) fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	def(&c.StartupTimeout, 5*time.Minute)
	def(&c.DrainTimeout, 30*time.Second)
	def(&c.StopGrace, 10*time.Second)
	def(&c.RestartBackoff, time.Second)
	def(&c.MaxRestartBackoff, 30*time.Second)
	def(&c.HealthInterval, 15*time.Millisecond)
	if c.LogMaxSizeMB <= 0 {
		c.LogMaxSizeMB = 50
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Lease is a caller's hold on a READY worker: while any lease is held the
// worker is not drained away. Release must be called exactly once (further
// calls are ignored).
type Lease struct {
	URL  string // worker base URL, e.g. http://127.0.0.1:41234
	once sync.Once
	s    *Supervisor
	w    *worker
}

// WorkerExited waits up to d (or until ctx is done) for the leased worker's
// process to exit, and reports whether it did; when it returns true the
// state machine has already recorded the exit, so a following EnsureReady
// starts a new worker. A gateway calls it when the worker refuses a
// connection, to tell a worker that just died (retry) from one that is
// alive but broken (report the error). For an external worker it returns
// false after d.
func (l *Lease) WorkerExited(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.w.reported:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// Release ends the lease.
func (l *Lease) Release() {
	l.once.Do(func() {
		s := l.s
		s.mu.Lock()
		s.leases--
		s.lastActive = time.Now()
		if s.state == Draining || s.closed {
			s.notifyLocked()
		}
		s.mu.Unlock()
	})
}

// Supervisor runs one worker. All fields below mu are guarded by it.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	health *http.Client
	logs   *workerLogs // nil for an external worker

	wg sync.WaitGroup // worker goroutines

	mu         sync.Mutex
	state      State
	since      time.Time
	changed    chan struct{} // closed and replaced on every change
	cur        *worker       // the process of STARTING, READY or DRAINING
	leases     int
	waiters    int
	lastActive time.Time
	lastErr    error
	failures   int // consecutive
	failSeq    int // bumped on every entry into FAILED
	retryAt    time.Time
	starts     int
	closed     bool
	coldStart  time.Duration
	coldAt     time.Time
	lastPID    int
	lastLog    string
	// startPending is an admin start asked for while DRAINING, done once
	// the old worker is STOPPED; a later stop cancels it.
	startPending bool
	recent       transitionRing
}

// New returns a supervisor in STOPPED. It starts nothing until EnsureReady
// or Start is called; Run drives the idle stop.
func New(cfg Config) (*Supervisor, error) {
	cfg.fill()
	if cfg.Command == nil && cfg.URL == "" {
		return nil, errors.New("supervisor: need a worker command or an external URL")
	}
	var logs *workerLogs
	if cfg.Command != nil {
		var err error
		if logs, err = openWorkerLogs(cfg); err != nil {
			return nil, err
		}
		cfg.Logger.Info("worker logs", "file", logs.path, "removed_on_exit", logs.owned && !logs.keep)
	}
	s := &Supervisor{
		logs:    logs,
		cfg:     cfg,
		log:     cfg.Logger,
		health:  &http.Client{Timeout: 2 * time.Second},
		state:   Stopped,
		since:   time.Now(),
		changed: make(chan struct{}),
	}
	s.lastActive = s.since
	return s, nil
}

// EnsureReady returns a lease on a READY worker. If the worker is STOPPED,
// or FAILED with its back-off elapsed, it starts it; then it blocks until
// the worker is READY (lease returned), the start fails (an
// *UnavailableError carrying the worker's own error line), or ctx is done
// (ctx's cause, wrapped). A worker in DRAINING is waited out and started
// again. In FAILED during back-off it returns at once with RetryAfter set.
// After Close it returns ErrClosed.
func (s *Supervisor) EnsureReady(ctx context.Context) (*Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiters++
	defer func() {
		s.waiters--
		s.lastActive = time.Now()
	}()
	// A failure that happens after we arrived is ours to report; one that
	// happened before only blocks us during its back-off.
	seq := s.failSeq
	for {
		if s.closed {
			return nil, ErrClosed
		}
		switch s.state {
		case Ready:
			s.leases++
			return &Lease{URL: s.cur.url, s: s, w: s.cur}, nil
		case Stopped:
			s.startLocked("request waiting")
			continue
		case Failed:
			if s.failSeq != seq {
				return nil, &UnavailableError{Err: s.lastErr, RetryAfter: max(0, time.Until(s.retryAt))}
			}
			if wait := time.Until(s.retryAt); wait > 0 {
				return nil, &UnavailableError{Err: s.lastErr, RetryAfter: wait}
			}
			s.startLocked("request waiting, retrying after failure")
			continue
		}
		// STARTING or DRAINING: wait for the next change.
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			return nil, fmt.Errorf("waiting for worker (%s): %w", s.state, context.Cause(ctx))
		}
	}
}

// Start begins a start if the worker is STOPPED or FAILED (ignoring the
// back-off: an operator asked), or once a DRAINING worker has stopped, and
// returns at once; it does not wait for READY.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	switch s.state {
	case Stopped, Failed:
		s.startLocked("admin start")
	case Draining:
		s.startPending = true
	}
	return nil
}

// startPendingLocked does the admin start asked for during a drain, now
// that the worker is STOPPED.
func (s *Supervisor) startPendingLocked() {
	if s.startPending && !s.closed && s.state == Stopped {
		s.startPending = false
		s.startLocked("admin start (asked while draining)")
	}
}

// Stop drains the worker (waits for leases up to DrainTimeout), stops its
// process group (SIGTERM, SIGKILL after StopGrace) and blocks until it is
// STOPPED, or ctx is done. A FAILED worker becomes STOPPED, clearing its
// back-off. New EnsureReady calls during the drain wait and then start a new
// worker.
func (s *Supervisor) Stop(ctx context.Context, cause string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(cause)
	return s.waitStoppedLocked(ctx)
}

// stopLocked begins a stop appropriate to the current state.
func (s *Supervisor) stopLocked(cause string) {
	s.startPending = false
	switch s.state {
	case Failed:
		s.failures = 0
		s.setStateLocked(Stopped, cause)
	case Starting:
		// Nobody is served yet: no drain, terminate now.
		s.cur.stopping = true
		if s.cur.cmd == nil {
			s.cur.abort()
			s.cur = nil
			s.setStateLocked(Stopped, cause)
			return
		}
		s.setStateLocked(Draining, cause+" (during start-up)")
		s.wg.Add(1)
		go s.terminate(s.cur)
	case Ready:
		s.cur.stopping = true
		s.setStateLocked(Draining, cause)
		s.wg.Add(1)
		go s.drain(s.cur)
	}
}

func (s *Supervisor) waitStoppedLocked(ctx context.Context) error {
	for s.state == Draining || (s.state == Starting && s.cur != nil && s.cur.stopping) {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			return fmt.Errorf("waiting for worker to stop: %w", context.Cause(ctx))
		}
	}
	return nil
}

// Run checks for idleness until ctx is done. It does not stop the worker on
// return; Close does.
func (s *Supervisor) Run(ctx context.Context) {
	idle := s.cfg.IdleTimeout
	if idle <= 0 || s.cfg.Command == nil {
		<-ctx.Done()
		return
	}
	// A tenth of the timeout keeps the overshoot small without busy polling.
	tick := min(max(idle/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.state == Ready && s.leases == 0 && s.waiters == 0 && !s.closed {
			if d := time.Since(s.lastActive); d >= idle {
				s.stopLocked(fmt.Sprintf("idle for %s (timeout %s)", d.Round(time.Millisecond), idle))
			}
		}
		s.mu.Unlock()
	}
}

// Close refuses new EnsureReady calls, stops the worker (draining leases up
// to ctx's deadline, then SIGKILL) and waits for the supervisor's goroutines.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.notifyLocked()
	s.stopLocked("shutdown")
	err := s.waitStoppedLocked(ctx)
	if err != nil && s.cur != nil {
		s.cur.kill()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.logs != nil {
		if lerr := s.logs.close(); lerr != nil {
			s.log.Warn("worker logs", "error", lerr)
		}
	}
	return err
}

// Status is a snapshot for /status.
type Status struct {
	State                string    `json:"state"`
	Since                time.Time `json:"since"`
	PID                  int       `json:"pid,omitempty"`
	URL                  string    `json:"url,omitempty"`
	LogFile              string    `json:"log_file,omitempty"`
	Leases               int       `json:"in_flight"`
	Waiting              int       `json:"waiting_for_ready"`
	Starts               int       `json:"starts"`
	ConsecutiveFailures  int       `json:"consecutive_failures"`
	LastError            string    `json:"last_error,omitempty"`
	RetryAt              time.Time `json:"retry_at,omitzero"`
	LastColdStartSeconds float64   `json:"last_cold_start_seconds,omitempty"`
	LastColdStartAt      time.Time `json:"last_cold_start_at,omitzero"`
	// MetricsURL is where the worker's own Prometheus metrics are served:
	// the running worker's, or with a fixed port the next one's.
	MetricsURL string `json:"metrics_url,omitempty"`
}

// Status returns the current state and bookkeeping.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		State: s.state.String(), Since: s.since, Leases: s.leases, Waiting: s.waiters,
		Starts: s.starts, ConsecutiveFailures: s.failures,
		LastColdStartSeconds: s.coldStart.Seconds(), LastColdStartAt: s.coldAt,
		PID: s.lastPID, LogFile: s.lastLog,
	}
	if s.cur != nil {
		st.URL = s.cur.url
		st.MetricsURL = s.cur.url + "/metrics"
	} else if s.cfg.Command != nil && s.cfg.Port != 0 {
		st.MetricsURL = "http://" + net.JoinHostPort(reachable(s.cfg.Host), strconv.Itoa(s.cfg.Port)) + "/metrics"
	}
	if s.state != Starting && s.state != Ready && s.state != Draining {
		st.PID = 0
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	if s.state == Failed {
		st.RetryAt = s.retryAt
	}
	return st
}

// State returns the current state (for tests and logs; do not act on it).
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *Supervisor) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// setStateLocked is the only place the state changes: one log line with the
// cause, metrics, and a wake-up for every waiter.
func (s *Supervisor) setStateLocked(to State, cause string, attrs ...any) {
	from := s.state
	s.state = to
	s.since = time.Now()
	args := append([]any{"from", from.String(), "to", to.String(), "cause", cause}, attrs...)
	lv := slog.LevelInfo
	if to == Failed {
		lv = slog.LevelError
	}
	s.log.Log(context.Background(), lv, "worker state", args...)
	s.recordLocked(from, to, cause)
	s.notifyLocked()
}

// backoff is the wait before the next start after n consecutive failures:
// the first retry is immediate (a one-off crash costs nothing), then it
// doubles so a crash loop cannot spin.
func (s *Supervisor) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := s.cfg.RestartBackoff
	for i := 2; i < n && d < s.cfg.MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxRestartBackoff)
}

// failLocked records a failure of w (the current worker) and enters FAILED.
func (s *Supervisor) failLocked(w *worker, err error, cause string) {
	if !w.readyAt.IsZero() && time.Since(w.readyAt) >= s.cfg.MaxRestartBackoff {
		// It served for a good while: this is a new incident, not a loop.
		s.failures = 0
	}
	s.failures++
	s.failSeq++
	s.lastErr = err
	s.retryAt = time.Now().Add(s.backoff(s.failures))
	s.cur = nil
	attrs := []any{"error", err.Error(), "consecutive_failures", s.failures, "retry_in", time.Until(s.retryAt).Round(time.Millisecond).String()}
	var we *WorkerError
	if errors.As(err, &we) && len(we.Tail) > 0 {
		attrs = append(attrs, "log_file", we.LogFile, "log_tail", we.Tail)
	}
	s.setStateLocked(Failed, cause, attrs...)
}
