package admission

import (
	"strings"
	"testing"
	"time"
)

func hotSig() Signals {
	return Signals{SLO: 5 * time.Second, P95: 4800 * time.Millisecond, Samples: 50, KVUsage: 0.5, Waiting: 0}
}
func coolSig() Signals {
	return Signals{SLO: 5 * time.Second, P95: time.Second, Samples: 50, KVUsage: 0.3, Waiting: 0}
}
func bandSig() Signals { // between cool (0.6 SLO) and hot (0.9 SLO)
	return Signals{SLO: 5 * time.Second, P95: 3500 * time.Millisecond, Samples: 50, KVUsage: 0.5}
}

// drive feeds sig every second for d and returns the changes.
func drive(l *Ladder, now *time.Time, d time.Duration, sig Signals) []Change {
	var out []Change
	for end := now.Add(d); now.Before(end); {
		*now = now.Add(time.Second)
		if c, ok := l.Update(*now, sig); ok {
			out = append(out, c)
		}
	}
	return out
}

func TestLadderRisesUnderPressureAndFallsAfter(t *testing.T) {
	now := t0
	l := NewLadder(now, LadderConfig{UpAfter: 5 * time.Second, DownAfter: 30 * time.Second, Cooldown: 10 * time.Second})
	up := drive(l, &now, 2*time.Minute, hotSig())
	if l.Tier() != TierShed || len(up) != 4 {
		t.Fatalf("after 2 min of pressure: tier %d, changes %v", l.Tier(), up)
	}
	for i, c := range up {
		if c.To != c.From+1 || c.Cause == "" {
			t.Fatalf("change %d: %+v; want one step up with a cause", i, c)
		}
		if i > 0 && c.To == up[i-1].To {
			t.Fatal("repeated tier")
		}
	}
	down := drive(l, &now, 4*time.Minute, coolSig())
	if l.Tier() != TierNormal || len(down) != 4 {
		t.Fatalf("after 4 min of calm: tier %d, changes %v", l.Tier(), down)
	}
	for _, c := range down {
		if c.To != c.From-1 {
			t.Fatalf("%+v: want one step down", c)
		}
	}
}

func TestLadderDoesNotFlap(t *testing.T) {
	now := t0
	l := NewLadder(now, LadderConfig{UpAfter: 5 * time.Second, DownAfter: 30 * time.Second, Cooldown: 10 * time.Second})
	// Pressure that comes and goes every 3 s never lasts the 5 s a step
	// up needs; calm never lasts 30 s.
	var changes int
	for range 40 {
		changes += len(drive(l, &now, 3*time.Second, hotSig()))
		changes += len(drive(l, &now, 3*time.Second, coolSig()))
	}
	if changes != 0 || l.Tier() != 0 {
		t.Fatalf("alternating 3 s pressure/calm moved the ladder %d times (tier %d)", changes, l.Tier())
	}
	// In the band between the marks the tier holds, whatever it is.
	drive(l, &now, 10*time.Second, hotSig())
	if l.Tier() != 1 {
		t.Fatalf("tier %d, want 1", l.Tier())
	}
	if c := drive(l, &now, 5*time.Minute, bandSig()); len(c) != 0 {
		t.Fatalf("the band moved the ladder: %v", c)
	}
	// Pressure then calm alternating at the cooldown's pace: at most one
	// change per cooldown, never two in a row within it.
	var last time.Time
	for range 20 {
		for _, sig := range []Signals{hotSig(), coolSig()} {
			for range 40 {
				now = now.Add(time.Second)
				if _, ok := l.Update(now, sig); ok {
					if !last.IsZero() && now.Sub(last) < 10*time.Second {
						t.Fatalf("two changes %s apart, cooldown 10 s", now.Sub(last))
					}
					last = now
				}
			}
		}
	}
}

func TestLadderCountsRestartCost(t *testing.T) {
	now := t0
	l := NewLadder(now, LadderConfig{UpAfter: 5 * time.Second, DownAfter: 30 * time.Second, Cooldown: 10 * time.Second, MaxTier: TierShortCtx})
	l.SetRestartCost(35 * time.Second)
	drive(l, &now, 12*time.Second, hotSig())
	if l.Tier() != TierClampTokens {
		t.Fatalf("tier %d, want 1", l.Tier())
	}
	// Tier 2 restarts the worker: pressure must last UpAfter + the cold
	// start (40 s), not 5 s.
	if c := drive(l, &now, 30*time.Second, hotSig()); len(c) != 0 {
		t.Fatalf("stepped to a restart tier after 30 s: %v", c)
	}
	if c := drive(l, &now, 15*time.Second, hotSig()); len(c) != 1 || c[0].To != TierShortCtx {
		t.Fatalf("want tier 2 once pressure outlasted the restart cost: %v", c)
	}
	// MaxTier caps it.
	drive(l, &now, 5*time.Minute, hotSig())
	if l.Tier() != TierShortCtx {
		t.Fatalf("tier %d beyond MaxTier", l.Tier())
	}
}

func TestLadderWorkerSignals(t *testing.T) {
	now := t0
	l := NewLadder(now, LadderConfig{UpAfter: time.Second, Cooldown: time.Second})
	// Latency fine, but the worker's KV cache is full and it preempts.
	sig := coolSig()
	sig.KVUsage, sig.Preempted = 0.98, 4
	c := drive(l, &now, 5*time.Second, sig)
	if len(c) == 0 || c[0].To != 1 {
		t.Fatalf("KV pressure did not raise the tier: %v", c)
	}
	if want := "KV cache 98% full"; !strings.Contains(c[0].Cause, want) || !strings.Contains(c[0].Cause, "preempted 4") {
		t.Fatalf("cause %q", c[0].Cause)
	}
	// Force is an operator's order.
	if ch := l.Force(now, 9); ch.To != TierShed || l.Tier() != TierShed {
		t.Fatalf("force: %+v", ch)
	}
}

func TestLadderNoCompletionsWhileBusyIsNotCalm(t *testing.T) {
	now := t0
	l := NewLadder(now, LadderConfig{UpAfter: time.Second, DownAfter: 3 * time.Second, Cooldown: time.Second})
	drive(l, &now, 5*time.Second, hotSig())
	if l.Tier() == 0 {
		t.Fatal("no rise")
	}
	tier := l.Tier()
	// Long requests in flight, none finished in the window: hold.
	if c := drive(l, &now, time.Minute, Signals{SLO: 5 * time.Second, Busy: true, KVUsage: -1, Waiting: -1}); len(c) != 0 {
		t.Fatalf("an empty window with work under way moved the ladder: %v", c)
	}
	// Idle: calm.
	drive(l, &now, time.Minute, Signals{SLO: 5 * time.Second, KVUsage: -1, Waiting: -1})
	if l.Tier() >= tier {
		t.Fatalf("idle did not lower the tier from %d", tier)
	}
}
