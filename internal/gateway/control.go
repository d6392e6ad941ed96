package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/supervisor"
	"github.com/llmlab/llmlab/internal/validate"
)

// Headers of the overload policies.
const (
	// deadlineHeader is a client's own deadline for the whole request, in
	// seconds; deadline-aware admission refuses at arrival what it
	// predicts would finish later (it applies even when the SLO check is
	// off).
	deadlineHeader = "X-LLMLab-Deadline"
	// degradedHeader says what the degradation ladder changed in a
	// request.
	degradedHeader = "X-LLMLab-Degraded"
)

// control owns the overload policies of internal/admission at run time:
// it measures completions, feeds the ladder and the batching window's
// guardrail once a tick, and applies tier changes.
type control struct {
	s      *Server
	slo    time.Duration
	meter  *admission.Meter
	policy *admission.Policy
	guard  *admission.Guard
	batch  *batcher

	mu     sync.Mutex // guards ladder and lastPreempt
	ladder *admission.Ladder
	// lastPreempt is the worker's vllm:num_preemptions_total at the last
	// tick (-1: none seen yet).
	lastPreempt float64
	signals     admission.Signals

	tierNow atomic.Int32
	// next is the engine arguments the next worker start uses; running
	// those of the worker started last.
	next, running atomic.Pointer[profile.EngineArgs]
	base          profile.EngineArgs
	baseInFlight  int
	restarts      sync.WaitGroup
	restarting    atomic.Bool

	rejected  *prometheus.CounterVec
	tierGauge prometheus.Gauge
	windowG   prometheus.Gauge
	scrape    *http.Client
}

func newControl(s *Server, slo time.Duration, baseInFlight int) *control {
	now := time.Now()
	set := s.set
	c := &control{
		s: s, slo: slo, base: s.prof.EngineArgs, baseInFlight: baseInFlight,
		meter:       admission.NewMeter(now, set.AdmissionWindow, 200*time.Millisecond, 4096),
		lastPreempt: -1,
		scrape:      &http.Client{Timeout: time.Second},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmlab_rejected_total",
			Help: "Requests refused for load (429), by reason: queue_full, deadline (predicted to finish past the SLO or the client's deadline), shed (degradation tier 4).",
		}, []string{"reason"}),
		tierGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmlab_degradation_tier",
			Help: "Active degradation tier: 0 normal, 1 max_tokens clamped, 2 max_model_len lowered, 3 max_num_seqs lowered, 4 shed.",
		}),
		windowG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llmlab_batch_window_seconds",
			Help: "Current micro-batching window after the guardrail (0: off).",
		}),
	}
	c.policy = &admission.Policy{SLO: slo, Deadline: set.DeadlineAdmission, Headroom: set.AdmissionHeadroom, MaxRetryAfter: set.MaxRetryAfter, Meter: c.meter}
	c.ladder = admission.NewLadder(now, admission.LadderConfig{
		MaxTier: admission.Tier(set.DegradeMaxTier), UpAfter: set.DegradeUpAfter, DownAfter: set.DegradeDownAfter,
		Cooldown: set.DegradeCooldown,
	})
	c.guard = admission.NewGuard(set.BatchWindow)
	c.batch = newBatcher(set.BatchWindow, set.BatchMax)
	args := c.base
	c.next.Store(&args)
	for _, r := range admission.Reasons() {
		c.rejected.WithLabelValues(r)
	}
	s.metrics.Registry.MustRegister(c.rejected, c.tierGauge, c.windowG, c.batch.size, c.batch.wait)
	c.windowG.Set(set.BatchWindow.Seconds())
	return c
}

func (c *control) tier() admission.Tier { return admission.Tier(c.tierNow.Load()) }

// tier is the active degradation tier.
func (s *Server) tier() admission.Tier { return s.ctl.tier() }

// load is the dispatcher's state for the admission policy; with grants,
// also when each request in flight got its place (only a prediction
// needs them, and only when the new request would wait).
func (c *control) load(grants bool) admission.Load {
	depth, inFlight := c.s.disp.Stats()
	l := admission.Load{Depth: depth, InFlight: inFlight, MaxInFlight: c.s.disp.MaxInFlight()}
	if grants && (depth > 0 || inFlight >= l.MaxInFlight) {
		l.Granted = c.s.disp.Granted(make([]time.Time, 0, inFlight))
	}
	return l
}

// served records a request that got the worker's answer.
func (c *control) served(p *place, code int) {
	if code != http.StatusOK {
		return
	}
	now := time.Now()
	c.meter.Done(now, p.queued, now.Sub(p.granted))
}

// retryAfter is the Retry-After of a 429: the queue's drain time at the
// measured completion rate. While the worker starts nothing drains, so
// the fallback is the rest of the expected start-up (the last cold
// start), else a second.
func (s *Server) retryAfter() int {
	depth, _ := s.disp.Stats()
	fallback := time.Second
	st := s.backend.Status()
	if st.State == supervisor.Starting.String() && st.LastColdStartSeconds > 0 {
		left := time.Duration(st.LastColdStartSeconds*float64(time.Second)) - time.Since(st.Since)
		return max(1, int((left+time.Second-1)/time.Second))
	}
	return s.ctl.policy.RetryAfter(time.Now(), depth, fallback)
}

// deadlineKey is deadlineHeader as a header map holds it: Header.Get
// would canonicalise the name, with an allocation, on every request.
var deadlineKey = http.CanonicalHeaderKey(deadlineHeader)

// requestDeadline reads a client's deadline header.
func requestDeadline(r *http.Request) (time.Duration, error) {
	vs := r.Header[deadlineKey]
	if len(vs) == 0 || vs[0] == "" {
		return 0, nil
	}
	v := vs[0]
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(f > 0) || f > 86400 {
		return 0, badRequest(http.StatusBadRequest, "bad_request", "%s must be a number of seconds in (0, 86400], got %q", deadlineHeader, v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// degrade applies tier 1 to a request: max_tokens above the clamp is
// lowered to it, and the answer says so in a header. Tiers 2–3 act on the
// worker, tier 4 at admission.
func (s *Server) degrade(w http.ResponseWriter, body []byte, req validate.Request) []byte {
	lim := s.set.ClampMaxTokens
	if s.tier() < admission.TierClampTokens || lim <= 0 || req.MaxTokens <= lim {
		return body
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return body // validated already; cannot happen
	}
	field := "max_tokens"
	if _, ok := m["max_completion_tokens"]; ok && req.Chat {
		field = "max_completion_tokens"
	}
	m[field] = json.RawMessage(strconv.Itoa(lim))
	if v, ok := m["min_tokens"]; ok {
		if n, err := strconv.Atoi(string(v)); err == nil && n > lim {
			m["min_tokens"] = json.RawMessage(strconv.Itoa(lim))
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	w.Header().Set(degradedHeader, fmt.Sprintf("tier=%d; max_tokens=%d (asked %d)", s.tier(), lim, req.MaxTokens))
	return out
}

// engineFor is the engine arguments of tier t.
func (c *control) engineFor(t admission.Tier) profile.EngineArgs {
	a := c.base
	if t >= admission.TierShortCtx && c.s.set.DegradedMaxModelLen > 0 {
		a.MaxModelLen = min(a.MaxModelLen, c.s.set.DegradedMaxModelLen)
	}
	if t >= admission.TierFewerSeqs {
		a.MaxNumSeqs = max(1, a.MaxNumSeqs/2)
	}
	return a
}

// inFlightFor is the dispatcher's limit for a worker started with args:
// never more places than the engine's seats, so lowering max_num_seqs
// (tier 3) moves no queue into the engine. It changes when such a worker
// starts, not before: halving the places of a worker that still has all
// its seats would only cut its throughput.
func (c *control) inFlightFor(args profile.EngineArgs) int {
	if args.MaxNumSeqs >= c.base.MaxNumSeqs {
		return c.baseInFlight // as configured, whatever it is
	}
	return max(1, min(c.baseInFlight, args.MaxNumSeqs))
}

// started is called with the engine arguments of every worker start.
func (c *control) started(a profile.EngineArgs) {
	c.running.Store(&a)
	c.s.disp.SetMaxInFlight(c.inFlightFor(a))
	c.s.metrics.InFlightCapacity.Set(float64(c.s.disp.MaxInFlight()))
}

// run ticks until ctx is done.
func (c *control) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.tick(ctx, now)
		}
	}
}

// tick reads the signals and moves the ladder and the window.
func (c *control) tick(ctx context.Context, now time.Time) {
	snap := c.meter.Snapshot(now)
	depth, inFlight := c.s.disp.Stats()
	sig := admission.Signals{SLO: c.slo, P95: snap.E2EP95, WaitP95: snap.WaitP95, Samples: snap.Completions,
		Busy: depth+inFlight > 0, KVUsage: -1, Waiting: -1}
	if c.s.set.Degrade || c.s.set.BatchWindow > 0 {
		c.workerSignals(ctx, &sig)
	}
	if c.s.set.BatchWindow > 0 {
		w := c.guard.Adjust(snap.E2EP95, c.slo, snap.Completions)
		c.batch.setWindow(w)
		c.windowG.Set(w.Seconds())
	}
	c.mu.Lock()
	c.signals = sig
	if !c.s.set.Degrade {
		c.mu.Unlock()
		return
	}
	if st := c.s.backend.Status(); st.LastColdStartSeconds > 0 && c.s.set.DegradeRestart {
		c.ladder.SetRestartCost(time.Duration(st.LastColdStartSeconds * float64(time.Second)))
	}
	ch, ok := c.ladder.Update(now, sig)
	c.mu.Unlock()
	if ok {
		c.apply(ch)
	}
}

// setTier is an operator's order (POST /admin/degrade).
func (c *control) setTier(t admission.Tier) admission.Change {
	c.mu.Lock()
	ch := c.ladder.Force(time.Now(), t)
	c.mu.Unlock()
	c.apply(ch)
	return ch
}

// apply makes a tier change effective: one log line with its cause, the
// gauge, the in-flight limit, and the engine arguments — by a drained
// restart when enabled, else at the worker's next cold start.
func (c *control) apply(ch admission.Change) {
	c.tierNow.Store(int32(ch.To))
	c.tierGauge.Set(float64(ch.To))
	args := c.engineFor(ch.To)
	c.next.Store(&args)
	engine := "unchanged"
	running := c.running.Load()
	if running != nil && *running != args {
		switch {
		case !c.s.set.DegradeRestart:
			engine = "at the next cold start"
		case c.restarting.CompareAndSwap(false, true):
			engine = "drained restart now"
			c.restarts.Add(1)
			go c.restart(ch)
		default:
			engine = "at the restart under way"
		}
	} else if running == nil && args != c.base {
		engine = "at the next cold start"
	}
	c.s.log.Warn("degradation tier changed", "from", int(ch.From), "to", int(ch.To), "tier", ch.To.String(),
		"cause", ch.Cause, "max_tokens_clamp", c.s.set.ClampMaxTokens, "max_model_len", args.MaxModelLen,
		"max_num_seqs", args.MaxNumSeqs, "max_in_flight", c.s.disp.MaxInFlight(), "engine_args", engine)
}

// restart drains the worker (the supervisor waits for every lease, up to
// drain_timeout) and starts it again with the tier's engine arguments.
// Requests arriving meanwhile wait for the new worker.
func (c *control) restart(ch admission.Change) {
	defer c.restarts.Done()
	defer c.restarting.Store(false)
	ctx, cancel := context.WithTimeout(c.s.abort, c.s.set.DrainTimeout+c.s.set.StopGrace+5*time.Second)
	defer cancel()
	cause := fmt.Sprintf("degradation tier %d (%s): restart with new engine arguments", ch.To, ch.To)
	if err := c.s.sup.Stop(ctx, cause); err != nil {
		c.s.log.Warn("degradation restart: stop", "error", err)
		return
	}
	if err := c.s.sup.Start(); err != nil {
		c.s.log.Warn("degradation restart: start", "error", err)
	}
}

// workerSignals scrapes the READY worker's own /metrics: KV cache usage,
// requests waiting, and preemptions since the last tick.
func (c *control) workerSignals(ctx context.Context, sig *admission.Signals) {
	st := c.s.backend.Status()
	if st.State != supervisor.Ready.String() || st.URL == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := c.scrape.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	w, err := admission.ParseWorkerMetrics(resp.Body)
	if err != nil {
		c.s.log.Debug("worker metrics", "error", err)
		return
	}
	sig.KVUsage, sig.Waiting = w.KVUsage, w.Waiting
	if w.Preemptions >= 0 {
		if c.lastPreempt >= 0 && w.Preemptions >= c.lastPreempt {
			sig.Preempted = w.Preemptions - c.lastPreempt
		}
		c.lastPreempt = w.Preemptions
	}
}

// overloadStatus is the part of /status the policies fill.
type overloadStatus struct {
	Tier              int     `json:"tier"`
	TierName          string  `json:"tier_name"`
	Ladder            bool    `json:"ladder"`
	DeadlineAdmission bool    `json:"deadline_admission"`
	SLOSeconds        float64 `json:"slo_seconds"`
	CompletionsPerSec float64 `json:"completions_per_second"`
	ServiceP95Seconds float64 `json:"service_p95_seconds"`
	WaitP95Seconds    float64 `json:"queue_wait_p95_seconds"`
	PredictedSeconds  float64 `json:"predicted_latency_seconds"`
	BatchWindowSecs   float64 `json:"batch_window_seconds"`
	KVUsage           float64 `json:"worker_kv_cache_usage"`
	NextMaxModelLen   int     `json:"next_max_model_len"`
	NextMaxNumSeqs    int     `json:"next_max_num_seqs"`
}

func (c *control) status() overloadStatus {
	now := time.Now()
	snap := c.meter.Snapshot(now)
	pred, _ := c.policy.Predict(now, c.load(true))
	c.mu.Lock()
	kv := c.signals.KVUsage
	c.mu.Unlock()
	next := c.next.Load()
	return overloadStatus{
		Tier: int(c.tier()), TierName: c.tier().String(), Ladder: c.s.set.Degrade, DeadlineAdmission: c.s.set.DeadlineAdmission,
		SLOSeconds: c.slo.Seconds(), CompletionsPerSec: snap.Rate, ServiceP95Seconds: snap.ServiceP95.Seconds(),
		WaitP95Seconds: snap.WaitP95.Seconds(), PredictedSeconds: pred.Seconds(), BatchWindowSecs: c.batch.window().Seconds(),
		KVUsage: kv, NextMaxModelLen: next.MaxModelLen, NextMaxNumSeqs: next.MaxNumSeqs,
	}
}
