package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The tests in this file measure the generator itself. They take minutes
// and their figures depend on the machine, so they run only with
// LLMLAB_PERF=1, e.g.
//
//	LLMLAB_PERF=1 go test -run 'TestPerf' -v -timeout 20m ./internal/bench/
//
// The endpoint is this test binary re-executed as a separate process (so
// the generator's CPU and memory are its own), serving the test server's
// vLLM-like stream with the delays given.

const perfServeEnv = "LLMLAB_PERF_SERVE"

func skipUnlessPerf(t *testing.T) {
	t.Helper()
	if os.Getenv("LLMLAB_PERF") != "1" {
		t.Skip("performance measurement: set LLMLAB_PERF=1 (takes minutes, figures depend on the machine)")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// servePerf is the body of the re-executed server process: it prints its
// URL and serves until killed. Its env value is "TTFT,PER_TOKEN".
func servePerf(spec string) {
	var s testServer
	if a, b, ok := strings.Cut(spec, ","); ok {
		s.TTFT, _ = time.ParseDuration(a)
		s.PerToken, _ = time.ParseDuration(b)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/completions", s.complete)
	fmt.Printf("URL http://%s\n", l.Addr())
	_ = (&http.Server{Handler: mux}).Serve(l)
	os.Exit(0)
}

func startPerfServer(t *testing.T, ttft, perToken time.Duration) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// On a bigger machine, LLMLAB_PERF_SERVER_CPUS (a taskset list) puts the
	// endpoint on other cores than the generator (itself started under
	// taskset), so only the generator's own cost is measured.
	if cpus := os.Getenv("LLMLAB_PERF_SERVER_CPUS"); cpus != "" {
		cmd = exec.Command("taskset", "-c", cpus, os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s", perfServeEnv, ttft, perToken))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "URL ") {
		t.Fatalf("perf server: %q %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "URL "))
}

type perfFigures struct {
	achieved, lagP50, lagP99, lagMax float64
	ok, failed                       int64
	genErrors                        int64 // llmlab only: requests it could not send (not the server's)
	invalid                          bool
}

func benchAt(t *testing.T, url string, rate float64, d time.Duration) perfFigures {
	res, err := Run(context.Background(), Config{
		URL: url, Model: "m", Scenario: scenario(t, 4), Rate: rate, Duration: d,
		Timeout: 10 * time.Second, SLO: testSLO(5),
	})
	if err != nil {
		t.Fatal(err)
	}
	return perfFigures{res.AchievedRate, res.SendLagP50, res.SendLagP99, res.SendLagMax, res.CompletedTotal, res.FailedTotal,
		sumClasses(res.GeneratorErrorsTotal), res.Invalid}
}

// vegetaAt runs vegeta's attacker, as a library, at the same constant rate
// with the same body. vegeta stamps each result when a worker picks up the
// tick; its scheduled time is began + seq/rate, and began is the first
// result's stamp (seq 0 is due at once), so lag = stamp − that.
func vegetaAt(t *testing.T, url string, rate float64, d time.Duration) perfFigures {
	b, err := newBodyBuilder(scenario(t, 4), "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := b.body(0)
	tr := NewTransport()
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr, Timeout: 10 * time.Second}))
	targeter := vegeta.NewStaticTargeter(vegeta.Target{
		Method: http.MethodPost, URL: url + "/v1/completions", Body: body,
		Header: http.Header{"Content-Type": []string{"application/json"}},
	})
	lag := newHist()
	var (
		began            time.Time
		inWindow, ok, ko int64
	)
	for res := range atk.Attack(targeter, vegeta.ConstantPacer{Freq: int(rate), Per: time.Second}, d, "perf") {
		if res.Seq == 0 || began.IsZero() {
			began = res.Timestamp.Add(-time.Duration(float64(res.Seq) / rate * float64(time.Second)))
		}
		due := began.Add(time.Duration(float64(res.Seq) / rate * float64(time.Second)))
		recordDur(lag, res.Timestamp.Sub(due))
		if res.Timestamp.Sub(began) < d {
			inWindow++
		}
		if res.Error == "" && res.Code == http.StatusOK {
			ok++
		} else {
			ko++
		}
	}
	dd := dist(lag)
	return perfFigures{float64(inWindow) / d.Seconds(), dd.P50, dd.P99, dd.Max, ok, ko, 0, false}
}

// TestPerfGeneratorVsVegeta finds, on this machine, the highest constant
// rate each generator sustains against a fast endpoint (a 4-token stream,
// no delays) with small send lag: achieved ≥ 99 % of scheduled and send lag
// p99 ≤ 10 ms. Rates: LLMLAB_PERF_RATES (comma list), seconds per step:
// LLMLAB_PERF_SECONDS; LLMLAB_PERF_TOOLS=llmlab (or vegeta) runs one only.
func TestPerfGeneratorVsVegeta(t *testing.T) {
	skipUnlessPerf(t)
	url := startPerfServer(t, 0, 0)
	rates := []float64{250, 500, 1000, 1500, 2000, 3000, 4000}
	if s := os.Getenv("LLMLAB_PERF_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			r, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatal(err)
			}
			rates = append(rates, r)
		}
	}
	d := time.Duration(envInt("LLMLAB_PERF_SECONDS", 10)) * time.Second
	sustained := func(f perfFigures, rate float64) bool {
		return f.achieved >= 0.99*rate && f.lagP99 <= 0.010 && f.failed == 0 && !f.invalid
	}
	var maxOurs, maxVeg float64
	t.Logf("GOMAXPROCS %d, NumCPU %d, %v per step", runtime.GOMAXPROCS(0), runtime.NumCPU(), d)
	// "failed" is what the server would be charged with; "gen" counts
	// llmlab's own failures (not sent), which mark its run invalid.
	t.Logf("%-8s %-8s %10s %10s %10s %10s %8s %8s %8s", "rate", "tool", "achieved", "lag p50ms", "lag p99ms", "lag max ms", "ok", "failed", "gen")
	for _, rate := range rates {
		tools := []string{"llmlab", "vegeta"}
		if s := os.Getenv("LLMLAB_PERF_TOOLS"); s != "" {
			tools = strings.Split(s, ",")
		}
		for _, tool := range tools {
			var f perfFigures
			if tool == "llmlab" {
				f = benchAt(t, url, rate, d)
			} else {
				f = vegetaAt(t, url, rate, d)
			}
			s := sustained(f, rate)
			t.Logf("%-8.0f %-8s %10.1f %10.2f %10.2f %10.2f %8d %8d %8d %v", rate, tool, f.achieved, f.lagP50*1e3, f.lagP99*1e3, f.lagMax*1e3, f.ok, f.failed, f.genErrors, s)
			if s && tool == "llmlab" {
				maxOurs = rate
			}
			if s && tool == "vegeta" {
				maxVeg = rate
			}
		}
	}
	ratio := 0.0
	if maxVeg > 0 {
		ratio = maxOurs / maxVeg
	}
	t.Logf("highest sustained rate: llmlab bench %.0f req/s, vegeta %.0f req/s, ratio %.2f", maxOurs, maxVeg, ratio)
}

// TestPerfLongRunMemory runs LLMLAB_PERF_SECONDS (default 60) at
// LLMLAB_PERF_RATE (default 400) req/s of 50-token streams (10 ms per
// token, so ~200 requests in flight and 20k chunks/s) and reports the heap
// over time and the process's peak RSS: the heap must level off, not grow
// with the number of requests.
func TestPerfLongRunMemory(t *testing.T) {
	skipUnlessPerf(t)
	url := startPerfServer(t, 20*time.Millisecond, 10*time.Millisecond)
	d := time.Duration(envInt("LLMLAB_PERF_SECONDS", 60)) * time.Second
	rate := float64(envInt("LLMLAB_PERF_RATE", 400))
	var (
		mu      sync.Mutex
		samples []uint64
		peak    uint64
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mu.Lock()
			samples = append(samples, ms.HeapInuse)
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
		}
	}()
	sc := scenario(t, 50)
	res, err := Run(context.Background(), Config{
		URL: url, Model: "m", Scenario: sc, Rate: rate, Duration: d, Ramp: 5 * time.Second,
		Warmup: 5 * time.Second, Timeout: 30 * time.Second, SLO: testSLO(5),
	})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%v at %.0f req/s: completed %d, failed %d, achieved %.1f req/s, rps %.1f, lag p99 %.2f ms, e2e p50 %.1f ms",
		d, rate, res.CompletedTotal, res.FailedTotal, res.AchievedRate, res.RPS, res.SendLagP99*1e3, res.E2EP50*1e3)
	q := len(samples) / 4
	if q > 0 {
		t.Logf("heap in use: at 25%% %.1f MiB, 50%% %.1f MiB, 100%% %.1f MiB; peak %.1f MiB",
			mib(samples[q]), mib(samples[2*q]), mib(samples[len(samples)-1]), mib(peak))
	}
	t.Logf("peak RSS (VmHWM) of the generator process: %s", vmHWM())
	if q > 0 && samples[len(samples)-1] > 2*samples[q]+16<<20 {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB", mib(samples[q]), mib(samples[len(samples)-1]))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}
