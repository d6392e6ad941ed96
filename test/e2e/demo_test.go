package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/demo"
)

// llmlab demo with shortened durations: serve runs as a child, the worker
// goes STOPPED → STARTING → READY, serves, and goes back to STOPPED once
// idle; the timeline says so, the requests held through the start are
// marked cold, and the plot and animation are valid files. The load sends
// an API key that serve requires, so a key not passed would fail every
// request (exit 3).
func TestDemoFullCycle(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	code, stdout, stderr := runSplit(t, "demo", "--startup-seconds", "1", "--idle-timeout", "2s",
		"--rate", "2", "--load-duration", "4s", "--lead", "500ms", "--api-key", "demo-key", "--out", out, "--json",
		"--", "--max-in-flight", "3") // to serve: 8 requests over 3 places, so some queue
	if code != 0 {
		t.Fatalf("demo exit %d\nstderr:\n%s", code, stderr)
	}
	// --json: stdout is exactly the timeline, the transcript on stderr.
	var printed demo.Timeline
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&printed); err != nil {
		t.Fatalf("stdout is not the timeline JSON: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Errorf("stdout holds more than one JSON value:\n%s", stdout)
	}
	for _, want := range []string{"worker STOPPED → STARTING", "worker STARTING → READY", "→ DRAINING", "DRAINING → STOPPED", "full cycle observed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, stderr)
		}
	}

	tl, err := demo.ReadTimeline(filepath.Join(out, "timeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !tl.Cycle.Complete || printed.Cycle != tl.Cycle {
		t.Errorf("cycle %+v (printed %+v)", tl.Cycle, printed.Cycle)
	}
	// The transitions after the load began, in order, make the cycle.
	var seq []string
	for _, tr := range tl.Transitions {
		if tr.T >= tl.LoadStart {
			seq = append(seq, tr.To)
		}
	}
	if got := strings.Join(seq, " "); !strings.HasPrefix(got, "STARTING READY DRAINING STOPPED") {
		t.Errorf("transitions after the load began: %q", got)
	}
	if tl.StateAt(tl.LoadStart) != demo.StateStopped || tl.StateAt(tl.End) != demo.StateStopped {
		t.Errorf("state at load start %s, at end %s; want STOPPED both", tl.StateAt(tl.LoadStart), tl.StateAt(tl.End))
	}
	s := tl.Summary
	if s.Requests < 4 || s.Completed != s.Requests || s.Cold < 1 || s.ColdStartSeconds < 1 {
		t.Errorf("summary %+v: want every request completed, at least one cold, a cold start of ≥ 1 s", s)
	}
	// A cold request waited for the start: it took longer than the start
	// itself minus the time it was sent after the start began.
	for _, r := range tl.Requests {
		if r.Cold && r.StateAtSend == demo.StateReady || !r.Cold && r.StateAtSend != demo.StateReady {
			t.Errorf("request %+v: cold mark disagrees with the state at send", r)
		}
	}
	if s.IdleToStopSeconds < tl.Settings.IdleTimeoutSeconds {
		t.Errorf("worker stopped %.2fs after the load, before the %gs idle timeout", s.IdleToStopSeconds, tl.Settings.IdleTimeoutSeconds)
	}
	// The samples saw requests in flight (never more than serve's limit,
	// passed after --) and waiting in the queue.
	var maxQueued, maxInFlight int
	for _, smp := range tl.Samples {
		maxQueued, maxInFlight = max(maxQueued, smp.QueueDepth), max(maxInFlight, smp.InFlight)
	}
	if len(tl.Samples) < 10 || maxInFlight == 0 || maxInFlight > 3 || maxQueued == 0 {
		t.Errorf("%d samples, at most %d in flight (limit 3), %d queued", len(tl.Samples), maxInFlight, maxQueued)
	}

	checkPNG(t, filepath.Join(out, "demo.png"))
	checkSVG(t, filepath.Join(out, "demo.svg"))
	f, err := os.Open(filepath.Join(out, "demo.gif"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := gif.DecodeAll(f)
	if err != nil {
		t.Fatalf("demo.gif: %v", err)
	}
	if len(g.Image) < 2 || g.Config.Width < 100 || g.Config.Height < 100 {
		t.Errorf("demo.gif: %d frames, %dx%d", len(g.Image), g.Config.Width, g.Config.Height)
	}
	if fi, err := os.Stat(filepath.Join(out, "serve.log")); err != nil || fi.Size() == 0 {
		t.Errorf("serve.log missing or empty: %v", err)
	}
}

// A load of which nothing completes (every prompt longer than the model's
// context, refused by the gateway before the worker wakes) exits 3, and
// the worker never started.
func TestDemoNothingCompleted(t *testing.T) {
	dir := t.TempDir()
	sc := filepath.Join(dir, "too_long.yaml")
	if err := os.WriteFile(sc, []byte("name: too_long\nendpoint: completions\ninput_tokens: 600\noutput_tokens: 10\nprompt: tokens\nignore_eos: true\nstream: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "demo")
	code, stdout, stderr := runSplit(t, "demo", "--startup-seconds", "1", "--idle-timeout", "2s",
		"--rate", "2", "--load-duration", "1s", "--lead", "0s", "--scenario", sc, "--out", out)
	if code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	tl, err := demo.ReadTimeline(filepath.Join(out, "timeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tl.Summary.Completed != 0 || tl.Summary.Failed == 0 || tl.Cycle.Started {
		t.Errorf("summary %+v cycle %+v: want all failed and no start", tl.Summary, tl.Cycle)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() < 200 {
		t.Errorf("%s: %v", path, b)
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var root struct {
		XMLName xml.Name
	}
	if err := dec.Decode(&root); err != nil || root.XMLName.Local != "svg" {
		t.Fatalf("%s: root %v, err %v", path, root.XMLName, err)
	}
}
