package e2e

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/testsupport"
)

// A tune with --predict on a card where one of two points cannot start:
// the offline ranking leaves that point out of the live measurement, the
// other is measured live. `llmlab report` turns the tune and its run files
// into results.md, the plots and index.html, which real headless chromium
// opens from disk: no console errors, not blank, no external asset, and the
// table's best row is the tune file's best point.
func TestTunePredictAndReportInChromium(t *testing.T) {
	exe := testsupport.NeedBinary(t, "chromium", "chromium-browser", "google-chrome")
	dir := t.TempDir()
	tuneOut, errOut, code := runTimed(t, 4*time.Minute, tuneArgs(dir, "--predict", "--top-k", "1", "--margin", "0", "--max-steps", "3",
		"--gpu-memory-utilization", "0.35", "--max-num-seqs", "64", "--max-num-batched-tokens", "4096,12288")...)
	if code != 0 {
		t.Fatalf("tune exit %d; stderr:\n%s", code, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "tunes", "*_tune*.json"))
	if len(files) != 1 {
		t.Fatalf("tune files %v, want 1", files)
	}
	tf, err := runfile.ReadTune(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if tf.Prediction == nil || tf.Prediction.Selected != 1 || tf.Prediction.Best != 0 || tf.Prediction.SavedSeconds <= 0 {
		t.Fatalf("prediction %+v; want 1 point selected, best 0, time saved", tf.Prediction)
	}
	if p := tf.Points[1]; p.Status != runfile.PointNotSelected || p.Predicted == nil || p.Predicted.Starts {
		t.Errorf("point 1: status %s, predicted %+v; want not_selected, predicted not to start", p.Status, p.Predicted)
	}
	if tf.Best != 0 || !tf.Prediction.Agree {
		t.Errorf("best %d, agree %v; want 0 and agreement", tf.Best, tf.Prediction.Agree)
	}
	if !strings.Contains(tuneOut, "live best == predicted best: yes") {
		t.Errorf("tune did not print the agreement:\n%s", tuneOut)
	}

	out := filepath.Join(dir, "report")
	_, errOut, code = runTimed(t, 2*time.Minute, "report", "--out", out, filepath.Join(dir, "tunes"), filepath.Join(dir, "runs"))
	if code != 0 {
		t.Fatalf("report exit %d; stderr:\n%s", code, errOut)
	}
	for _, f := range []string{"results.md", "rps_vs_p95.png", "rps_vs_p95.svg", "latency_cdf.png", "latency_cdf.svg", "ttft_tpot.png", "ttft_tpot.svg", "index.html"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	html, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if ext := regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:|//)`).Find(html); ext != nil {
		t.Errorf("index.html loads an external asset: %s", ext)
	}
	if !strings.Contains(string(html), "live worker of tune "+tf.ID) || !strings.Contains(string(html), "rtx3050-4gb-laptop") {
		t.Errorf("index.html does not give the tune's run files their engine and GPU")
	}
	md, _ := os.ReadFile(filepath.Join(out, "results.md"))
	if !strings.Contains(string(md), "**best**") || !strings.Contains(string(md), "run length") {
		t.Errorf("results.md has no best row or run length:\n%s", md)
	}

	ctx, errs := openChromium(t, exe, 90*time.Second)
	abs, _ := filepath.Abs(filepath.Join(out, "index.html"))
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+abs)); err != nil {
		t.Fatalf("open report: %v", err)
	}
	best, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("tr.best")).map((r) => r.dataset.seqs + "/" + r.dataset.batched + "/" + r.querySelector("td.rps").textContent)`))
	if err != nil {
		t.Fatalf("read page: %v", err)
	}
	bp, _ := tf.BestPoint()
	want := fmt.Sprintf("%d/%d/%.2f", bp.Args.MaxNumSeqs, bp.Args.MaxNumBatchedTokens, bp.MaxRPS)
	if len(best) != 1 || best[0] != want {
		t.Errorf("best rows %v, want exactly [%s] (the tune file's best point)", best, want)
	}
	svgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure svg").length`))
	if err != nil || svgs != 3 {
		t.Errorf("inline SVG figures: %d (%v), want 3", svgs, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if n := colours(img); n < 50 {
		t.Errorf("screenshot has %d colours: blank", n)
	}
	if e := errs.list(); len(e) > 0 {
		t.Errorf("console errors: %v", e)
	}
}

// bench --save-requests keeps one row per request beside the run file, and
// refuses runs that have no single run file to sit beside.
func TestBenchSaveRequests(t *testing.T) {
	url := startSim(t)
	dir := t.TempDir()
	code, out, errOut := runSplit(t, "bench", "--url", url, "--rate", "5", "--duration", "3s", "--runs-dir", dir, "--save-requests", "--quiet")
	if code != 0 {
		t.Fatalf("bench exit %d:\n%s\n%s", code, out, errOut)
	}
	runs, _ := filepath.Glob(filepath.Join(dir, "*_run*.json"))
	if len(runs) != 1 {
		t.Fatalf("run files %v", runs)
	}
	rf, err := runfile.Read(runs[0])
	if err != nil {
		t.Fatal(err)
	}
	rows, err := bench.ReadRequests(bench.RequestsPath(runs[0]))
	if err != nil {
		t.Fatal(err)
	}
	steady := 0
	for _, r := range rows {
		if r.Steady && r.Status == "ok" {
			steady++
		}
	}
	if int64(len(rows)) != rf.Results.SentTotal || int64(steady) != rf.Results.Completed {
		t.Errorf("%d rows (%d steady ok); run file: %d sent, %d steady completed", len(rows), steady, rf.Results.SentTotal, rf.Results.Completed)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if code, _, errOut := runSplit(t, "bench", "--url", url, "--find-max", "--save-requests"); code != 2 {
		t.Errorf("--find-max --save-requests: exit %d, want 2\n%s", code, errOut)
	}
}
