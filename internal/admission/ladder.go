package admission

import (
	"fmt"
	"strings"
	"time"
)

// Tier is a step of the degradation ladder. Each tier keeps the ones
// below it.
type Tier int

// The ladder's tiers (docs/admission.md).
const (
	TierNormal      Tier = 0 // nothing changed
	TierClampTokens Tier = 1 // max_tokens clamped (200 → 128)
	TierShortCtx    Tier = 2 // max_model_len lowered (512 → 448): engine argument
	TierFewerSeqs   Tier = 3 // max_num_seqs lowered: engine argument, and the in-flight limit at once
	TierShed        Tier = 4 // requests that would wait are refused
	MaxTier              = TierShed
)

var tierNames = [...]string{"normal", "clamp_max_tokens", "max_model_len", "max_num_seqs", "shed"}

func (t Tier) String() string {
	if t < 0 || int(t) >= len(tierNames) {
		return fmt.Sprintf("tier%d", int(t))
	}
	return tierNames[t]
}

// NeedsRestart reports whether entering or leaving t changes the worker's
// engine arguments.
func (t Tier) NeedsRestart() bool { return t == TierShortCtx || t == TierFewerSeqs }

// Signals are the windowed measurements the ladder reads.
type Signals struct {
	SLO       time.Duration
	P95       time.Duration // end-to-end p95 of the window's completions
	WaitP95   time.Duration // queue wait p95
	Samples   int           // completions in the window
	Busy      bool          // requests queued or in flight now
	KVUsage   float64       // vllm:kv_cache_usage_perc, 0–1 (-1: unknown)
	Waiting   float64       // vllm:num_requests_waiting (-1: unknown)
	Preempted float64       // increase of vllm:num_preemptions_total since the last tick
}

// LadderConfig shapes the ladder. Zero values take the defaults in
// NewLadder.
type LadderConfig struct {
	MaxTier Tier
	// UpAfter: pressure must last this long before a step up; DownAfter:
	// calm must last this long before a step down (longer: leaving a tier
	// too early is what flaps).
	UpAfter, DownAfter time.Duration
	// Cooldown is the least time between two changes.
	Cooldown time.Duration
	// RestartCost is added to UpAfter for the tiers that restart the
	// worker (the last cold start: the time nothing is served); 0 when
	// restarts are not enabled (those tiers then wait for the next cold
	// start and cost nothing now).
	RestartCost time.Duration
	// Hot and Cool are the fractions of the SLO that the p95 must reach
	// to count as pressure, and stay under to count as calm; between them
	// nothing changes (hysteresis).
	Hot, Cool float64
}

// Ladder decides the tier. It is not safe for concurrent use: one control
// loop owns it.
type Ladder struct {
	cfg       LadderConfig
	tier      Tier
	changed   time.Time
	hotSince  time.Time
	coolSince time.Time
}

// NewLadder starts at tier 0 at time now.
func NewLadder(now time.Time, cfg LadderConfig) *Ladder {
	if cfg.MaxTier <= 0 || cfg.MaxTier > MaxTier {
		cfg.MaxTier = MaxTier
	}
	if cfg.UpAfter <= 0 {
		cfg.UpAfter = 5 * time.Second
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 30 * time.Second
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 10 * time.Second
	}
	if cfg.Hot <= 0 {
		cfg.Hot = 0.9
	}
	if cfg.Cool <= 0 || cfg.Cool >= cfg.Hot {
		cfg.Cool = 0.6 * cfg.Hot / 0.9
	}
	return &Ladder{cfg: cfg, changed: now}
}

// Tier is the current tier.
func (l *Ladder) Tier() Tier { return l.tier }

// SetRestartCost updates the cost of a restart tier (the last cold start).
func (l *Ladder) SetRestartCost(d time.Duration) { l.cfg.RestartCost = d }

// Change is one step of the ladder.
type Change struct {
	From, To Tier
	Cause    string
}

// Force sets the tier (an operator's order); it counts as a change.
func (l *Ladder) Force(now time.Time, t Tier) Change {
	t = min(max(t, 0), l.cfg.MaxTier)
	c := Change{From: l.tier, To: t, Cause: "set by operator"}
	l.tier, l.changed, l.hotSince, l.coolSince = t, now, time.Time{}, time.Time{}
	return c
}

// Update reads the signals at now and returns a change when the tier
// moves one step.
func (l *Ladder) Update(now time.Time, s Signals) (Change, bool) {
	hot, cause := l.hot(s)
	cool := !hot && l.cool(s)
	switch {
	case hot:
		l.coolSince = time.Time{}
		if l.hotSince.IsZero() {
			l.hotSince = now
		}
	case cool:
		l.hotSince = time.Time{}
		if l.coolSince.IsZero() {
			l.coolSince = now
		}
		cause = "calm: " + l.describe(s)
	default:
		// In the band between cool and hot: hold the tier, restart both
		// clocks, so only sustained pressure or calm moves it.
		l.hotSince, l.coolSince = time.Time{}, time.Time{}
		return Change{}, false
	}
	if now.Sub(l.changed) < l.cfg.Cooldown {
		return Change{}, false
	}
	if hot && l.tier < l.cfg.MaxTier {
		need := l.cfg.UpAfter
		if (l.tier + 1).NeedsRestart() {
			need += l.cfg.RestartCost
		}
		if now.Sub(l.hotSince) >= need {
			return l.step(now, l.tier+1, cause), true
		}
	}
	if cool && l.tier > 0 {
		need := l.cfg.DownAfter
		if l.tier.NeedsRestart() {
			need += l.cfg.RestartCost
		}
		if now.Sub(l.coolSince) >= need {
			return l.step(now, l.tier-1, cause), true
		}
	}
	return Change{}, false
}

func (l *Ladder) step(now time.Time, to Tier, cause string) Change {
	c := Change{From: l.tier, To: to, Cause: cause}
	l.tier, l.changed, l.hotSince, l.coolSince = to, now, time.Time{}, time.Time{}
	return c
}

// hot reports pressure and says which signal shows it.
func (l *Ladder) hot(s Signals) (bool, string) {
	var why []string
	slo := s.SLO.Seconds()
	if s.Samples > 0 && slo > 0 {
		if s.P95.Seconds() >= l.cfg.Hot*slo {
			why = append(why, fmt.Sprintf("p95 %.2fs >= %.0f%% of SLO %.1fs", s.P95.Seconds(), 100*l.cfg.Hot, slo))
		}
		if s.WaitP95.Seconds() >= 0.5*slo {
			why = append(why, fmt.Sprintf("queue wait p95 %.2fs >= half the SLO", s.WaitP95.Seconds()))
		}
	}
	if s.KVUsage >= 0.95 {
		why = append(why, fmt.Sprintf("worker KV cache %.0f%% full", 100*s.KVUsage))
	}
	if s.Preempted > 0 {
		why = append(why, fmt.Sprintf("worker preempted %.0f sequences", s.Preempted))
	}
	if len(why) == 0 {
		return false, ""
	}
	return true, strings.Join(why, "; ")
}

// cool reports calm: every signal well under its pressure mark.
func (l *Ladder) cool(s Signals) bool {
	if s.Samples == 0 && s.Busy {
		return false // no completion yet, but work under way: no evidence of calm
	}
	slo := s.SLO.Seconds()
	if s.Samples > 0 && slo > 0 && (s.P95.Seconds() >= l.cfg.Cool*slo || s.WaitP95.Seconds() >= 0.2*slo) {
		return false
	}
	return s.KVUsage < 0.8 && s.Preempted == 0
}

func (l *Ladder) describe(s Signals) string {
	d := fmt.Sprintf("p95 %.2fs, queue wait p95 %.2fs over %d completions", s.P95.Seconds(), s.WaitP95.Seconds(), s.Samples)
	if s.KVUsage >= 0 {
		d += fmt.Sprintf(", KV %.0f%%", 100*s.KVUsage)
	}
	if s.Waiting >= 0 {
		d += fmt.Sprintf(", worker waiting %.0f", s.Waiting)
	}
	return d
}
