package bench

import (
	"path/filepath"
	"testing"
	"time"
)

// --save-requests: every request of a run leaves one row, with the
// latencies the server gave it, and the rows read back.
func TestRequestLogRows(t *testing.T) {
	const ttft, per, out = 30 * time.Millisecond, 3 * time.Millisecond, 10
	srv := &testServer{TTFT: ttft, PerToken: per}
	url := srv.start(t)
	path := filepath.Join(t.TempDir(), "x.requests.jsonl.gz")
	log, err := CreateRequestLog(path)
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, Config{
		URL: url, Scenario: scenario(t, out), Rate: 20, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
		SLO: testSLO(5), Seed: 3, Requests: log,
	})
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadRequests(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rows)) != res.SentTotal || log.Rows() != len(rows) {
		t.Fatalf("%d rows (log says %d), want one per request sent (%d)", len(rows), log.Rows(), res.SentTotal)
	}
	steady := 0
	for _, r := range rows {
		if r.Status != "ok" || r.OutputTokens != out || r.PromptTokens != 200 {
			t.Fatalf("row %+v: want ok with %d output and 200 prompt tokens", r, out)
		}
		// The server sends token k at TTFT + k·per after the request
		// arrives: lower bounds only (the machine may add delay).
		if minE2E := (ttft + (out-1)*per).Seconds(); r.TTFTS < ttft.Seconds() || r.E2ES < minE2E || r.TPOT() <= 0 {
			t.Errorf("row %+v: want ttft ≥ %v, e2e ≥ %.3fs, tpot > 0", r, ttft, minE2E)
		}
		if r.Steady {
			steady++
			if r.ScheduledS < 0.5 {
				t.Errorf("row scheduled at %vs marked steady (warmup 0.5s)", r.ScheduledS)
			}
		}
	}
	if int64(steady) != res.Requests {
		t.Errorf("%d steady rows, want the run's steady requests %d", steady, res.Requests)
	}
	if RequestsPath("a/2026-01-01_run01_x.json") != "a/2026-01-01_run01_x.requests.jsonl.gz" {
		t.Errorf("RequestsPath: %s", RequestsPath("a/2026-01-01_run01_x.json"))
	}
}
