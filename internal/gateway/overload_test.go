package gateway

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/admission"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/testsupport"
)

func TestDeadlineHeader(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	for _, v := range []string{"soon", "-1", "0", "NaN", "1e9"} {
		req, _ := http.NewRequest(http.MethodPost, gw+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":4}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(deadlineHeader, v)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get(reasonHeader) != "bad_request" {
			t.Errorf("deadline %q: %d %q, want 400 bad_request", v, resp.StatusCode, resp.Header.Get(reasonHeader))
		}
	}
	// With no measurements nothing is predicted: a valid deadline admits.
	req, _ := http.NewRequest(http.MethodPost, gw+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"hi","max_tokens":4}`))
	req.Header.Set(deadlineHeader, "0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("valid deadline: %d", resp.StatusCode)
	}
}

// Tier 1 clamps max_tokens on the way to the worker and says so; tier 4
// sheds what would wait, with 429, a reason and an integer Retry-After.
func TestTiersClampAndShed(t *testing.T) {
	f := newFakeWorker(t)
	s, gw := newGateway(t, f.ts.URL, func(set *Settings) { set.MaxInFlight = 1 })
	if resp, _ := post(t, gw+"/admin/degrade?tier=9", ""); resp.StatusCode != 400 {
		t.Fatalf("tier 9: %d", resp.StatusCode)
	}
	if resp, _ := post(t, gw+"/admin/degrade?tier=1", ""); resp.StatusCode != 200 {
		t.Fatalf("tier 1: %d", resp.StatusCode)
	}
	resp, _ := post(t, gw+"/v1/completions", `{"model":"m","prompt":"hi","max_tokens":200,"min_tokens":200}`)
	var up map[string]any
	_ = json.Unmarshal(f.lastBody.Load().([]byte), &up)
	if resp.StatusCode != 200 || up["max_tokens"] != float64(128) || up["min_tokens"] != float64(128) || up["prompt"] != "hi" {
		t.Fatalf("tier 1: %d, worker got %v", resp.StatusCode, up)
	}
	if h := resp.Header.Get(degradedHeader); !strings.Contains(h, "max_tokens=128 (asked 200)") {
		t.Fatalf("header %q", h)
	}
	// Under the clamp: untouched, no header.
	resp, _ = post(t, gw+"/v1/completions", `{"model":"m","prompt":"hi","max_tokens":16}`)
	if resp.Header.Get(degradedHeader) != "" || !strings.Contains(string(f.lastBody.Load().([]byte)), `"max_tokens":16`) {
		t.Fatal("a request under the clamp was changed")
	}
	// Tier 4: hold the one place, then a request that would wait is shed.
	s.ctl.setTier(admission.TierShed)
	f.block = make(chan struct{})
	done := make(chan struct{})
	go func() { post(t, gw+"/v1/completions", `{"model":"m","prompt":"hi","max_tokens":4}`); close(done) }()
	testsupport.WaitFor(t, 0, func() bool { return f.running.Load() == 1 })
	resp, body := post(t, gw+"/v1/completions", `{"model":"m","prompt":"hi","max_tokens":4}`)
	close(f.block)
	<-done
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || resp.Header.Get(reasonHeader) != "shed" || err != nil || n < 1 {
		t.Fatalf("tier 4: %d %q Retry-After %q: %s", resp.StatusCode, resp.Header.Get(reasonHeader), resp.Header.Get("Retry-After"), body)
	}
	if !strings.Contains(errorOf(t, body).Message, "tier 4") {
		t.Fatalf("message %q", body)
	}
}

// Tiers 2-3 change the engine arguments of the next start; the in-flight
// limit follows the seats of the worker actually started.
func TestTierEngineArguments(t *testing.T) {
	f := newFakeWorker(t)
	s, _ := newGateway(t, f.ts.URL, func(set *Settings) { set.MaxInFlight = 3 })
	s.ctl.setTier(admission.TierFewerSeqs)
	next := *s.ctl.next.Load()
	if next.MaxModelLen != 448 || next.MaxNumSeqs != 2 {
		t.Fatalf("next engine args %+v, want max_model_len 448, max_num_seqs 2", next)
	}
	if s.disp.MaxInFlight() != 3 {
		t.Fatalf("in-flight limit %d before the worker restarted, want 3", s.disp.MaxInFlight())
	}
	s.ctl.started(next)
	if s.disp.MaxInFlight() != 2 {
		t.Fatalf("in-flight limit %d with a 2-seat worker, want 2", s.disp.MaxInFlight())
	}
	s.ctl.setTier(admission.TierNormal)
	s.ctl.started(*s.ctl.next.Load())
	if s.disp.MaxInFlight() != 3 || *s.ctl.next.Load() != testProfile("").EngineArgs {
		t.Fatal("tier 0 did not restore the limits")
	}
	// The sim's command line follows the tier.
	p := testProfile("")
	p.Engine, p.Sim = profile.EngineSim, profile.Sim{GPU: "rtx3050-4gb-laptop", ModelSpec: "qwen2.5-0.5b"}
	args := p.EngineArgs
	cmd, err := workerCommand(p, Defaults(), "/bin/llmlab", func() profile.EngineArgs { return args })
	if err != nil {
		t.Fatal(err)
	}
	args.MaxModelLen = 448
	if argv := strings.Join(cmd("127.0.0.1", 1), " "); !strings.Contains(argv, "--max-model-len 448") || !strings.HasSuffix(argv, "--host 127.0.0.1 --port 1") {
		t.Fatalf("argv %s", argv)
	}
}

func TestQueueMaxFrom(t *testing.T) {
	f := newFakeWorker(t)
	dir := t.TempDir()
	tune := filepath.Join(dir, "2026-11-30_tune01.json")
	if err := os.WriteFile(tune, []byte(`{"suggested_queue_max": 17}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := newGateway(t, f.ts.URL, func(set *Settings) { set.QueueMaxFrom = tune })
	if s.disp.QueueCap() != 17 {
		t.Fatalf("queue cap %d, want 17 from the tune file", s.disp.QueueCap())
	}
	set := Defaults()
	set.QueueMaxFrom = filepath.Join(dir, "none.json")
	if _, err := New(set, testProfile(f.ts.URL), Options{}); err == nil || !strings.Contains(err.Error(), "queue_max_from") {
		t.Fatalf("missing tune file: %v", err)
	}
}
