package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dashboardQueries are the queries of vLLM's official Grafana dashboard
// (examples/online_serving/prometheus_grafana/grafana.json), one per
// series a panel draws, with $model_name and $__rate_interval left to fill.
var dashboardQueries = []string{
	`histogram_quantile(0.99, sum by(le) (rate(vllm:e2e_request_latency_seconds_bucket{model_name="$model_name"}[$__rate_interval])))`,
	`rate(vllm:e2e_request_latency_seconds_sum{model_name="$model_name"}[$__rate_interval])
/
rate(vllm:e2e_request_latency_seconds_count{model_name="$model_name"}[$__rate_interval])`,
	`rate(vllm:prompt_tokens_total{model_name="$model_name"}[$__rate_interval])`,
	`rate(vllm:generation_tokens_total{model_name="$model_name"}[$__rate_interval])`,
	`histogram_quantile(0.5, sum by(le) (rate(vllm:time_per_output_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))`,
	`vllm:num_requests_running{model_name="$model_name"}`,
	`vllm:num_requests_waiting{model_name="$model_name"}`,
	`histogram_quantile(0.99, sum by(le) (rate(vllm:time_to_first_token_seconds_bucket{model_name="$model_name"}[$__rate_interval])))`,
	`vllm:gpu_cache_usage_perc{model_name="$model_name"}`,
	`sum by(le) (increase(vllm:request_prompt_tokens_bucket{model_name="$model_name"}[$__rate_interval]))`,
	`sum by(le) (increase(vllm:request_generation_tokens_bucket{model_name="$model_name"}[$__rate_interval]))`,
	`sum by(finished_reason) (increase(vllm:request_success_total{model_name="$model_name"}[$__rate_interval]))`,
	`rate(vllm:request_queue_time_seconds_sum{model_name="$model_name"}[$__rate_interval])`,
	`rate(vllm:request_prefill_time_seconds_sum{model_name="$model_name"}[$__rate_interval])`,
	`rate(vllm:request_decode_time_seconds_sum{model_name="$model_name"}[$__rate_interval])`,
	`rate(vllm:request_max_num_generation_tokens_sum{model_name="$model_name"}[$__rate_interval])`,
}

// TestGrafanaDashboardHasNoEmptyPanel scrapes a live `llmlab sim` with a
// real Prometheus and runs every query of vLLM's dashboard: each returns
// at least one number (no empty panel, no NaN from a missing series).
func TestGrafanaDashboardHasNoEmptyPanel(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed")
	}
	const model = "dash-model"
	simPort := freePort(t)
	sim := "http://127.0.0.1:" + itoa(simPort)
	p := start(t, "sim", "--port", itoa(simPort), "--startup-seconds", "0", "--served-model-name", model)
	waitHTTP(t, p, sim+"/health", 30*time.Second)

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sim\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n", simPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	promPort := freePort(t)
	pb := "http://127.0.0.1:" + itoa(promPort)
	pp := startProgram(t, nil, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+itoa(promPort))
	waitHTTP(t, pp, pb+"/-/ready", 60*time.Second)
	query := func(q string) []json.RawMessage {
		t.Helper()
		resp, err := http.Get(pb + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Value []json.RawMessage `json:"value"`
				} `json:"result"`
			} `json:"data"`
			Error string `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
			t.Fatalf("query %s: %v %s", q, err, r.Error)
		}
		var vals []json.RawMessage
		for _, s := range r.Data.Result {
			vals = append(vals, s.Value[1])
		}
		return vals
	}
	// Traffic between scrapes, so every rate() sees an increase.
	waitPromCond(t, 30*time.Second, func() bool { return len(query(`up{job="sim"} == 1`)) == 1 })
	for range 3 {
		for range 4 {
			if code, body := postJSON(t, sim+"/v1/completions", `{"prompt":"hello there","max_tokens":8,"ignore_eos":true}`); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		}
		time.Sleep(1200 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // the last scrape
	for _, q := range dashboardQueries {
		q = strings.NewReplacer("$model_name", model, "$__rate_interval", "1m").Replace(q)
		vals := query(q)
		if len(vals) == 0 {
			t.Errorf("empty panel: %s", q)
		}
		for _, v := range vals {
			if strings.Contains(string(v), "NaN") {
				t.Errorf("NaN in %s", q)
			}
		}
	}
}

// TestSimAPIKey: `llmlab sim --api-key` (or VLLM_API_KEY) guards /v1/* as
// vllm serve does, and leaves /health, /ping, /version and /tokenize open.
func TestSimAPIKey(t *testing.T) {
	for _, viaEnv := range []bool{false, true} {
		port := freePort(t)
		base := "http://127.0.0.1:" + itoa(port)
		args := []string{"sim", "--port", itoa(port), "--startup-seconds", "0"}
		var env []string
		if viaEnv {
			env = []string{"VLLM_API_KEY=s3cret"}
		} else {
			args = append(args, "--api-key", "other", "--api-key", "s3cret")
		}
		p := startProgram(t, env, binPath, args...)
		waitHTTP(t, p, base+"/health", 30*time.Second)
		do := func(method, path, key string) (int, string) {
			req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := new(strings.Builder)
			_, _ = io.Copy(b, resp.Body)
			return resp.StatusCode, b.String()
		}
		if code, body := do("POST", "/v1/completions", ""); code != 401 || body != `{"error":"Unauthorized"}` {
			t.Errorf("env=%v no key: %d %s", viaEnv, code, body)
		}
		if code, body := do("GET", "/v1/models", "wrong"); code != 401 {
			t.Errorf("env=%v wrong key: %d %s", viaEnv, code, body)
		}
		if code, body := do("POST", "/v1/completions", "s3cret"); code != 200 {
			t.Errorf("env=%v right key: %d %s", viaEnv, code, body)
		}
		for _, path := range []string{"/health", "/ping", "/version", "/metrics"} {
			if code, _ := do("GET", path, ""); code != 200 {
				t.Errorf("env=%v %s without key: %d", viaEnv, path, code)
			}
		}
		if code, body := do("POST", "/tokenize", ""); code != 200 || !strings.Contains(body, `"count":`) {
			t.Errorf("env=%v /tokenize: %d %s", viaEnv, code, body)
		}
	}
}

func waitPromCond(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
