package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestStatusPageServedSelfContained(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	resp, err := http.Get(gw + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("no restrictive CSP: %q", csp)
	}
	// No external asset: nothing that loads from another origin.
	for _, bad := range []string{"http://", "https://", "//cdn", "<script src", "<link rel=\"stylesheet\""} {
		if strings.Contains(string(body), bad) {
			t.Errorf("status page contains %q", bad)
		}
	}
	// Unknown paths still get a JSON 404.
	if r, _ := post(t, gw+"/nope", "{}"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %d", r.StatusCode)
	}
}

func TestStatusCarriesPageFigures(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	for range 3 {
		if r, body := post(t, gw+"/v1/completions", `{"model":"m","prompt":"hi"}`); r.StatusCode != 200 {
			t.Fatalf("completion: %d %s", r.StatusCode, body)
		}
	}
	if r, _ := post(t, gw+"/v1/completions", `{"model":"m"}`); r.StatusCode != 400 {
		t.Fatalf("bad request: %d", r.StatusCode)
	}
	resp, err := http.Get(gw + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		SLO struct {
			P95 float64 `json:"p95_e2e_seconds"`
		} `json:"slo"`
		Transitions []struct{ From, To string } `json:"transitions"`
		Errors      []struct {
			Reason string  `json:"reason"`
			Count  float64 `json:"count"`
		} `json:"errors_by_reason"`
		Build struct {
			GoVersion string `json:"goversion"`
		} `json:"build"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.SLO.P95 != 5 || st.Build.GoVersion == "" {
		t.Errorf("slo %+v build %+v", st.SLO, st.Build)
	}
	if len(st.Transitions) < 2 || st.Transitions[0].To != "STARTING" || st.Transitions[1].To != "READY" {
		t.Errorf("transitions %+v, want STOPPED→STARTING→READY first", st.Transitions)
	}
	if len(st.Errors) != 1 || st.Errors[0].Reason != "bad_request" || st.Errors[0].Count != 1 {
		t.Errorf("errors by reason %+v", st.Errors)
	}
}

func TestVersionEndpoint(t *testing.T) {
	f := newFakeWorker(t)
	_, gw := newGateway(t, f.ts.URL, nil)
	resp, err := http.Get(gw + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "revision", "goversion"} {
		if s, _ := v[k].(string); s == "" {
			t.Errorf("/version lacks %s: %v", k, v)
		}
	}
}

func TestWorkerPortSettings(t *testing.T) {
	s := Defaults()
	if s.WorkerPort != 0 || s.WorkerHost != "127.0.0.1" {
		t.Fatalf("defaults: worker %s:%d, want 127.0.0.1 and an ephemeral port", s.WorkerHost, s.WorkerPort)
	}
	if err := s.ApplyEnv(func(k string) string {
		return map[string]string{"LLMLAB_WORKER_PORT": "8000", "LLMLAB_WORKER_HOST": "0.0.0.0"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	if s.WorkerPort != 8000 || s.WorkerHost != "0.0.0.0" || s.Validate() != nil {
		t.Fatalf("env: %s:%d %v", s.WorkerHost, s.WorkerPort, s.Validate())
	}
	for _, bad := range []func(*Settings){
		func(s *Settings) { s.WorkerPort = 70000 },
		func(s *Settings) { s.WorkerPort = -1 },
		func(s *Settings) { s.WorkerPort, s.Port, s.WorkerHost = 8080, 8080, s.Host },
		func(s *Settings) { s.WorkerHost = "" },
	} {
		s := Defaults()
		bad(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "worker_") {
			t.Errorf("settings %+v: want a worker_ error, got %v", s, err)
		}
	}
}
