// Package bench is llmlab's open-loop load generator: requests leave on a
// precomputed schedule (constant, Poisson or gamma arrivals after a linear
// ramp) whatever the server does, and every latency is counted from the
// request's scheduled send time, so a slow server or a slow generator cannot
// hide queueing delay (no coordinated omission). Streaming responses give
// TTFT, TPOT and inter-token latency; everything is aggregated into
// fixed-size HDR histograms, so memory does not grow with the run's length.
//
// Run does one run, FindMax searches for the highest rate meeting the SLO,
// and RunFile is the JSON record of either (docs/runfile.md).
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llmlab/llmlab/internal/arrival"
	"github.com/llmlab/llmlab/internal/openai"
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

	Rate       float64       // steady arrival rate, requests/s
	Duration   time.Duration // sending time, ramp included; 0: the SLO file's measurement duration
	Ramp       time.Duration // linear ramp from 0 to Rate
	Warmup     time.Duration // excluded from steady-state figures, from the start
	Cooldown   time.Duration // excluded from steady-state figures, before the end
	Arrival    string        // constant (default), poisson, gamma
	Burstiness float64       // gamma shape; 0 means 1 (Poisson)
	Seed       uint64

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
	// Progress, when non-nil, receives a live progress line every
	// ProgressInterval (default 1 s). Meant for a terminal.
	Progress         io.Writer
	ProgressInterval time.Duration
	// ProgressWidth, when > 0, is the terminal's width: the line is cut
	// to fit, since a wrapped line cannot be redrawn in place by "\r".
	ProgressWidth int
	// Client sends the requests; nil means a client on NewTransport(),
	// whose idle connections are closed when Run returns.
	Client *http.Client
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
	if err := c.scheduleSpec().Validate(); err != nil {
		return err
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
	}
	// A steady window without a scheduled request measures nothing: the
	// run would end with "no request completed" as if the server had
	// failed. The schedule is only built when few requests are expected.
	spec, from, to := c.scheduleSpec(), c.Warmup, c.Duration-c.Cooldown
	if spec.CumRate(to)-spec.CumRate(from) < 2 {
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

func (c Config) scheduleSpec() arrival.Spec {
	return arrival.Spec{Rate: c.Rate, Duration: c.Duration, Ramp: c.Ramp, Arrival: c.Arrival, Burstiness: c.Burstiness, Seed: c.Seed}
}

// Result is the "results" object of a run file. Latencies are seconds;
// steady-state figures cover the requests scheduled inside the steady
// window [warmup, duration − cooldown). docs/runfile.md defines each field.
type Result struct {
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

	// Latencies are named as in `llmlab sim run`.
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

	SLOMet          bool     `json:"slo_met"`
	GeneratorBehind bool     `json:"generator_behind"`
	Interrupted     bool     `json:"interrupted"`
	Warnings        []string `json:"warnings"`
}

// NewTransport returns the HTTP transport a load generator wants: HTTP/1.1
// only (vLLM and the gateway speak it; HTTP/2 would multiplex and hide
// connection costs), no compression (SSE chunks must arrive as sent), no
// proxy, and enough idle connections per host that every in-flight request
// can keep its own and none is re-dialled under load.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:    true,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   8192,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
	}
}

// DiscoverModel returns the first model of GET {url}/v1/models.
func DiscoverModel(ctx context.Context, client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/v1/models", nil)
	if err != nil {
		return "", fmt.Errorf("discover model: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discover model: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("discover model: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discover model: GET /v1/models: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var list openai.ModelList
	if err := json.Unmarshal(body, &list); err != nil {
		return "", fmt.Errorf("discover model: decode /v1/models: %w", err)
	}
	if len(list.Data) == 0 {
		return "", errors.New("discover model: /v1/models lists no model; pass --model")
	}
	return list.Data[0].ID, nil
}

// runner is the state of one Run.
type runner struct {
	cfg    Config
	client *http.Client
	url    string
	bodies *bodyBuilder
	rec    *recorder
	sem    chan struct{}
	start  time.Time
	wg     sync.WaitGroup
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

// Run sends the configured load and returns the figures. It blocks until
// every request sent has ended (at most Timeout after the last scheduled
// send) or ctx is canceled; on cancellation it still returns the figures
// gathered so far, marked Interrupted, together with an error wrapping
// ctx.Err().
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	client := cfg.Client
	if client == nil {
		tr := NewTransport()
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	if cfg.Model == "" {
		m, err := DiscoverModel(ctx, client, cfg.URL)
		if err != nil {
			return Result{}, err
		}
		cfg.Model = m
	}
	bodies, err := newBodyBuilder(cfg.Scenario, cfg.Model, cfg.Seed)
	if err != nil {
		return Result{}, err
	}
	sched, err := arrival.Schedule(cfg.scheduleSpec())
	if err != nil {
		return Result{}, err
	}
	steadyFrom, steadyTo := cfg.Warmup, cfg.Duration-cfg.Cooldown
	sloE2E := time.Duration(cfg.SLO.SLO.P95E2ESeconds * float64(time.Second))
	r := &runner{
		cfg: cfg, client: client, url: cfg.URL + cfg.Scenario.Path(), bodies: bodies,
		rec: newRecorder(steadyFrom, steadyTo, sloE2E),
	}
	if cfg.MaxConcurrency > 0 {
		r.sem = make(chan struct{}, cfg.MaxConcurrency)
	}

	progDone := make(chan struct{})
	progStopped := make(chan struct{})
	r.start = time.Now()
	if cfg.Progress != nil {
		go func() {
			defer close(progStopped)
			r.progressLoop(progDone)
		}()
	} else {
		close(progStopped)
	}

	stoppedAt := r.dispatch(ctx, sched)
	r.wg.Wait()
	close(progDone)
	<-progStopped

	res := r.result(sched, stoppedAt)
	if err := ctx.Err(); err != nil {
		res.Interrupted = true
		res.SLOMet = false
		return res, fmt.Errorf("bench interrupted: %w", err)
	}
	return res, nil
}

// job is one request handed to a worker.
type job struct {
	i     int
	sched time.Duration
}

// worker is a goroutine that sends requests one after another, with
// scratch space reused between them. Reusing goroutines (as vegeta does)
// spares each request a fresh stack that net/http would grow again, and the
// buffers spare the garbage collector.
type worker struct {
	itls []time.Duration
	buf  []byte
}

// dispatch hands each request to an idle worker at its scheduled time, or
// starts a new worker when none is idle, so it never waits for a response
// and a slow server cannot slow the arrivals. Workers live until the end of
// the run; there are as many as requests were ever in flight at once. It
// returns the offset at which it stopped (Duration unless ctx ended first).
func (r *runner) dispatch(ctx context.Context, sched []time.Duration) time.Duration {
	jobs := make(chan job)
	defer close(jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i, at := range sched {
		if d := at - r.since(); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return r.since()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return r.since()
		}
		j := job{i: i, sched: at}
		select {
		case jobs <- j:
		default:
			r.wg.Add(1)
			go r.work(ctx, j, jobs)
		}
	}
	return r.cfg.Duration
}

func (r *runner) work(ctx context.Context, first job, jobs <-chan job) {
	defer r.wg.Done()
	// +2: a chat stream opens with a role-only chunk, and servers may add one.
	w := &worker{itls: make([]time.Duration, 0, r.cfg.Scenario.OutputTokens+2), buf: make([]byte, 4096)}
	r.one(ctx, w, first)
	for j := range jobs {
		r.one(ctx, w, j)
	}
}

// one sends a request and records its outcome.
func (r *runner) one(ctx context.Context, w *worker, j job) {
	o := outcome{sched: j.sched, sent: r.since()}
	r.rec.started(j.sched, o.sent)
	// The deadline runs from the scheduled time: it bounds the requests
	// alive at once to about Rate × Timeout whatever the server does.
	reqCtx, cancel := context.WithDeadline(ctx, r.start.Add(j.sched+r.cfg.Timeout))
	defer cancel()
	if r.sem != nil {
		select {
		case r.sem <- struct{}{}:
			defer func() { <-r.sem }()
		case <-reqCtx.Done():
			o.end = r.since()
			r.fail(ctx, &o, ClassTimeout)
			r.rec.record(&o)
			return
		}
	}
	o.itls = w.itls[:0]
	r.exchange(ctx, reqCtx, w, j.i, &o)
	r.rec.record(&o)
}

// fail sets the outcome's class, telling the run's own cancellation and the
// request's deadline apart from the fallback class.
func (r *runner) fail(runCtx context.Context, o *outcome, fallback string) {
	switch {
	case runCtx.Err() != nil:
		o.canceled = true
	case time.Since(r.start) >= o.sched+r.cfg.Timeout:
		o.class = ClassTimeout
	default:
		o.class = fallback
	}
}

func (r *runner) exchange(runCtx, ctx context.Context, w *worker, i int, o *outcome) {
	body, err := r.bodies.body(i)
	if err != nil {
		o.end = r.since()
		o.class = ClassBadResponse
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		o.end = r.since()
		o.class = ClassConnection
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if r.cfg.Scenario.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		o.end = r.since()
		r.fail(runCtx, o, ClassConnection)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read the (small) error body so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		o.end = r.since()
		o.class = fmt.Sprintf("http_%d", resp.StatusCode)
		return
	}
	if !r.cfg.Scenario.Stream {
		r.readWhole(runCtx, resp.Body, o)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" && !isEventStream(ct) {
		// A 200 that is not an event stream (a server ignoring "stream", an
		// error object sent with 200, a proxy's HTML page) has no data
		// events: read as a stream it would pass for a truncated one.
		r.readWhole(runCtx, resp.Body, o)
		if o.class == "" || o.class == ClassShortStream {
			o.class = ClassBadResponse
		}
		return
	}
	sse := openai.NewSSEReaderBuffer(resp.Body, w.buf)
	var (
		last   time.Duration
		events int
		usage  *openai.Usage
	)
	for {
		data, err := sse.Next()
		now := r.since()
		if err != nil {
			o.end = now
			r.fail(runCtx, o, ClassIncompleteStream)
			return
		}
		if string(data) == openai.Done {
			o.end = now
			break
		}
		var c chunk
		if err := parseChunk(data, &c); err != nil {
			o.end = now
			o.class = ClassBadResponse
			return
		}
		if c.isError() {
			o.end = now
			o.class = ClassStreamError
			return
		}
		if len(c.Choices) > 0 {
			if events == 0 {
				o.ttft = now - o.sched
			} else {
				o.itls = append(o.itls, now-last)
			}
			last = now
			events++
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	// Drain to EOF so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o.output = events
	if usage != nil {
		o.output, o.prompt = usage.CompletionTokens, usage.PromptTokens
	}
	if r.cfg.Scenario.IgnoreEOS && o.output < r.cfg.Scenario.OutputTokens {
		o.class = ClassShortStream
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// readWhole handles a non-streamed response: TTFT is then the whole latency.
func (r *runner) readWhole(runCtx context.Context, body io.Reader, o *outcome) {
	b, err := io.ReadAll(io.LimitReader(body, 16<<20))
	o.end = r.since()
	if err != nil {
		r.fail(runCtx, o, ClassIncompleteStream)
		return
	}
	var c chunk
	if err := json.Unmarshal(b, &c); err != nil {
		o.class = ClassBadResponse
		return
	}
	if c.isError() {
		o.class = ClassStreamError
		return
	}
	o.ttft, o.whole = o.end-o.sched, true
	if c.Usage != nil {
		o.output, o.prompt = c.Usage.CompletionTokens, c.Usage.PromptTokens
	}
	if r.cfg.Scenario.IgnoreEOS && c.Usage != nil && o.output < r.cfg.Scenario.OutputTokens {
		o.class = ClassShortStream
	}
}

// progressLoop writes the live progress line until done is closed.
func (r *runner) progressLoop(done <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	var prevSent int64
	prevAt := time.Duration(0)
	for {
		select {
		case <-done:
			fmt.Fprint(r.cfg.Progress, "\r\033[K")
			return
		case <-t.C:
		}
		p := r.rec.snapshot()
		now := r.since()
		dt := (now - prevAt).Seconds()
		phase := ""
		if now > r.cfg.Duration {
			phase = "  (draining)"
		}
		// The figures the line is for come first, so a narrow terminal
		// cuts the details.
		line := fmt.Sprintf("%4.0fs/%.0fs  sent %d  rps %.1f  p95 %.3fs  errors %d  done %d  in-flight %d  sending %.1f/s%s",
			now.Seconds(), r.cfg.Duration.Seconds(), p.sent, float64(p.windowOK)/dt, p.windowP95.Seconds(),
			p.failed, p.done, p.inflight, float64(p.sent-prevSent)/dt, phase)
		if w := r.cfg.ProgressWidth; w > 1 && len(line) > w-1 {
			line = line[:w-1] // ASCII only; the last column is left free so the cursor does not wrap
		}
		fmt.Fprint(r.cfg.Progress, "\r\033[K"+line)
		prevSent, prevAt = p.sent, now
	}
}

// result turns the recorder into a Result.
func (r *runner) result(sched []time.Duration, stoppedAt time.Duration) Result {
	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	from, to := rec.steadyFrom, rec.steadyTo
	if stoppedAt < to {
		to = max(stoppedAt, from) // interrupted: the window ends early, possibly empty
	}
	window := (to - from).Seconds()
	per := func(n int64) float64 {
		if window <= 0 {
			return 0
		}
		return float64(n) / window
	}
	var scheduled int64
	for _, at := range sched {
		if at >= from && at < to {
			scheduled++
		}
	}
	res := Result{
		Model:    r.cfg.Model,
		Requests: rec.requests, Completed: rec.completed, Failed: rec.requests - rec.completed,
		Errors:        copyClasses(rec.errors),
		ScheduledRate: per(scheduled),
		AchievedRate:  per(rec.sentInWindow),
		InputTokens:   rec.promptTokens, OutputTokens: rec.outputTokens,
		SentTotal: rec.sentAll, CompletedTotal: rec.doneAll, FailedTotal: rec.failedAll,
		CanceledTotal: rec.canceled, ErrorsTotal: copyClasses(rec.errorsAll),
		DurationS:    stoppedAt.Seconds(),
		SteadyStartS: from.Seconds(), SteadyEndS: to.Seconds(), SteadyWindowS: window,
		WallS:    rec.lastEnd.Seconds(),
		Warnings: []string{},
	}
	if rec.lastEnd > 0 {
		res.RPSOverall = float64(rec.doneAll) / rec.lastEnd.Seconds()
	}
	if rec.requests > 0 {
		res.ErrorRate = float64(res.Failed) / float64(rec.requests)
	}
	// Sustained throughput of the steady cohort: its successful requests
	// end spaced by the rate the server kept up, whatever their latency:
	// (n−1) gaps over the span from the first end to the last. Counting
	// the ends that fall inside the window instead would miss the cohort's
	// last e2e worth of completions and read low on short runs. The span
	// shrinks when latency falls during the run (the batch drains once
	// arrivals stop), yet a cohort cannot be served faster than it
	// arrived: the rate is capped at completed ÷ window.
	res.RPS = per(rec.completed)
	if span := (rec.lastEndSteady - rec.firstEnd).Seconds(); rec.completed >= 2 && span > 0 {
		res.RPS = min(res.RPS, float64(rec.completed-1)/span)
	}
	if rec.completed > 0 {
		res.GoodputFrac = float64(rec.good) / float64(rec.completed)
		res.GoodputRPS = res.RPS * res.GoodputFrac
	}
	if rec.completed > 0 {
		res.OutputTokensMean = float64(rec.outputTokens) / float64(rec.completed)
		res.OutputTokenRate = res.OutputTokensMean * res.RPS
	}
	res.Latencies = slo.NewLatencies(dist(rec.e2e), dist(rec.ttft), dist(rec.tpot), dist(rec.itl))
	d := dist(rec.lag)
	res.SendLagP50, res.SendLagP95, res.SendLagP99, res.SendLagMax, res.SendLagMean = d.P50, d.P95, d.P99, d.Max, d.Mean

	if lagP99 := time.Duration(d.P99 * float64(time.Second)); lagP99 > r.cfg.LagThreshold {
		res.GeneratorBehind = true
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"generator fell behind: send lag p99 %.1f ms > %.1f ms; latencies include this lag", d.P99*1e3, r.cfg.LagThreshold.Seconds()*1e3))
	}
	if res.ScheduledRate > 0 && res.AchievedRate < 0.95*res.ScheduledRate {
		res.GeneratorBehind = true
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"generator fell behind: achieved send rate %.2f/s < 95%% of scheduled %.2f/s", res.AchievedRate, res.ScheduledRate))
	}
	if rec.completed == 0 {
		res.Warnings = append(res.Warnings, "no request of the steady window completed")
	}
	res.SLOMet = rec.completed > 0 && r.cfg.SLO.SLO.Met(res.E2EP95, res.ErrorRate)
	return res
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
