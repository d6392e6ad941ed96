package runfile

import (
	"math"
	"strings"
	"testing"
)

func TestSustainedRPS(t *testing.T) {
	for _, c := range []struct {
		name                     string
		n                        int64
		first, last, window, rps float64
	}{
		{"keeps up: ends spaced as arrivals", 11, 1, 2, 1, 10},
		{"backlog spreads the ends", 11, 1, 3, 1, 5},
		{"ends bunch up: capped at completed ÷ window", 11, 1, 1.5, 1, 11},
		{"one request", 1, 1, 1, 2, 0.5},
		{"no window", 5, 0, 1, 0, 0},
	} {
		if got := SustainedRPS(c.n, c.first, c.last, c.window); math.Abs(got-c.rps) > 1e-12 {
			t.Errorf("%s: %v, want %v", c.name, got, c.rps)
		}
	}
}

func TestAnyCompleted(t *testing.T) {
	run := RunFile{Results: &Results{Completed: 0}}
	if run.AnyCompleted() {
		t.Error("a run with nothing completed")
	}
	run.Results.Completed = 1
	if !run.AnyCompleted() {
		t.Error("a run with one completed")
	}
	fm := RunFile{FindMax: &FindMax{Steps: []Step{{Result: Results{}}, {Result: Results{Completed: 3}}}}}
	if !fm.AnyCompleted() || !fm.IsFindMax() {
		t.Error("a search with one step that completed requests")
	}
	fm.FindMax.Steps = fm.FindMax.Steps[:1]
	if fm.AnyCompleted() {
		t.Error("a search where no step completed any")
	}
}

// The summary tells an offline run from a live one and shows the engine.
func TestWriteSummaryOffline(t *testing.T) {
	rf := RunFile{Source: SourceOffline, Profile: "p", Config: Config{Model: "qwen2.5-0.5b", Rate: 5, DurationS: 60},
		Sim: &Sim{GPU: "g", MaxNumSeqs: 8, KVTokens: 1000}, Results: &Results{Completed: 3, Preemptions: 2, SLOMet: true}}
	var sb strings.Builder
	if err := WriteSummary(&sb, rf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"llmlab sim run (offline", "max_num_seqs 8", "2 preemptions", "): MET"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sb.String())
		}
	}
}
