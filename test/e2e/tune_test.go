package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/runfile"
)

// tuneArgs are the short settings every tune test uses: sim workers that
// start at once, probes of 3 s, two probes a point, one repeat.
func tuneArgs(dir string, extra ...string) []string {
	return append([]string{"tune", "--startup-seconds", "0", "--duration", "3s", "--max-steps", "2", "--start-rate", "4",
		"--repeats", "1", "--tunes-dir", filepath.Join(dir, "tunes"), "--runs-dir", filepath.Join(dir, "runs")}, extra...)
}

// runSplit runs llmlab to its end with stdout and stderr apart.
func runTimed(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("llmlab %v did not finish in %v; stderr:\n%s", args, timeout, e.String())
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// A tune on a card that runs out of memory part-way along a row: the first
// point is measured by a live worker, the next one's worker fails to start
// with vLLM's own error line (recorded as OOM), and the point needing more
// memory than that is skipped without a start. --json prints the tune file
// with the best point and an integer suggested_queue_max. --resume then
// continues a file cut short without redoing the finished point.
func TestTuneOOMSkipAndResume(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runTimed(t, 4*time.Minute, tuneArgs(dir, "--json", "--gpu-memory-utilization", "0.35",
		"--max-num-seqs", "64", "--max-num-batched-tokens", "8192,12288,16384")...)
	if code != 0 {
		t.Fatalf("tune exit %d; stderr:\n%s", code, errOut)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("--json stdout is not one JSON object: %v\n%s", err, out)
	}
	if q, ok := raw["suggested_queue_max"].(float64); !ok || q != float64(int(q)) || q < 1 {
		t.Errorf("suggested_queue_max = %v, want a positive integer", raw["suggested_queue_max"])
	}
	var tf runfile.TuneFile
	if err := json.Unmarshal([]byte(out), &tf); err != nil {
		t.Fatal(err)
	}
	if len(tf.Points) != 3 || !tf.Done {
		t.Fatalf("points %d, done %v; want 3, done", len(tf.Points), tf.Done)
	}
	p0, p1, p2 := tf.Points[0], tf.Points[1], tf.Points[2]
	if p0.Status != runfile.PointMeasured || p0.MaxRate <= 0 || len(p0.Repeats) != 1 || tf.Best != 0 {
		t.Errorf("point 0: status %s, max rate %v, %d repeats, best %d; want measured, > 0, 1, 0", p0.Status, p0.MaxRate, len(p0.Repeats), tf.Best)
	}
	if p1.Status != runfile.PointOOM || !strings.Contains(p1.Reason, "No available memory for the cache blocks") {
		t.Errorf("point 1: status %s, reason %q; want oom with the worker's ValueError line", p1.Status, p1.Reason)
	}
	if p2.Status != runfile.PointSkipped || !strings.Contains(p2.Reason, "ran out") {
		t.Errorf("point 2: status %s, reason %q; want skipped after the OOM", p2.Status, p2.Reason)
	}
	if tf.SuggestedQueueMax != p0.PeakInEngine {
		t.Errorf("suggested_queue_max %d != best point's peak in engine %d", tf.SuggestedQueueMax, p0.PeakInEngine)
	}
	for _, f := range []string{p0.SearchRunFile, p0.Repeats[0].RunFile, p0.Repeats[0].RequestsFile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("file the tune names: %v", err)
		}
	}
	if rf, err := runfile.Read(p0.Repeats[0].RunFile); err != nil || rf.Config.URL == "http://127.0.0.1:8080" || rf.Config.Rate != p0.MaxRate {
		t.Errorf("repeat run file: %v, url %q (want the worker's), rate %v (want %v)", err, rf.Config.URL, rf.Config.Rate, p0.MaxRate)
	}
	if !strings.Contains(errOut, "estimate:") || !strings.Contains(errOut, "ETA") {
		t.Errorf("no time estimate or per-probe ETA on stderr:\n%s", errOut)
	}

	// Cut the file short: the last two points not yet done.
	files, _ := filepath.Glob(filepath.Join(dir, "tunes", "*_tune*.json"))
	if len(files) != 1 {
		t.Fatalf("tune files %v, want 1", files)
	}
	cut := tf
	cut.Done = false
	cut.Points = append([]runfile.TunePoint(nil), tf.Points...)
	for i := 1; i < 3; i++ {
		cut.Points[i] = runfile.TunePoint{Args: tf.Points[i].Args, Status: runfile.PointPending}
	}
	if err := runfile.WriteTune(files[0], &cut); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runTimed(t, 2*time.Minute, "tune", "--resume", files[0], "--runs-dir", filepath.Join(dir, "runs"))
	if code != 0 {
		t.Fatalf("resume exit %d; stderr:\n%s", code, errOut)
	}
	got, err := runfile.ReadTune(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.Points[1].Status != runfile.PointOOM || got.Points[2].Status != runfile.PointSkipped {
		t.Errorf("after resume: done %v, statuses %s %s; want done, oom, skipped", got.Done, got.Points[1].Status, got.Points[2].Status)
	}
	if got.Points[0].WallS != p0.WallS || got.Points[0].SearchRunFile != p0.SearchRunFile {
		t.Errorf("resume redid the finished point: wall %v → %v, run file %s → %s", p0.WallS, got.Points[0].WallS, p0.SearchRunFile, got.Points[0].SearchRunFile)
	}
	if strings.Contains(errOut, "[1/3") {
		t.Errorf("resume touched point 1/3:\n%s", errOut)
	}
}

// Bad flags are usage errors (exit 2) and start nothing.
func TestTuneUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		tuneArgs(dir, "--max-num-seqs", "64,x"),
		tuneArgs(dir, "--duration", "0s"),
		tuneArgs(dir, "--profile", "no-such-profile"),
		{"tune", "--resume", filepath.Join(dir, "missing.json")},
	} {
		_, errOut, code := runTimed(t, time.Minute, args...)
		if code != 2 {
			t.Errorf("llmlab %v: exit %d, want 2; stderr:\n%s", args, code, errOut)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tunes")); len(ents) != 0 {
		t.Errorf("a usage error left tune files: %v", ents)
	}
}

// Ctrl-C during the second point: the tune exits 1 with the first point
// saved and the second pending, its worker gone; --resume measures only
// the second and finishes the file.
func TestTuneInterruptThenResume(t *testing.T) {
	dir := t.TempDir()
	p := start(t, tuneArgs(dir, "--repeats", "0", "--max-num-seqs", "64", "--max-num-batched-tokens", "4096,8192")...)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(p.out.String(), "[2/2") {
		if time.Now().After(deadline) {
			t.Fatalf("second point never started:\n%s", p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, time.Minute); code != 1 {
		t.Fatalf("interrupted tune: exit %d, want 1\n%s", code, p.out.String())
	}
	if !strings.Contains(p.out.String(), "resume with: llmlab tune --resume") {
		t.Errorf("no resume hint:\n%s", p.out.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tunes", "*_tune*.json"))
	if len(files) != 1 {
		t.Fatalf("tune files %v", files)
	}
	before, err := runfile.ReadTune(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if before.Done || before.Points[0].Status != runfile.PointMeasured || before.Points[1].Status != runfile.PointPending {
		t.Fatalf("after Ctrl-C: done %v, statuses %s %s; want not done, measured, pending", before.Done, before.Points[0].Status, before.Points[1].Status)
	}
	_, errOut, code := runTimed(t, 2*time.Minute, "tune", "--resume", files[0], "--runs-dir", filepath.Join(dir, "runs"))
	if code != 0 {
		t.Fatalf("resume exit %d:\n%s", code, errOut)
	}
	after, err := runfile.ReadTune(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !after.Done || after.Points[1].Status != runfile.PointMeasured || after.Points[0].WallS != before.Points[0].WallS {
		t.Errorf("after resume: done %v, point 1 %s, point 0 wall %v → %v; want done, measured, unchanged",
			after.Done, after.Points[1].Status, before.Points[0].WallS, after.Points[0].WallS)
	}
}
