// Package server is the live simulated vLLM server behind `llmlab sim`: an
// OpenAI-compatible HTTP API on a real port whose tokens leave in wall-clock
// time, step by step, as the engine model (internal/sim/engine) schedules
// them.
//
// # Start-up
//
// Run profiles memory with engine.NewPlan. A configuration that does not fit
// fails like vLLM, which fails in its profiling run after the weights are
// loaded: after half of the start-up time, the error is printed to
// Config.Stderr as "ValueError: …" and returned. Otherwise Run logs vLLM's
// "GPU KV cache size: N tokens" and "Maximum concurrency for L tokens per
// request: Kx" lines, waits out the rest of the start-up time without
// listening (the port refuses connections while the model "loads", as
// vLLM's does), then listens and logs "Starting vLLM API server on
// http://host:port".
//
// Like vLLM, which creates and binds its server socket before it loads the
// model, Run binds the port first of all (bind_linux.go): a port in use
// fails at once with "OSError: [Errno 98] Address already in use" on
// Config.Stderr, not after the start-up. The socket listens only once the
// start-up is over; until then the kernel refuses connections to it. Off
// Linux the fallback binds and listens together after the start-up.
//
// # Engine loop
//
// One goroutine owns the scheduler (see loop.go): it takes new requests and
// aborts from channels, runs a step, sleeps until the step's modelled end
// (a timer for the bulk, nanosleep for the last 2 ms because Go timers are
// only millisecond-accurate on Linux), then hands each produced token to its
// request. Steps are scheduled against absolute deadlines, so time spent
// handing out tokens does not add up to drift; a loop that falls behind
// runs the next step at once. When idle it blocks. The wall-clock error of
// each step is exported as the histogram llmlab_sim_step_lag_seconds; with
// 256 concurrent streams on two shared cores it is ~0.1 ms on average (see
// BenchmarkLiveStepTiming).
//
// # Text
//
// Requests are validated by internal/validate, the gateway's validation
// too, so both refuse alike. Text prompts are counted by internal/tokenizer;
// chat messages are rendered with its ChatML template and counted the same
// way; token-id prompts count exactly. Output text is drawn word by word
// from a fixed vocabulary (tokenAt): at temperature 0 seeded by the prompt
// hash, so the same prompt always yields the same text; at temperature > 0
// (vLLM's default is 1.0 when the field is omitted) seeded by the request's
// seed, or by the server seed and a request counter. Unless ignore_eos is
// set, the simulated model stops ("stop") at a length drawn from the same
// seed (8–263 tokens, at least min_tokens); if that is beyond max_tokens
// the request ends with "length". Stop strings and stop_token_ids end it
// earlier as vLLM V1 does, and logprobs come in vLLM's shapes (output.go).
// /tokenize, /detokenize, /ping, /version and --api-key are as in vLLM.
//
// # Differences from vLLM
//
// n > 1 and batches of prompts are rejected with 400; echo and tools are
// accepted and ignored; queue time (vllm:request_queue_time_seconds) is
// measured from arrival to the start of the step that produced the first
// token; unknown routes answer 404 and wrong methods 405 in the OpenAI
// error shape (vLLM's FastAPI answers {"detail": …}); request bodies are
// limited to 1 MiB (413). docs/sim-api.md has the whole list.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
	"github.com/llmlab/llmlab/internal/sim/engine"
)

// Config configures Run.
type Config struct {
	Engine          engine.Config
	Host            string
	Port            int
	Model           string
	ServedModelName string  // defaults to Model
	StartupSeconds  float64 // < 0: use the plan's modelled StartupSeconds
	Seed            int64
	Logger          *slog.Logger
	Stderr          io.Writer // where vLLM-style fatal errors are printed
	// APIKeys, when set, are required as "Authorization: Bearer <key>" on
	// /v1/* (vllm serve --api-key).
	APIKeys []string
}

// vllmVersion is what GET /version reports: the vLLM release whose
// behaviour the simulator follows.
const vllmVersion = "0.11.0"

// maxBodyBytes limits request bodies (413 above it).
const maxBodyBytes = 1 << 20

// shutdownGrace bounds how long Run waits for handlers after the engine
// loop has aborted their requests.
const shutdownGrace = 5 * time.Second

// Run starts the simulated vLLM server and blocks until ctx is done; then it
// aborts the requests in flight (streams end with an error event), shuts the
// HTTP server down and returns nil. It returns an error when the engine
// cannot start (the text is vLLM's) or the port cannot be bound (at once,
// before the start-up; see the package doc).
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	if cfg.ServedModelName == "" {
		cfg.ServedModelName = cfg.Model
	}
	// Bind before anything else, as vLLM does, so a busy port is reported
	// now rather than after the modelled start-up.
	sock, err := bindPort(cfg.Host, cfg.Port)
	if err != nil {
		fmt.Fprintln(stderr, "OSError: "+pythonOSError(err))
		log.Error("cannot bind the server socket", "err", err.Error())
		return err
	}
	defer sock.close()
	plan, planErr := engine.NewPlan(cfg.Engine)
	startup := cfg.StartupSeconds
	if startup < 0 {
		startup = plan.StartupSeconds
	}
	if planErr != nil {
		// vLLM fails in its profiling run, after loading the weights.
		if !sleepCtx(ctx, seconds(startup/2)) {
			return nil
		}
		fmt.Fprintln(stderr, engine.ExceptionLine(planErr))
		log.Error("engine core initialisation failed", "err", planErr.Error())
		return fmt.Errorf("start engine: %w", planErr)
	}
	// vLLM's profiling lines, ending with "GPU KV cache size: N tokens" and
	// "Maximum concurrency for L tokens per request: Kx".
	for _, line := range plan.LogLines(cfg.Engine) {
		log.Info(line)
	}
	log.Info("loading model", "model", cfg.Model, "startup_seconds", startup)
	if !sleepCtx(ctx, seconds(startup)) {
		return nil
	}

	ln, err := sock.listen()
	if err != nil {
		return err
	}
	s := newServer(cfg, plan, nil)
	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()
	go s.loop.run(loopCtx)

	srv := &http.Server{Handler: refuseDeclaredLarge(s.handler()), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info(fmt.Sprintf("Starting vLLM API server on http://%s", ln.Addr()))

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
	}
	// Abort the engine first so streams in flight end with an error event
	// and their handlers return; then close the listener and wait for them.
	stopLoop()
	<-s.loop.done
	shCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		_ = srv.Close()
	}
	if runErr == nil {
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	log.Info("server stopped")
	return runErr
}

// server holds what the HTTP handlers share.
type server struct {
	cfg         Config
	plan        engine.Plan
	maxModelLen int
	vocab       int // the model's vocabulary size: token ids are below it
	loop        *loop
	m           *metrics
	created     int64 // unix time of start, for /v1/models
	idBase      string
	nextID      atomic.Uint64
}

// newServer builds the server and its engine loop (not yet running).
func newServer(cfg Config, plan engine.Plan, observe stepObserver) *server {
	if cfg.ServedModelName == "" {
		cfg.ServedModelName = cfg.Model
	}
	m := newMetrics(cfg.ServedModelName, cfg.Engine.MaxModelLen, cacheInfo{
		blockSize: cfg.Engine.BlockSize, gpuUtilization: cfg.Engine.GPUMemoryUtilization, numGPUBlocks: plan.NumBlocks,
	})
	now := time.Now()
	spec, _ := cfg.Engine.ResolveModel() // NewPlan validated it
	return &server{
		vocab:       spec.Vocab,
		cfg:         cfg,
		plan:        plan,
		maxModelLen: cfg.Engine.MaxModelLen,
		loop:        newLoop(engine.NewScheduler(cfg.Engine, plan), m, observe),
		m:           m,
		created:     now.Unix(),
		idBase:      fmt.Sprintf("%016x", uint64(now.UnixNano())^uint64(cfg.Seed)),
	}
}

// sleepCtx sleeps for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// refuseDeclaredLarge answers 413 from the headers when a request declares
// a body over maxBodyBytes, without waiting for the body (a client that
// declares 50 MB and sends it slowly would otherwise hold a connection).
func refuseDeclaredLarge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			w.Header().Set("Connection", "close")
			openai.WriteErrorBody(w, *errorf(http.StatusRequestEntityTooLarge, "Request body too large: the limit is %d bytes.", maxBodyBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
}
