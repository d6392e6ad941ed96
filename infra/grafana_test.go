package infra

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	sdkdashboard "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/observability/dashboard"
	"github.com/llmlab/llmlab/internal/slo"
)

const dashboardFile = "grafana/dashboards/llmlab.json"

// The committed dashboard is what the typed definition builds; after a
// change there, run `go run ./infra/grafana/gen`.
func TestDashboardJSONUpToDate(t *testing.T) {
	spec, err := slo.Default()
	if err != nil {
		t.Fatal(err)
	}
	want, err := dashboard.JSON(dashboard.Objectives{P95Seconds: spec.SLO.P95E2ESeconds, MaxErrorRate: spec.SLO.MaxErrorRate})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go run ./infra/grafana/gen` from the repository root", dashboardFile)
	}
}

// The committed JSON reads back into the SDK's typed dashboard (panels and
// Prometheus queries as their plugins define them), the closest check of
// its shape short of a Grafana, which cannot be installed here.
func TestDashboardJSONReadsBack(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d sdkdashboard.Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the SDK cannot read %s: %v", dashboardFile, err)
	}
	panels := 0
	for _, p := range d.Panels {
		if p.Panel != nil {
			panels++
			if p.Panel.Type == "" || p.Panel.Title == nil || len(p.Panel.Targets) == 0 {
				t.Errorf("panel %+v lacks a type, title or query", p.Panel)
			}
		}
	}
	if d.Uid == nil || *d.Uid != dashboard.UID || panels < 15 {
		t.Fatalf("uid %v, %d panels", d.Uid, panels)
	}
}

// DashboardQueries returns every PromQL expression of the committed
// dashboard, by panel title.
func dashboardQueries(t testing.TB) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Datasource.UID != dashboard.DatasourceUID {
				t.Errorf("panel %q: datasource uid %q, want the provisioned %q", p.Title, tg.Datasource.UID, dashboard.DatasourceUID)
			}
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

// The panels the issue lists are all there, and the provisioning names the
// datasource uid the dashboard uses.
func TestDashboardPanelsAndProvisioning(t *testing.T) {
	qs := dashboardQueries(t)
	all := ""
	for title, exprs := range qs {
		all += title + "\n" + strings.Join(exprs, "\n") + "\n"
	}
	for _, want := range []string{
		"llmlab_queue_depth", "llmlab:queue_wait_seconds:p95_1m", "llmlab:request_duration_seconds:p99_1m",
		`llmlab_slo_objective{objective="p95_e2e_seconds"}`, "llmlab:time_to_first_token_seconds:p95_1m",
		"llmlab_requests_in_flight", "llmlab_worker_state", "llmlab_worker_cold_start_seconds_count",
		"llmlab_request_errors_total", "llmlab:requests:rate1m", "llmlab:goodput:rate1m",
		"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
		"vllm:num_preemptions_total", "llmlab:vllm_generation_tokens:rate1m",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard lacks a query on %s", want)
		}
	}
	var prov struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Datasources) != 1 || prov.Datasources[0].UID != dashboard.DatasourceUID || prov.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasource provisioning %+v does not provide uid %q", prov.Datasources, dashboard.DatasourceUID)
	}
}
