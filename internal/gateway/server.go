// Package gateway is the OpenAI-compatible front of llmlab serve: it
// validates requests at the edge, admits them through a bounded queue and
// an in-flight limit, holds them while the supervisor brings the worker up,
// and proxies them to the worker, streaming event by event.
package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/http1"
	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/queue"
	"github.com/llmlab/llmlab/internal/sim/engine"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/llmlab/llmlab/internal/upstream"
	"github.com/llmlab/llmlab/internal/validate"
)

// Server is the gateway and the supervisor of its worker.
type Server struct {
	set     Settings
	prof    profile.Profile
	limits  validate.Limits // what the worker would refuse, from the profile
	log     *slog.Logger
	sup     *supervisor.Supervisor // the worker's lifecycle (admin, shutdown)
	backend Backend                // the request path's view of it
	disp    Admitter
	ctl     *control // overload policies
	metrics *observability.Metrics
	obs     *observatory // recent requests and the SLO, for /status and /
	// upstream is used through RoundTrip, not an http.Client: a proxy
	// passes redirects through rather than following them, and the
	// client's per-request header copier and URL clone are saved. It does
	// its I/O in the handler's goroutine (internal/upstream): net/http's
	// Transport's goroutine hand-offs dominated the gateway's CPU.
	upstream *upstream.Transport
	// workerAuth is the Authorization value sent to the worker in place
	// of the client's (worker_api_key); empty passes the client's on.
	workerAuth string
	// target is the worker URL last taken apart for upstream.Send.
	target  atomic.Pointer[workerTarget]
	started time.Time
	handler http.Handler
	// readers recycles the 32 KiB read buffers of relayed streams.
	readers sync.Pool
	// abort ends the requests still running when the shutdown grace has
	// passed, so each gets an explicit error before its connection closes.
	abort    context.Context
	abortNow context.CancelFunc
	// access holds keys, admin token and origins (auth.go).
	access *access
	// draining is set once shutdown begins: /ready answers 503.
	draining atomic.Bool
}

// Options are what New needs beyond settings and profile.
type Options struct {
	Logger *slog.Logger
	// Executable is the llmlab binary that runs `llmlab sim` workers
	// (normally os.Executable()).
	Executable string
	// SLO is the objective the status page and llmlab_slo_objective show
	// (nil: the embedded configs/slo.yaml).
	SLO *slo.Objective
}

// New builds a server; nothing is started until Run.
func New(set Settings, prof profile.Profile, opt Options) (*Server, error) {
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxInFlight := set.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = prof.EngineArgs.MaxNumSeqs
	}
	if err := checkProfile(prof); err != nil {
		return nil, err
	}
	if set.QueueMaxFrom != "" {
		n, err := admission.QueueMaxFromTune(set.QueueMaxFrom)
		if err != nil {
			return nil, err
		}
		log.Info("queue_max from tune file", "file", set.QueueMaxFrom, "queue_max", n, "was", set.QueueMax)
		set.QueueMax = n
	}
	acc, err := newAccess(set)
	if err != nil {
		return nil, err
	}
	if set.TLSCert != "" {
		// Fail at start, not on the first handshake.
		if _, err := tls.LoadX509KeyPair(set.TLSCert, set.TLSKey); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	m := observability.NewMetrics(supervisor.StateNames())
	// The worker's engine arguments are read at every start, so a
	// degradation tier's take effect at the next cold start.
	var next func() profile.EngineArgs
	var s *Server
	cmd, err := workerCommand(prof, set, opt.Executable, func() profile.EngineArgs { return next() })
	if err != nil {
		return nil, err
	}
	sup, err := supervisor.New(supervisor.Config{
		Command:           cmd,
		URL:               prof.URL,
		LogDir:            set.LogDir,
		KeepLogs:          set.KeepLogs,
		LogMaxSizeMB:      set.LogMaxSizeMB,
		LogMaxBackups:     set.LogMaxBackups,
		StartupTimeout:    set.StartupTimeout,
		IdleTimeout:       set.IdleTimeout,
		DrainTimeout:      set.DrainTimeout,
		StopGrace:         set.StopGrace,
		RestartBackoff:    set.RestartBackoff,
		MaxRestartBackoff: set.MaxRestartBackoff,
		Logger:            log.With("component", "supervisor"),
		Observer:          workerObserver{m},
		Host:              set.WorkerHost,
		Port:              set.WorkerPort,
	})
	if err != nil {
		return nil, err
	}
	s = &Server{
		set:     set,
		prof:    prof,
		log:     log,
		sup:     sup,
		metrics: m,
		access:  acc,
		started: time.Now(),
		disp: queue.NewDispatcher(queue.NewMemory(set.QueueMax), maxInFlight, func(depth, inFlight int) {
			m.QueueDepth.Set(float64(depth))
			m.InFlight.Set(float64(inFlight))
		}),
		upstream: upstream.New(upstream.Config{
			MaxIdlePerHost: maxInFlight + 16,
			DialTimeout:    5 * time.Second,
			KeepAlive:      30 * time.Second,
			// For what upstream does not send itself (a worker URL that is
			// not plain http).
			Fallback: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        maxInFlight + 16,
				MaxIdleConnsPerHost: maxInFlight + 16,
				IdleConnTimeout:     upstream.DefaultIdleTimeout,
				// Bodies pass through untouched; compression would only
				// cost CPU on loopback.
				DisableCompression: true,
			},
		}),
	}
	s.backend = sup
	if set.WorkerAPIKey != "" {
		s.workerAuth = "Bearer " + set.WorkerAPIKey
	}
	if s.obs, err = newObservatory(m, opt.SLO); err != nil {
		return nil, err
	}
	slo := time.Duration(s.obs.objective.P95E2ESeconds * float64(time.Second))
	if set.SLOSeconds > 0 {
		slo = time.Duration(set.SLOSeconds * float64(time.Second))
	}
	s.ctl = newControl(s, slo, maxInFlight)
	next = func() profile.EngineArgs {
		a := *s.ctl.next.Load()
		s.ctl.started(a)
		return a
	}
	m.QueueCapacity.Set(float64(s.disp.QueueCap()))
	m.InFlightCapacity.Set(float64(s.disp.MaxInFlight()))
	s.readers.New = func() any { return bufio.NewReaderSize(nil, 32<<10) }
	abort, cancelAbort := context.WithCancelCause(context.Background())
	s.abort, s.abortNow = abort, func() { cancelAbort(errShutdown) }
	s.limits = validationLimits(prof)
	s.handler = s.guard(s.routes())
	return s, nil
}

// checkProfile refuses at start a sim profile whose GPU or model spec the
// engine does not know; otherwise every worker start, on the first
// request, would fail the same way.
func checkProfile(p profile.Profile) error {
	if p.Engine != profile.EngineSim {
		return nil
	}
	if _, err := engine.LookupGPU(p.Sim.GPU); err != nil {
		return fmt.Errorf("profile %s: sim.gpu: %w", p.Name, err)
	}
	if _, err := engine.LookupModel(p.Sim.ModelSpec); err != nil {
		return fmt.Errorf("profile %s: sim.model_spec: %w", p.Name, err)
	}
	return nil
}

// workerCommand returns how to run the profile's worker, nil for external.
// engine returns the engine arguments of the next start.
func workerCommand(p profile.Profile, set Settings, exe string, engine func() profile.EngineArgs) (func(host string, port int) []string, error) {
	switch p.Engine {
	case profile.EngineExternal:
		return nil, nil
	case profile.EngineVLLM:
		return func(host string, port int) []string {
			q := p
			q.EngineArgs = engine()
			return append(q.VLLMArgs(), "--host", host, "--port", strconv.Itoa(port))
		}, nil
	case profile.EngineSim:
		if exe == "" {
			return nil, errors.New("engine sim needs the llmlab executable")
		}
		return func(host string, port int) []string {
			q := p
			q.EngineArgs = engine()
			argv := append([]string{exe}, q.SimArgs(set.WorkerStartupSeconds)...)
			return append(argv, "--host", host, "--port", strconv.Itoa(port))
		}, nil
	}
	return nil, fmt.Errorf("engine %q not supported", p.Engine)
}

// Handler is the gateway's HTTP handler (for tests and benchmarks). Close
// ends the requests in flight explicitly only where the serving
// http.Server's BaseContext is BaseContext (Run's is).
func (s *Server) Handler() http.Handler { return s.handler }

// BaseContext is the context every request's descends from: the end of the
// shutdown grace (or Close) cancels it with cause errShutdown, so handlers
// answer with an explicit error, at no per-request cost.
func (s *Server) BaseContext(net.Listener) context.Context { return s.abort }

// Supervisor exposes the worker's supervisor.
func (s *Server) Supervisor() *supervisor.Supervisor { return s.sup }

// Run serves on ln until ctx is done, then shuts down: it stops accepting,
// lets in-flight requests finish within ShutdownTimeout, stops the worker
// and returns nil on a clean shutdown.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	// No WriteTimeout: it counts from the request's arrival, so it would
	// cut requests held through a cold start; plain answers get their
	// deadline when they start (relayPlain), stream events each theirs
	// (streamDeadline). No ReadTimeout: headers and body have separate bounds
	// (ReadHeaderTimeout, and limitBody's, which answers 408).
	tlsOn := s.set.TLSCert != ""
	var srv server
	if tlsOn || s.set.HTTPServer == "net/http" {
		srv = &http.Server{
			Handler:           s.handler,
			ReadHeaderTimeout: s.set.ReadHeaderTimeout,
			IdleTimeout:       s.set.IdleConnTimeout,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			// Every request's context descends from abort, so the end of the
			// shutdown grace cancels them all with cause errShutdown, at no
			// per-request cost (no derived context, no AfterFunc).
			BaseContext: s.BaseContext,
		}
	} else {
		srv = &http1.Server{
			Handler:           s.handler,
			ReadHeaderTimeout: s.set.ReadHeaderTimeout,
			IdleTimeout:       s.set.IdleConnTimeout,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			BaseContext:       s.BaseContext,
			ErrorBody:         protocolErrorBody,
		}
	}
	ln = newConnLimiter(ln, s.set.MaxConns, !tlsOn, func() {
		s.metrics.Errors.WithLabelValues("too_many_connections", "503").Inc()
	})
	supCtx, stopSup := context.WithCancel(context.Background())
	supDone := make(chan struct{})
	go func() { s.sup.Run(supCtx); close(supDone) }()
	ctlDone := make(chan struct{})
	go func() { s.ctl.run(supCtx, s.set.ControlInterval); close(ctlDone) }()

	serveErr := make(chan error, 1)
	go func() {
		if tlsOn {
			serveErr <- srv.(*http.Server).ServeTLS(ln, s.set.TLSCert, s.set.TLSKey)
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	s.log.Info("gateway listening", "addr", ln.Addr().String(), "profile", s.prof.Name, "engine", s.prof.Engine,
		"model", s.prof.ModelName(), "max_in_flight", s.disp.MaxInFlight(), "queue_max", s.disp.QueueCap(),
		"idle_timeout", s.set.IdleTimeout.String(), "tls", tlsOn, "max_conns", s.set.MaxConns)
	s.logAccess()

	var runErr error
	select {
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		s.draining.Store(true)
		s.log.Info("shutting down: no new connections, finishing in-flight requests", "grace", s.set.ShutdownTimeout.String())
	}
	shCtx, cancel := context.WithTimeout(context.Background(), s.set.ShutdownTimeout)
	if err := srv.Shutdown(shCtx); err != nil {
		s.log.Warn("in-flight requests did not finish within the grace period; ending them with an error", "error", err)
		// Cancelling their upstream requests and waits makes each handler
		// write its error (503, or an error event and [DONE] mid-stream);
		// a moment later whatever is left is closed.
		s.abortNow()
		endCtx, endCancel := context.WithTimeout(context.Background(), time.Second)
		if err := srv.Shutdown(endCtx); err != nil {
			_ = srv.Close()
		}
		endCancel()
	}
	cancel()
	stopSup()
	<-supDone
	<-ctlDone
	// The worker gets its own grace: in-flight requests are done by now.
	stCtx, cancel := context.WithTimeout(context.Background(), s.set.StopGrace+5*time.Second)
	defer cancel()
	if err := s.Close(stCtx); err != nil {
		s.log.Warn("worker stop", "error", err)
	}
	s.log.Info("shutdown complete")
	return runErr
}

// server is what Run needs of net/http's server and of http1's.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// protocolErrorBody is the OpenAI-shaped error the lean server answers a
// malformed request with (net/http's answer is plain text).
func protocolErrorBody(status int, msg string) (string, []byte) {
	b, _ := json.Marshal(openai.NewError(status, msg))
	return "application/json", append(b, '\n')
}

// logAccess says at start-up who may call what.
func (s *Server) logAccess() {
	a := s.access
	if len(a.keys) == 0 {
		s.log.Info("no API key set: /v1/* and /generate are open to anyone who can reach the gateway")
	} else {
		s.log.Info("API key required on /v1/* and /generate", "keys", len(a.keys))
	}
	switch {
	case a.admin != nil:
		s.log.Info("admin token required on /admin/* and for worker details on /status")
	case a.loopback:
		s.log.Warn("no admin token: admin routes are open to local clients because the gateway listens on loopback only", "host", s.set.Host)
	default:
		s.log.Warn("no admin token: admin routes are disabled because the gateway listens beyond loopback", "host", s.set.Host)
	}
	if len(a.cors) > 0 {
		s.log.Info("CORS allowed", "origins", s.set.CORSOrigins)
	}
}

// Close stops the worker (draining leases until ctx is done) and releases
// upstream connections. Run calls it; tests that use Handler call it.
func (s *Server) Close(ctx context.Context) error {
	s.abortNow()
	s.ctl.restarts.Wait()
	err := s.sup.Close(ctx)
	s.upstream.CloseIdleConnections()
	return err
}
