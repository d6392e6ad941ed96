package admission

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fill records n completions spread evenly over the last span before now.
func fill(m *Meter, now time.Time, n int, span, wait, service time.Duration) {
	for i := range n {
		m.Done(now.Add(-span+time.Duration(i)*span/time.Duration(n)), wait, service)
	}
}

func TestMeterRateAndQuantiles(t *testing.T) {
	m := NewMeter(t0, 10*time.Second, 0, 1024)
	now := t0.Add(time.Minute)
	fill(m, now, 50, 10*time.Second, 100*time.Millisecond, 2*time.Second)
	// Older than the window: ignored.
	m.Done(now.Add(-20*time.Second), time.Hour, time.Hour)
	s := m.Snapshot(now)
	if s.Completions != 50 || s.Rate != 5 {
		t.Fatalf("completions %d rate %v, want 50 and 5/s", s.Completions, s.Rate)
	}
	if s.ServiceP95 != 2*time.Second || s.WaitP95 != 100*time.Millisecond || s.E2EP95 != 2100*time.Millisecond {
		t.Fatalf("quantiles %+v", s)
	}
	// Before a full window has passed the rate is over the time since start.
	m2 := NewMeter(t0, 10*time.Second, 0, 16)
	fill(m2, t0.Add(2*time.Second), 4, 2*time.Second, 0, time.Second)
	if r := m2.Snapshot(t0.Add(2 * time.Second)).Rate; r != 2 {
		t.Fatalf("early rate %v, want 2/s", r)
	}
}

func TestRetryAfterFollowsDrainRate(t *testing.T) {
	m := NewMeter(t0, 10*time.Second, 0, 1024)
	p := &Policy{Meter: m, MaxRetryAfter: 30 * time.Second}
	now := t0.Add(time.Minute)
	if got := p.RetryAfter(now, 100, 3*time.Second); got != 3 {
		t.Fatalf("no measurements: %d, want the fallback 3", got)
	}
	fill(m, now, 40, 10*time.Second, 0, time.Second) // 4/s
	for _, c := range []struct{ depth, want int }{{0, 1}, {1, 1}, {10, 3}, {40, 10}, {1000, 30}} {
		if got := p.RetryAfter(now, c.depth, time.Second); got != c.want {
			t.Errorf("depth %d: Retry-After %d, want %d", c.depth, got, c.want)
		}
	}
}

func TestDeadlineAwareRejection(t *testing.T) {
	m := NewMeter(t0, 10*time.Second, 0, 1024)
	p := &Policy{Meter: m, SLO: 5 * time.Second, Deadline: true, Headroom: 1}
	now := t0.Add(time.Minute)
	busy := Load{Depth: 9, InFlight: 4, MaxInFlight: 4}
	if err := p.Check(now, busy, 0, false); err != nil {
		t.Fatalf("no measurements must admit: %v", err)
	}
	fill(m, now, 20, 10*time.Second, 0, 2*time.Second) // 2/s, service 2 s
	// Free seat: 2 s predicted.
	if err := p.Check(now, Load{InFlight: 1, MaxInFlight: 4}, 0, false); err != nil {
		t.Fatalf("free seat: %v", err)
	}
	// 3 ahead + itself at 2/s: 2 s wait + 2 s = 4 s <= 5 s.
	if err := p.Check(now, Load{Depth: 3, InFlight: 4, MaxInFlight: 4}, 0, false); err != nil {
		t.Fatalf("short queue: %v", err)
	}
	// 9 + 1 at 2/s: 5 s wait + 2 s > 5 s.
	err := p.Check(now, busy, 0, false)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Reason != ReasonDeadline || rej.Predicted != 7*time.Second {
		t.Fatalf("long queue: %v", err)
	}
	// A client's own, longer deadline admits it; a shorter one refuses.
	if err := p.Check(now, busy, 10*time.Second, false); err != nil {
		t.Fatalf("client deadline 10 s: %v", err)
	}
	if err := p.Check(now, Load{Depth: 1, InFlight: 4, MaxInFlight: 4}, time.Second, false); err == nil {
		t.Fatal("client deadline 1 s behind a queue must be refused")
	}
	// A free place is never refused for its deadline: nothing waits.
	if err := p.Check(now, Load{InFlight: 1, MaxInFlight: 4}, time.Second, false); err != nil {
		t.Fatalf("free place, short deadline: %v", err)
	}
	// With the SLO check off only a client's deadline counts.
	p.Deadline = false
	if err := p.Check(now, busy, 0, false); err != nil {
		t.Fatalf("check off: %v", err)
	}
	// The default headroom (0.9) keeps a tenth of the budget for the
	// wait's spread: 4 s predicted against 5 × 0.9 = 4.5 s passes, 5 s
	// does not.
	p.Deadline, p.Headroom = true, 0
	if err := p.Check(now, Load{Depth: 3, InFlight: 4, MaxInFlight: 4}, 0, false); err != nil {
		t.Fatalf("headroom: %v", err)
	}
	if err := p.Check(now, Load{Depth: 5, InFlight: 4, MaxInFlight: 4}, 0, false); err == nil {
		t.Fatal("5 s predicted must not pass a 4.5 s allowance")
	}
	p.Deadline = false
	// Shedding refuses whatever would wait, and nothing else.
	if err := p.Check(now, busy, 0, true); !errors.As(err, &rej) || rej.Reason != ReasonShed {
		t.Fatalf("shed: %v", err)
	}
	if err := p.Check(now, Load{InFlight: 1, MaxInFlight: 4}, 0, true); err != nil {
		t.Fatalf("shed with a free seat: %v", err)
	}
}

func TestQueueMaxFromTune(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	n, err := QueueMaxFromTune(write("ok.json", `{"profile":"x","suggested_queue_max":24,"grid":[{"suggested_queue_max":1}]}`))
	if err != nil || n != 24 {
		t.Fatalf("got %d %v, want 24", n, err)
	}
	for name, body := range map[string]string{
		"missing.json": `{"grid":[]}`, "float.json": `{"suggested_queue_max":2.5}`,
		"neg.json": `{"suggested_queue_max":-1}`, "bad.json": `{`,
	} {
		if _, err := QueueMaxFromTune(write(name, body)); err == nil || !strings.Contains(err.Error(), "queue_max_from") {
			t.Errorf("%s: %v, want an error naming queue_max_from", name, err)
		}
	}
	if _, err := QueueMaxFromTune(filepath.Join(dir, "none.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestParseWorkerMetrics(t *testing.T) {
	text := `# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.97
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 12
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 3
`
	w, err := ParseWorkerMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if w.KVUsage != 0.97 || w.Waiting != 12 || w.Preemptions != 3 || w.Running != -1 {
		t.Fatalf("%+v", w)
	}
	if _, err := ParseWorkerMetrics(strings.NewReader("not metrics {")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestGuardStaysWithinBounds(t *testing.T) {
	g := NewGuard(40 * time.Millisecond)
	slo := 5 * time.Second
	seen := map[time.Duration]bool{}
	// Pressure halves the window down to 0, room grows it back to Max,
	// never beyond either bound.
	for i := range 20 {
		w := g.Adjust(4500*time.Millisecond, slo, 10)
		seen[w] = true
		if w < 0 || w > g.Max {
			t.Fatalf("step %d: window %s out of [0, %s]", i, w, g.Max)
		}
	}
	if g.Window() != 0 {
		t.Fatalf("under pressure the window ends at %s, want 0", g.Window())
	}
	if g.Adjust(3*time.Second, slo, 10) != 0 {
		t.Fatal("between the marks the window must hold")
	}
	for range 20 {
		if w := g.Adjust(time.Second, slo, 10); w < 0 || w > g.Max {
			t.Fatalf("window %s out of bounds", w)
		}
	}
	if g.Window() != g.Max {
		t.Fatalf("with room the window ends at %s, want %s", g.Window(), g.Max)
	}
	if len(seen) < 3 {
		t.Fatalf("the window should shrink in steps: %v", seen)
	}
}

// With the grant times of the requests in flight, the prediction replays
// the places: each frees at its grant + the median service time.
func TestPredictReplaysThePlaces(t *testing.T) {
	m := NewMeter(t0, 10*time.Second, 0, 1024)
	p := &Policy{Meter: m, SLO: 5 * time.Second, Deadline: true, Headroom: 1}
	now := t0.Add(time.Minute)
	fill(m, now, 20, 10*time.Second, 0, 2*time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	granted := []time.Time{ago(time.Second), ago(time.Second), ago(500 * time.Millisecond), ago(100 * time.Millisecond)}
	for _, c := range []struct {
		depth int
		want  time.Duration
	}{
		{0, 3 * time.Second},         // first place frees in 1 s
		{2, 3500 * time.Millisecond}, // the third frees in 1.5 s
		{4, 5 * time.Second},         // a second round: 1 s + 2 s
		{5, 5 * time.Second},         // the other place freed at 1 s
		{6, 5500 * time.Millisecond}, // then 1.5 s + 2 s
		{8, 7 * time.Second},         // third round
	} {
		got, ok := p.Predict(now, Load{Depth: c.depth, InFlight: 4, MaxInFlight: 4, Granted: granted})
		if !ok || got != c.want {
			t.Errorf("depth %d: predicted %s, want %s", c.depth, got, c.want)
		}
	}
	// Overdue requests free their places now.
	old := []time.Time{ago(5 * time.Second), ago(5 * time.Second)}
	if got, _ := p.Predict(now, Load{Depth: 1, InFlight: 2, MaxInFlight: 2, Granted: old}); got != 2*time.Second {
		t.Errorf("overdue: %s, want 2s", got)
	}
	// A lowered limit: 4 in flight, 2 places; the 2 latest-ending free
	// the places.
	if got, _ := p.Predict(now, Load{Depth: 0, InFlight: 4, MaxInFlight: 2, Granted: granted}); got != 3500*time.Millisecond {
		t.Errorf("lowered limit: %s, want 3.5s", got)
	}
}
