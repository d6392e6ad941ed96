package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/observability/dashboard"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/testsupport"
)

// load sends a light mix of requests (plain and streamed completions, chat)
// at about rps until ctx is done; wait returns once all have ended.
func load(ctx context.Context, base string, rps float64) (wait func()) {
	var wg sync.WaitGroup
	bodies := []struct{ path, body string }{
		{"/v1/completions", `{"model":"` + serveModel + `","prompt":"hello there","max_tokens":16}`},
		{"/v1/completions", `{"model":"` + serveModel + `","prompt":"hello there","max_tokens":16,"stream":true}`},
		{"/v1/chat/completions", `{"model":"` + serveModel + `","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":true}`},
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / rps))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			b := bodies[i%len(bodies)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+b.path, strings.NewReader(b.body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
	}()
	return wg.Wait
}

// promQuery runs an instant query and returns the number of series.
func promQuery(ctx context.Context, prom, expr string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, prom+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", expr, r.Error)
	}
	return len(r.Data.Result), nil
}

// startPrometheus runs the real prometheus on the repository's rules with
// the local config's jobs aimed at the given targets, scraping every second.
func startPrometheus(t *testing.T, gateway, worker string, flags ...string) string {
	t.Helper()
	bin := testsupport.NeedBinary(t, "prometheus")
	rules, err := filepath.Abs("../../infra/prometheus/rules")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("../../infra/prometheus/prometheus.local.yml")
	if err != nil {
		t.Fatal(err)
	}
	c := string(cfg)
	for old, new := range map[string]string{
		"127.0.0.1:8080": gateway, "127.0.0.1:8000": worker, "rules/*.yml": rules + "/*.yml",
		"scrape_interval: 5s": "scrape_interval: 1s", "evaluation_interval: 5s": "evaluation_interval: 1s",
	} {
		if !strings.Contains(c, old) {
			t.Fatalf("prometheus.local.yml lacks %q", old)
		}
		c = strings.ReplaceAll(c, old, new)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + itoa(freePort(t))
	out := &testsupport.SyncBuffer{}
	cmd := exec.Command(bin, append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, flags...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	waitHTTP(t, &proc{done: done, out: out}, "http://"+addr+"/-/ready", 30*time.Second)
	return "http://" + addr
}

// recordingRules lists the repository's recording rules: name and expr.
func recordingRules(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../infra/prometheus/rules/recording.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct{ Record, Expr string } `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out[r.Record] = r.Expr
		}
	}
	return out
}

// The real Prometheus scrapes `llmlab serve` and its simulated worker
// under light load, and every PromQL expression of the Grafana dashboard
// and of the recording rules returns data.
func TestObservabilityEveryQueryReturnsData(t *testing.T) {
	workerPort := freePort(t)
	_, base := startServe(t, "--worker-port", itoa(workerPort), "--worker-startup-seconds", "0.2")
	prom := startPrometheus(t, strings.TrimPrefix(base, "http://"), "127.0.0.1:"+itoa(workerPort))

	// The status names the fixed worker metrics URL even before a start.
	var st struct {
		Worker struct {
			MetricsURL string `json:"metrics_url"`
		} `json:"worker"`
	}
	resp, err := http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if want := "http://127.0.0.1:" + itoa(workerPort) + "/metrics"; st.Worker.MetricsURL != want {
		t.Fatalf("/status worker.metrics_url %q, want %q", st.Worker.MetricsURL, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	wait := load(ctx, base, 4)
	defer func() { cancel(); wait() }()
	// One bad request gives the errors-by-reason panel a series.
	if code, _ := postJSON(t, base+"/v1/completions", `{"prompt":`); code != http.StatusBadRequest {
		t.Fatalf("malformed request: %d, want 400", code)
	}

	spec, err := slo.Default()
	if err != nil {
		t.Fatal(err)
	}
	qs, err := dashboard.Queries(dashboard.Objectives{P95Seconds: spec.SLO.P95E2ESeconds, MaxErrorRate: spec.SLO.MaxErrorRate})
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{
		`up{job="llmlab-worker"} == 1`:                                  "the worker's scrape target",
		`up{job="llmlab-gateway"} == 1`:                                 "the gateway's scrape target",
		`llmlab_build_info{version!=""} == 1`:                           "build info",
		`vllm:num_requests_running{model_name="qwen2.5-0.5b-instruct"}`: "worker metrics with vLLM's labels",
	}
	for _, q := range qs {
		exprs[q.Expr] = "dashboard panel " + q.Panel
	}
	for name, expr := range recordingRules(t) {
		exprs[expr] = "recording rule " + name
		exprs[name] = "recorded series " + name
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var missing []string
		for expr, what := range exprs {
			n, err := promQuery(ctx, prom, expr)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if n == 0 {
				missing = append(missing, what+": "+expr)
			}
		}
		if len(missing) == 0 {
			t.Logf("all %d expressions return data", len(exprs))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d expressions return no data after 90 s of load:\n%s", len(missing), len(exprs), strings.Join(missing, "\n"))
		}
		time.Sleep(2 * time.Second)
	}
}

// With its native-histogram feature on, the real Prometheus scrapes the
// gateway's native histograms (protobuf) and answers quantiles from them.
func TestNativeHistogramsReachPrometheus(t *testing.T) {
	workerPort := freePort(t)
	_, base := startServe(t, "--worker-port", itoa(workerPort))
	prom := startPrometheus(t, strings.TrimPrefix(base, "http://"), "127.0.0.1:"+itoa(workerPort), "--enable-feature=native-histograms")
	ctx, cancel := context.WithCancel(context.Background())
	wait := load(ctx, base, 4)
	defer func() { cancel(); wait() }()
	exprs := []string{
		`histogram_quantile(0.95, sum(rate(llmlab_request_duration_seconds{outcome="ok"}[1m]))) > 0`,
		`histogram_count(sum(rate(llmlab_time_to_first_token_seconds[1m]))) > 0`,
		`histogram_count(sum(llmlab_queue_wait_seconds)) > 0`,
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, e := range exprs {
		for {
			n, err := promQuery(ctx, prom, e)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no data for %s", e)
			}
			time.Sleep(time.Second)
		}
	}
}

// `llmlab version` and GET /version tell the same build.
func TestVersionCommandAndEndpoint(t *testing.T) {
	out, err := exec.Command(binPath, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var cli, web map[string]any
	if err := json.Unmarshal(out, &cli); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	if cli["goversion"] == "" || cli["version"] == "" {
		t.Fatalf("version --json lacks fields: %s", out)
	}
	_, base := startServe(t)
	resp, err := http.Get(base + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&web); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "revision", "goversion"} {
		if cli[k] != web[k] {
			t.Errorf("%s: CLI %v, /version %v", k, cli[k], web[k])
		}
	}
	// And the same labels on llmlab_build_info.
	mresp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	want := fmt.Sprintf(`llmlab_build_info{goversion=%q,revision=%q,version=%q} 1`, web["goversion"], web["revision"], web["version"])
	sc := bufio.NewScanner(mresp.Body)
	for sc.Scan() {
		if sc.Text() == want {
			return
		}
	}
	t.Fatalf("/metrics lacks %s", want)
}

// Refused requests (429, answered at once) are counted apart from answered
// ones: under overload the answered requests' latency histogram holds only
// answered requests, so its quantiles cannot fall as the SLO breaks.
func TestRejectedRequestsDoNotEnterAnsweredLatency(t *testing.T) {
	_, base := startServe(t, "--max-in-flight", "1", "--queue-max", "1")
	// Warm the worker so the overload below is not a cold start.
	if code, body := postJSON(t, base+"/v1/completions", `{"prompt":"hi","max_tokens":1}`); code != 200 {
		t.Fatalf("warm-up: %d %s", code, body)
	}
	var wg sync.WaitGroup
	codes := make(chan int, 12)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(base+"/v1/completions", "application/json",
				strings.NewReader(`{"prompt":"hello","max_tokens":64,"ignore_eos":true}`))
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[429] == 0 || n[200] == 0 {
		t.Fatalf("want both answered and refused requests, got %v", n)
	}
	mu := base + "/metrics"
	ok := metric(t, mu, `llmlab_request_duration_seconds_count{outcome="ok",route="/v1/completions"}`)
	rej := metric(t, mu, `llmlab_request_duration_seconds_count{outcome="rejected",route="/v1/completions"}`)
	if ok != float64(n[200]+1) || rej != float64(n[429]) {
		t.Fatalf("histogram counts ok %g rejected %g, want %d and %d (codes %v)", ok, rej, n[200]+1, n[429], n)
	}
	// None of the answered requests was as fast as a refusal.
	if fast := metric(t, mu, `llmlab_request_duration_seconds_bucket{outcome="ok",route="/v1/completions",le="0.005"}`); fast != 0 {
		t.Fatalf("%g answered requests under 5 ms: refusals leaked into the answered histogram", fast)
	}
}
