package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The overload policies (docs/admission.md) against a real gateway and a
// real simulated worker.

// std200 is the M0 request: 200 prompt tokens (ids, exact), 200 output
// tokens.
var std200 = `{"prompt":[` + strings.TrimSuffix(strings.Repeat("1,", 200), ",") + `],"max_tokens":200,"ignore_eos":true}`

// shot is one request's end, as a client sees it.
type shot struct {
	status     int
	latency    time.Duration
	retryAfter string
	reason     string
	degraded   string
	tokens     int
	lost       string
}

func fireOne(ctx context.Context, base, body string) shot {
	t := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return shot{lost: "no answer: " + err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	s := shot{status: resp.StatusCode, latency: time.Since(t), retryAfter: resp.Header.Get("Retry-After"),
		reason: resp.Header.Get("X-LLMLab-Reason"), degraded: resp.Header.Get("X-LLMLab-Degraded")}
	if err != nil {
		s.lost = "answer cut: " + err.Error()
		return s
	}
	var r struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
		Error *struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &r) != nil {
		s.lost = "not JSON: " + string(b)
	}
	if resp.StatusCode == 200 {
		s.tokens = r.Usage.CompletionTokens
	} else if r.Error == nil || r.Error.Code != resp.StatusCode || r.Error.Message == "" {
		s.lost = "not an OpenAI error: " + string(b)
	}
	return s
}

// openLoop sends body at rate per second for d and returns every end.
func openLoop(ctx context.Context, base, body string, rate float64, d time.Duration) []shot {
	var (
		mu  sync.Mutex
		out []shot
		wg  sync.WaitGroup
	)
	every := time.Duration(float64(time.Second) / rate)
	for t0 := time.Now(); time.Since(t0) < d; {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := fireOne(ctx, base, body)
			mu.Lock()
			out = append(out, s)
			mu.Unlock()
		}()
		time.Sleep(every)
	}
	wg.Wait()
	return out
}

func p95(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(95*len(ds)+99)/100-1]
}

type overloadStatus struct {
	Overload struct {
		Tier              int     `json:"tier"`
		CompletionsPerSec float64 `json:"completions_per_second"`
		NextMaxModelLen   int     `json:"next_max_model_len"`
	} `json:"overload"`
	Worker struct {
		State       string `json:"state"`
		Transitions int    `json:"starts"`
	} `json:"worker"`
	Transitions []struct {
		From  string `json:"from"`
		To    string `json:"to"`
		Cause string `json:"cause"`
	} `json:"transitions"`
}

func overloadStatusOf(t *testing.T, base string) overloadStatus {
	t.Helper()
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st overloadStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// At three times the capacity, with deadline-aware admission on: every
// request ends in a 200 or a 429 with an integer Retry-After and a reason,
// nothing is lost, and the admitted requests' p95 is within the SLO. The
// capacity is measured here, not assumed: 4 places, closed loop.
func TestOverload3xDeadlineAdmission(t *testing.T) {
	const slo = 5 * time.Second
	_, base := startServe(t, "--max-in-flight", "4", "--queue-max", "64", "--deadline-admission", "--slo-seconds", "5")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Warm-up and capacity: 4 clients, closed loop, 3 rounds.
	t0 := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if s := fireOne(ctx, base, std200); s.status != 200 {
					t.Errorf("warm-up: %+v", s)
				}
			}
		}()
	}
	wg.Wait()
	capacity := 12 / time.Since(t0).Seconds()
	t.Logf("measured capacity %.2f req/s; sending %.2f req/s for 20 s", capacity, 3*capacity)
	shots := openLoop(ctx, base, std200, 3*capacity, 20*time.Second)

	var ok []time.Duration
	counts := map[int]int{}
	reasons := map[string]int{}
	for _, s := range shots {
		if s.lost != "" {
			t.Errorf("lost: %+v", s)
			continue
		}
		counts[s.status]++
		switch s.status {
		case 200:
			ok = append(ok, s.latency)
			if s.tokens != 200 {
				t.Errorf("answered with %d tokens, want 200", s.tokens)
			}
		case 429:
			reasons[s.reason]++
			if n, err := strconv.Atoi(s.retryAfter); err != nil || n < 1 {
				t.Errorf("429 with Retry-After %q, want an integer >= 1", s.retryAfter)
			}
		default:
			t.Errorf("status %d under overload, want only 200 and 429: %+v", s.status, s)
		}
	}
	t.Logf("statuses %v, 429 reasons %v, admitted p95 %s", counts, reasons, p95(ok))
	if counts[200] == 0 || counts[429] == 0 || reasons["deadline"] == 0 {
		t.Fatalf("3x overload: %v %v; want 200s and 429s, some refused for their deadline", counts, reasons)
	}
	if got := p95(ok); got > slo {
		t.Fatalf("p95 of admitted requests %s exceeds the SLO %s", got, slo)
	}
	if n := metric(t, base+"/metrics", `llmlab_rejected_total{reason="deadline"}`); int(n) != reasons["deadline"] {
		t.Fatalf("llmlab_rejected_total{reason=deadline} %v, clients saw %d", n, reasons["deadline"])
	}
}

// The ladder rises under sustained pressure and falls back once it is
// gone, one step at a time, without flapping; tier 1 clamps max_tokens
// and says so. The SLO is set below the service time so that ordinary
// traffic is pressure.
func TestOverloadLadderRisesAndFalls(t *testing.T) {
	p, base := startServe(t, "--degrade", "--degrade-max-tier", "1", "--slo-seconds", "1",
		"--degrade-up-after", "1s", "--degrade-down-after", "3s", "--degrade-cooldown", "1s",
		"--admission-window", "6s", "--control-interval", "200ms")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var clamped []shot
	stop := time.Now().Add(40 * time.Second)
	for time.Now().Before(stop) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := fireOne(ctx, base, std200)
				if s.status != 200 {
					t.Errorf("%+v", s)
				}
				if s.degraded != "" {
					mu.Lock()
					clamped = append(clamped, s)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(clamped) >= 3 {
			break
		}
	}
	if len(clamped) == 0 {
		t.Fatal("the tier never rose to 1 under pressure")
	}
	for _, s := range clamped {
		if s.tokens != 128 || !strings.Contains(s.degraded, "max_tokens=128") {
			t.Fatalf("clamped answer: %d tokens, header %q; want 128", s.tokens, s.degraded)
		}
	}
	if st := overloadStatusOf(t, base); st.Overload.Tier != 1 {
		t.Fatalf("/status tier %d, want 1", st.Overload.Tier)
	}
	if g := metric(t, base+"/metrics", "llmlab_degradation_tier"); g != 1 {
		t.Fatalf("llmlab_degradation_tier %v", g)
	}
	// Calm: the window empties and the tier falls back.
	deadline := time.Now().Add(30 * time.Second)
	for overloadStatusOf(t, base).Overload.Tier != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the tier did not fall back after the load stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}
	log := p.out.String()
	changes := strings.Count(log, `"msg":"degradation tier changed"`)
	if changes != 2 || !strings.Contains(log, `"cause":"p95`) || !strings.Contains(log, `"cause":"calm`) {
		t.Fatalf("want exactly two logged changes (up with its cause, then down): %d\n%s", changes, log)
	}
}

// A restart tier drains the worker first: a stream in flight when tier 2
// is ordered completes, then the worker stops and starts with the lower
// max_model_len.
func TestOverloadRestartTierDrains(t *testing.T) {
	p, base := startServe(t, "--degrade-restart")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("warm-up: %+v", o)
	}
	var ty tally
	for range 3 {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", longStream) })
	}
	waitInFlight(t, base, 3)
	resp, err := http.Post(base+"/admin/degrade?tier=2", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/admin/degrade: %d", resp.StatusCode)
	}
	if k := ty.wait(t); k["ok 200"] != 3 {
		t.Fatalf("streams in flight across the restart tier: %v, want 3 complete", k)
	}
	waitState(t, base, "READY", 30*time.Second)
	st := overloadStatusOf(t, base)
	var seq []string
	for _, tr := range st.Transitions {
		seq = append(seq, tr.From+">"+tr.To)
	}
	joined := strings.Join(seq, " ")
	if !strings.Contains(joined, "READY>DRAINING DRAINING>STOPPED STOPPED>STARTING STARTING>READY") {
		t.Fatalf("transitions %v, want a drain, a stop and a start", seq)
	}
	if st.Overload.Tier != 2 || st.Overload.NextMaxModelLen != 448 {
		t.Fatalf("tier %d next max_model_len %d", st.Overload.Tier, st.Overload.NextMaxModelLen)
	}
	if !strings.Contains(p.out.String(), `"--max-model-len","448"`) {
		t.Fatal("the restarted worker did not get --max-model-len 448")
	}
	if o := exchange(ctx, base, "/v1/completions", shortPlain); o.kind != "ok" {
		t.Fatalf("after the restart: %+v", o)
	}
}

// The micro-batching window releases requests together, at most N at once.
func TestOverloadBatchWindow(t *testing.T) {
	_, base := startServe(t, "--batch-window", "50ms", "--batch-max", "4")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ty tally
	for range 8 {
		ty.fire(func() outcome { return exchange(ctx, base, "/v1/completions", shortPlain) })
	}
	if k := ty.wait(t); k["ok"] != 8 {
		t.Fatalf("%v", k)
	}
	n := metric(t, base+"/metrics", "llmlab_batch_size_count")
	sum := metric(t, base+"/metrics", "llmlab_batch_size_sum")
	if sum != 8 || n < 2 {
		t.Fatalf("batches %v holding %v requests; want 8 requests in at least 2 batches of at most 4", n, sum)
	}
	if w := metric(t, base+"/metrics", "llmlab_batch_wait_seconds_count"); w != 8 {
		t.Fatalf("batch waits observed %v, want 8", w)
	}
}
