// Package demo shows scale-to-zero end to end: it starts `llmlab serve`
// as a child process with a short idle timeout, waits until the worker is
// stopped, sends load with the lab's load generator, and watches the
// worker start by itself, serve, and stop again once idle. It prints a
// timestamped transcript and writes the timeline (worker state, queue
// depth, in-flight, each request's latency marked cold or warm) as JSON,
// a plot (PNG, SVG) and an animated GIF.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
)

// Config is one demo. Zero optional fields take the documented defaults.
type Config struct {
	// Executable is the llmlab binary whose `serve` is run.
	Executable string
	// Profile is serve's --profile; empty: serve's default.
	Profile string
	// StartupSeconds is the simulated worker's modelled load time (serve's
	// --worker-startup-seconds); negative: the profile's or the sim's.
	StartupSeconds float64
	// IdleTimeout is serve's --idle-timeout.
	IdleTimeout time.Duration
	// Rate (requests/s) and Load (duration) shape the load phase.
	Rate float64
	Load time.Duration
	// Lead is how long the stopped worker is shown before the load.
	Lead time.Duration
	// APIKey, when set, is required by serve and sent by the load.
	APIKey string
	// Scenario is the request shape; zero: the embedded fixed_200_200.
	Scenario bench.Scenario
	// OutDir receives timeline.json, demo.png, demo.svg, demo.gif and
	// serve.log.
	OutDir string
	// SampleInterval is the /status polling period (default 250 ms).
	SampleInterval time.Duration
	// ServeArgs are passed to serve after the demo's own (a later flag
	// wins, so they may override them).
	ServeArgs []string
	// Transcript receives the timestamped transcript (nil: discarded).
	Transcript io.Writer
}

// Files are the demo's outputs.
type Files struct {
	Timeline, PNG, SVG, GIF, ServeLog string
}

// ErrCycle is returned (wrapped) when the demo ran but did not observe a
// full stop → start → serve → stop cycle.
var ErrCycle = errors.New("scale-to-zero cycle not observed")

// ErrNothingCompleted is returned (wrapped) when no request of the load
// completed.
var ErrNothingCompleted = errors.New("no request completed")

func (c Config) withDefaults() (Config, error) {
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find llmlab binary: %w", err)
		}
		c.Executable = exe
	}
	if c.IdleTimeout <= 0 {
		return c, errors.New("idle timeout must be > 0 (scale-to-zero is what the demo shows)")
	}
	if c.Rate <= 0 || c.Load <= 0 {
		return c, errors.New("rate and load duration must be > 0")
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 250 * time.Millisecond
	}
	if c.Scenario.Name == "" {
		sc, err := bench.DefaultScenario()
		if err != nil {
			return c, err
		}
		c.Scenario = sc
	}
	if c.OutDir == "" {
		c.OutDir = "."
	}
	if c.Transcript == nil {
		c.Transcript = io.Discard
	}
	return c, nil
}

// transcript writes timestamped lines: wall clock and seconds since start.
type transcript struct {
	mu sync.Mutex
	w  io.Writer
	t0 time.Time
}

func (t *transcript) printf(format string, a ...any) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s %+7.2fs  %s\n", now.UTC().Format("15:04:05.000"), now.Sub(t.t0).Seconds(), fmt.Sprintf(format, a...))
}

// Run performs the demo and writes its files. It returns the timeline
// and files even with an error when they were written (a cycle not
// observed, nothing completed), so the caller can show what happened.
func Run(ctx context.Context, cfg Config) (*Timeline, Files, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, Files{}, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, Files{}, fmt.Errorf("output directory: %w", err)
	}
	files := Files{
		Timeline: filepath.Join(cfg.OutDir, "timeline.json"),
		PNG:      filepath.Join(cfg.OutDir, "demo.png"),
		SVG:      filepath.Join(cfg.OutDir, "demo.svg"),
		GIF:      filepath.Join(cfg.OutDir, "demo.gif"),
		ServeLog: filepath.Join(cfg.OutDir, "serve.log"),
	}
	logf, err := os.Create(files.ServeLog)
	if err != nil {
		return nil, Files{}, fmt.Errorf("serve log: %w", err)
	}
	defer logf.Close()

	t0 := time.Now()
	tx := &transcript{w: cfg.Transcript, t0: t0}
	args := []string{"--host", "127.0.0.1", "--port", "0", "--idle-timeout", cfg.IdleTimeout.String()}
	if cfg.StartupSeconds >= 0 {
		args = append(args, "--worker-startup-seconds", strconv.FormatFloat(cfg.StartupSeconds, 'g', -1, 64))
	}
	if cfg.Profile != "" {
		args = append(args, "--profile", cfg.Profile)
	}
	if cfg.APIKey != "" {
		args = append(args, "--api-key", cfg.APIKey)
	}
	args = append(args, cfg.ServeArgs...)
	tx.printf("starting: %s serve --idle-timeout %v%s", filepath.Base(cfg.Executable), cfg.IdleTimeout, startupNote(cfg.StartupSeconds))
	srv, err := startServer(ctx, cfg.Executable, args, logf, 30*time.Second)
	if err != nil {
		return nil, Files{}, fmt.Errorf("%w (log: %s)", err, files.ServeLog)
	}
	defer srv.stop(30 * time.Second)
	tx.printf("gateway listening on %s (serve log: %s)", srv.url, files.ServeLog)

	tl := &Timeline{Kind: KindTimeline, Version: 1, StartedAt: t0, Settings: Settings{
		Profile: cfg.Profile, StartupSeconds: cfg.StartupSeconds, IdleTimeoutSeconds: cfg.IdleTimeout.Seconds(),
		Rate: cfg.Rate, LoadSeconds: cfg.Load.Seconds(), Scenario: cfg.Scenario.Name,
		GatewayURL: srv.url, SampleInterval: cfg.SampleInterval.Seconds(),
	}}
	runErr := drive(ctx, cfg, tx, srv, tl, t0)
	stopErr := srv.stop(30 * time.Second)
	if stopErr == nil {
		tx.printf("serve stopped cleanly")
	}
	if runErr != nil && tl.Samples == nil {
		return nil, Files{}, fmt.Errorf("%w (serve log: %s)", runErr, files.ServeLog)
	}
	tl.finish()
	tx.printf("drawing the plot and the %d-frame animation…", DefaultFrames)
	if err := writeOutputs(tl, files); err != nil {
		return tl, files, err
	}
	s := tl.Summary
	tx.printf("requests: %d sent, %d completed (%d cold: p50 %.2fs, max %.2fs; %d warm: p50 %.2fs, p95 %.2fs); cold start %.2fs; idle → stopped %.1fs after the load",
		s.Requests, s.Completed, s.Cold, s.ColdP50, s.ColdMax, s.Warm, s.WarmP50, s.WarmP95, s.ColdStartSeconds, s.IdleToStopSeconds)
	tx.printf("wrote %s, %s, %s, %s", files.Timeline, files.PNG, files.SVG, files.GIF)
	switch {
	case runErr != nil:
		return tl, files, runErr
	case stopErr != nil:
		return tl, files, stopErr
	case s.Completed == 0:
		return tl, files, fmt.Errorf("%w of %d sent", ErrNothingCompleted, s.Requests)
	case !tl.Cycle.Complete:
		return tl, files, fmt.Errorf("%w: %+v", ErrCycle, tl.Cycle)
	}
	tx.printf("full cycle observed: STOPPED → STARTING → READY → served → STOPPED")
	return tl, files, nil
}

func startupNote(s float64) string {
	if s < 0 {
		return ""
	}
	return fmt.Sprintf(" --worker-startup-seconds %g", s)
}

// drive runs the phases against a listening serve, filling tl.
func drive(ctx context.Context, cfg Config, tx *transcript, srv *server, tl *Timeline, t0 time.Time) error {
	statusTr := &http.Transport{Proxy: nil}
	defer statusTr.CloseIdleConnections()
	client := &http.Client{Timeout: 10 * time.Second, Transport: statusTr}
	smp := newSampler(client, srv.url, t0, cfg.SampleInterval, func(t Transition) {
		msg := fmt.Sprintf("worker %s → %s", t.From, t.To)
		if t.Cause != "" {
			msg += " (" + t.Cause + ")"
		}
		if t.ColdStartSeconds > 0 {
			msg += fmt.Sprintf(", cold start took %.2fs", t.ColdStartSeconds)
		}
		if t.Error != "" {
			msg += ": " + t.Error
		}
		tx.printf("%s", msg)
	})
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		smp.run(sctx)
	}()
	defer func() {
		stopSampling()
		<-sampled
		tl.End = time.Since(t0).Seconds()
		tl.Samples, tl.Transitions, _ = smp.snapshot()
		if p := smp.profileName(); p != "" {
			tl.Settings.Profile = p
		}
	}()

	// Phase 1: the worker is (or becomes) STOPPED.
	startup := max(cfg.StartupSeconds, 0)
	wait := cfg.IdleTimeout + time.Duration(startup*float64(time.Second)) + 60*time.Second
	if err := smp.waitFor(ctx, wait, "worker STOPPED", func(s Sample) bool { return s.State == StateStopped }); err != nil {
		return err
	}
	tx.printf("worker STOPPED: scaled to zero, no GPU held")
	if cfg.Lead > 0 {
		select {
		case <-time.After(cfg.Lead):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// Phase 2: load. The first requests find no worker and are held
	// through its start (cold); the rest meet a READY worker (warm).
	tr := &tracer{base: bench.NewTransport(), path: cfg.Scenario.Path(), t0: t0}
	var mu sync.Mutex
	var done, failed int
	tr.onDone = func(r Request) {
		mu.Lock()
		done++
		if r.Error != "" {
			failed++
		}
		mu.Unlock()
		if r.Error != "" {
			tx.printf("request sent at %+.2fs failed after %.2fs: %s", r.Sent, r.Latency, r.Error)
		}
	}
	defer tr.base.(*http.Transport).CloseIdleConnections()
	hdr := http.Header{}
	if cfg.APIKey != "" {
		hdr.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	tl.LoadStart = time.Since(t0).Seconds()
	tx.printf("load: %g req/s for %v (%s: %d tokens in, %d out), through the gateway",
		cfg.Rate, cfg.Load, cfg.Scenario.Name, cfg.Scenario.InputTokens, cfg.Scenario.OutputTokens)
	progCtx, stopProg := context.WithCancel(ctx)
	progDone := make(chan struct{})
	go func() {
		defer close(progDone)
		progress(progCtx, tx, smp, tr, &mu, &done, &failed)
	}()
	// The progress line runs on through the idle wait.
	defer func() {
		stopProg()
		<-progDone
	}()
	res, err := bench.Run(ctx, bench.Config{
		URL: srv.url, Scenario: cfg.Scenario, Rate: cfg.Rate, Duration: cfg.Load,
		Profile: cfg.Profile, Header: hdr, Client: &http.Client{Transport: tr},
		// A cold request waits for the whole start; don't abandon it.
		Timeout: 60*time.Second + time.Duration(startup*float64(time.Second)),
	})
	tl.LoadEnd = time.Since(t0).Seconds()
	tl.Requests = tr.requests()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	tx.printf("load done: %d completed, %d failed (e2e p50 %.2fs, p95 %.2fs over the whole load)",
		res.CompletedTotal, res.FailedTotal, res.E2EP50, res.E2EP95)

	// Phase 3: idle. The supervisor stops the worker after the timeout.
	tx.printf("idle: the worker should stop after %v with nothing queued or in flight", cfg.IdleTimeout)
	if err := smp.waitFor(ctx, cfg.IdleTimeout+60*time.Second, "worker STOPPED after the load", func(s Sample) bool {
		return s.State == StateStopped && s.QueueDepth == 0 && s.InFlight == 0
	}); err != nil {
		return err
	}
	tx.printf("worker STOPPED again: scaled to zero")
	// A last moment of the stopped worker for the plot.
	select {
	case <-time.After(min(cfg.Lead, 2*time.Second) + cfg.SampleInterval):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// progress prints a status line every two seconds during the load.
func progress(ctx context.Context, tx *transcript, smp *sampler, tr *tracer, mu *sync.Mutex, done, failed *int) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s, ok := smp.latest()
		if !ok {
			continue
		}
		tr.mu.Lock()
		sent := len(tr.reqs)
		tr.mu.Unlock()
		mu.Lock()
		d, f := *done, *failed
		mu.Unlock()
		idle := ""
		if sent > 0 && d == sent && s.QueueDepth == 0 && s.InFlight == 0 {
			idle = "  (idle)"
		}
		tx.printf("worker %-8s queue %3d  in flight %3d  sent %d, done %d, failed %d%s", s.State, s.QueueDepth, s.InFlight, sent, d, f, idle)
	}
}
