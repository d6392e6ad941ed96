package report

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
)

// writeRows writes per-request rows as bench --save-requests does.
func writeRows(t *testing.T, path string, rows []bench.RequestRow) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	enc := json.NewEncoder(zw)
	for _, r := range rows {
		enc.Encode(r)
	}
	zw.Close()
	f.Close()
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	os.MkdirAll(runs, 0o755)
	req := filepath.Join(runs, "2026-01-01_run02_p.requests.jsonl.gz")
	var rows []bench.RequestRow
	for i := range 50 {
		rows = append(rows, bench.RequestRow{Index: i, ScheduledS: float64(i) / 5, TTFTS: 0.1 + float64(i%5)/100, E2ES: 3 + float64(i%7)/10,
			PromptTokens: 200, OutputTokens: 200, Status: "ok", Steady: i > 5})
	}
	writeRows(t, req, rows)
	tf := runfile.TuneFile{
		SchemaVersion: 1, Kind: runfile.KindTune, CreatedAt: time.Now(), Profile: "p", Engine: "sim", GPU: "g",
		SLO: runfile.SLORecord{P95E2ESeconds: 5}, Settings: runfile.TuneConfig{ProbeDurationS: 20, RepeatDurationS: 20, Repeats: 1},
		Best: 1, SuggestedQueueMax: 30,
		Points: []runfile.TunePoint{
			{Args: runfile.EngineArgs{MaxModelLen: 512, MaxNumSeqs: 64, MaxNumBatchedTokens: 4096, GPUMemoryUtilization: 0.9}, Status: runfile.PointMeasured,
				MaxRate: 6, MaxRPS: 5.9, E2EP95: 4, Probes: []runfile.TuneProbe{{Rate: 6, RPS: 5.9, E2EP95: 4, Pass: true}, {Rate: 8, RPS: 7, E2EP95: 9}}},
			{Args: runfile.EngineArgs{MaxModelLen: 512, MaxNumSeqs: 128, MaxNumBatchedTokens: 4096, GPUMemoryUtilization: 0.9}, Status: runfile.PointMeasured,
				MaxRate: 7, MaxRPS: 6.9, E2EP95: 4.5, Probes: []runfile.TuneProbe{{Rate: 7, RPS: 6.9, E2EP95: 4.5, Pass: true}},
				Repeats: []runfile.TuneRepeat{{TuneProbe: runfile.TuneProbe{Rate: 7, RPS: 6.9, E2EP95: 4.5}, RequestsFile: "elsewhere/" + filepath.Base(req)}}},
			{Args: runfile.EngineArgs{MaxModelLen: 512, MaxNumSeqs: 128, MaxNumBatchedTokens: 8192, GPUMemoryUtilization: 0.9}, Status: runfile.PointOOM,
				Reason: "ValueError: No available memory for the cache blocks"},
		},
	}
	tunes := filepath.Join(dir, "tunes")
	os.MkdirAll(tunes, 0o755)
	if err := runfile.WriteTune(filepath.Join(tunes, "2026-01-01_tune01.json"), &tf); err != nil {
		t.Fatal(err)
	}
	in, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Tunes) != 1 || len(in.Runs) != 0 {
		t.Fatalf("loaded %d tunes, %d runs", len(in.Tunes), len(in.Runs))
	}
	out := filepath.Join(dir, "report")
	sum, err := Write(in, out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Best == nil || sum.Best.Seqs != 128 || sum.Best.MaxRPS != 6.9 {
		t.Errorf("best row %+v, want the tune's best (128 seqs, 6.9)", sum.Best)
	}
	if len(sum.Files) != 8 {
		t.Errorf("files %v, want 8 (3 figures × 2, results.md, index.html)", sum.Files)
	}
	md, _ := os.ReadFile(filepath.Join(out, "results.md"))
	for _, want := range []string{"| 128 | 4096 | 512 | 0.9 | 6.90 | 4.50 | 7 | 20 | 1 | **best** — measured |", "OOM at start: ValueError", "queue_max`: 30", "the 44 successful requests of the steady window among 50"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	html, _ := os.ReadFile(filepath.Join(out, "index.html"))
	if strings.Count(string(html), `class="best"`) != 1 || strings.Count(string(html), "<svg") != 3 || !strings.Contains(string(html), "data:image/png;base64,") {
		t.Errorf("index.html: best rows %d, inline svgs %d", strings.Count(string(html), `class="best"`), strings.Count(string(html), "<svg"))
	}
	// A second report reads the same input again, not its own output.
	if in2, err := Load([]string{dir}); err != nil || len(in2.Tunes) != 1 {
		t.Errorf("reload: %v, %d tunes", err, len(in2.Tunes))
	}
}

func TestLoadRejectsOtherJSON(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"foo": 1}`), 0o644)
	if _, err := Load([]string{dir}); err == nil {
		t.Error("a JSON file that is neither a run nor a tune file was accepted")
	}
	if _, err := Load([]string{t.TempDir()}); err == nil {
		t.Error("an empty directory was accepted")
	}
}
