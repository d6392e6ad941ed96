// Package dashboard defines the llmlab Grafana dashboard in typed Go (the
// Grafana foundation SDK) rather than hand-edited JSON. `go run
// ./infra/grafana/gen` writes infra/grafana/dashboards/llmlab.json from it;
// a test keeps the committed file equal to what this code builds, and
// another runs every query against a real Prometheus.
package dashboard

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's stable identifier; DatasourceUID is the
// provisioned Prometheus datasource (infra/grafana/provisioning).
const (
	UID           = "llmlab"
	DatasourceUID = "prometheus"
)

var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(DatasourceUID)}

// query is one PromQL target and its legend.
type query struct{ expr, legend string }

func targets(qs []query) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, q := range qs {
		b := prometheus.NewDataqueryBuilder().Expr(q.expr).RefId(string(rune('A' + i))).Datasource(ds)
		if q.legend != "" {
			b = b.LegendFormat(q.legend)
		}
		out = append(out, b)
	}
	return out
}

func thresholds(steps ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

func step(v *float64, color string) dashboard.Threshold {
	return dashboard.Threshold{Value: v, Color: color}
}

func series(title, unit string, w uint32, qs ...query) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().Title(title).Unit(unit).Span(w).Height(8).
		Datasource(ds).Targets(targets(qs)).Min(0).LineWidth(2).FillOpacity(10)
}

func single(title, unit string, q query, th *dashboard.ThresholdsConfigBuilder) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Unit(unit).Span(4).Height(4).Datasource(ds).
		Targets(targets([]query{q})).Thresholds(th).ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
}

// Objectives are the M0 SLO (configs/slo.yaml), drawn as threshold lines.
type Objectives struct {
	P95Seconds   float64
	MaxErrorRate float64
}

// Build returns the dashboard.
func Build(o Objectives) (dashboard.Dashboard, error) {
	slo := o.P95Seconds
	maxErr := o.MaxErrorRate
	sloLine := common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)

	b := dashboard.NewDashboardBuilder("llmlab").
		Uid(UID).
		Description("llmlab gateway, worker lifecycle and vLLM worker: the M0 SLO (p95 end-to-end latency, error ratio) first.").
		Tags([]string{"llmlab", "generated"}).
		Refresh("5s").
		Time("now-30m", "now").
		Timezone(common.TimeZoneBrowser).
		Editable().
		WithRow(dashboard.NewRowBuilder("Service level (answered requests; 429s counted as errors, not as latency)")).
		WithPanel(single("Requests/s", "reqps", query{"llmlab:requests:rate1m", ""}, thresholds(step(nil, "blue")))).
		WithPanel(single("Goodput/s (answered within SLO)", "reqps", query{"llmlab:goodput:rate1m", ""}, thresholds(step(nil, "green")))).
		WithPanel(single("Latency p95", "s", query{"llmlab:request_duration_seconds:p95_1m", ""},
			thresholds(step(nil, "green"), step(cog.ToPtr(0.8*slo), "orange"), step(cog.ToPtr(slo), "red")))).
		WithPanel(single("Error ratio", "percentunit", query{"llmlab:errors:ratio_rate1m", ""},
			thresholds(step(nil, "green"), step(cog.ToPtr(maxErr), "red")))).
		WithPanel(series("Latency p50 / p95 / p99 against the SLO", "s", 12,
			query{"llmlab:request_duration_seconds:p50_1m", "p50"},
			query{"llmlab:request_duration_seconds:p95_1m", "p95"},
			query{"llmlab:request_duration_seconds:p99_1m", "p99"},
			query{`max(llmlab_slo_objective{objective="p95_e2e_seconds"})`, "SLO p95"}).
			Thresholds(thresholds(step(nil, "transparent"), step(cog.ToPtr(slo), "red"))).ThresholdsStyle(sloLine)).
		WithPanel(series("Requests/s by outcome, and goodput", "reqps", 12,
			query{"llmlab:requests_by_outcome:rate1m", "{{outcome}}"},
			query{"llmlab:goodput:rate1m", "goodput"})).
		WithPanel(series("Time to first token (streams)", "s", 12,
			query{`histogram_quantile(0.5, sum by (le) (rate(llmlab_time_to_first_token_seconds_bucket[1m])))`, "p50"},
			query{"llmlab:time_to_first_token_seconds:p95_1m", "p95"}).
			Thresholds(thresholds(step(nil, "transparent"), step(cog.ToPtr(slo), "red"))).ThresholdsStyle(sloLine)).
		WithPanel(series("Errors by reason", "reqps", 12,
			query{"sum by (reason, code) (rate(llmlab_request_errors_total[1m]))", "{{reason}} ({{code}})"})).
		WithPanel(series("SLO burn: error ratio and share slower than the objective (5m)", "percentunit", 24,
			query{"llmlab:slo_errors:ratio_rate5m", "errors (objective ≤ " + fmt.Sprint(maxErr*100) + " %)"},
			query{"llmlab:slo_latency_misses:ratio_rate5m", fmt.Sprintf("slower than %g s (objective ≤ 5 %%)", slo)})).
		WithRow(dashboard.NewRowBuilder("Gateway queue")).
		WithPanel(series("Queue depth and in-flight", "short", 12,
			query{"llmlab_queue_depth", "queue depth"},
			query{"llmlab_queue_capacity", "queue capacity"},
			query{"llmlab_requests_in_flight", "in flight"},
			query{"llmlab_requests_in_flight_capacity", "in-flight capacity"})).
		WithPanel(series("Queue wait p95", "s", 12,
			query{"llmlab:queue_wait_seconds:p95_1m", "p95"})).
		WithRow(dashboard.NewRowBuilder("Worker lifecycle (scale to zero)")).
		WithPanel(statetimeline.NewPanelBuilder().Title("Worker state over time").Span(12).Height(8).Datasource(ds).
			Targets(targets([]query{{"llmlab_worker_state", "{{state}}"}})).
			Thresholds(thresholds(step(nil, "transparent"), step(cog.ToPtr(1.0), "green"))).ShowValue(common.VisibilityModeNever)).
		WithPanel(series("Cold starts and crashes", "short", 6,
			query{"increase(llmlab_worker_starts_total[5m])", "starts (5m)"},
			query{"increase(llmlab_worker_cold_start_seconds_count[5m])", "cold starts done (5m)"},
			query{"increase(llmlab_worker_crashes_total[5m])", "crashes (5m)"})).
		WithPanel(series("Cold start duration (mean)", "s", 6,
			query{"llmlab_worker_cold_start_seconds_sum / llmlab_worker_cold_start_seconds_count", "mean since start"})).
		WithRow(dashboard.NewRowBuilder("vLLM worker (its own /metrics)")).
		WithPanel(series("Running and waiting sequences", "short", 8,
			query{"sum(vllm:num_requests_running)", "running"},
			query{"sum(vllm:num_requests_waiting)", "waiting"})).
		WithPanel(series("KV cache usage", "percentunit", 8,
			query{"max(vllm:kv_cache_usage_perc)", "KV cache"}).Max(1)).
		WithPanel(series("Preemptions/s", "short", 8,
			query{"sum(rate(vllm:num_preemptions_total[1m]))", "preemptions"})).
		WithPanel(series("Tokens/s", "short", 12,
			query{"llmlab:vllm_generation_tokens:rate1m", "generated"},
			query{"llmlab:vllm_prompt_tokens:rate1m", "prompt"})).
		WithPanel(series("Worker TTFT and end-to-end p95 (vLLM's histograms)", "s", 12,
			query{"histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))", "TTFT p95"},
			query{"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1m])))", "e2e p95"}))
	return b.Build()
}

// JSON renders the dashboard as the file Grafana provisions.
func JSON(o Objectives) ([]byte, error) {
	d, err := Build(o)
	if err != nil {
		return nil, fmt.Errorf("build dashboard: %w", err)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode dashboard: %w", err)
	}
	return append(b, '\n'), nil
}

// Query is one PromQL expression of the dashboard and its panel.
type Query struct {
	Panel string
	Expr  string
}

// Queries lists every PromQL expression the dashboard runs, read back from
// its JSON (what Grafana reads).
func Queries(o Objectives) ([]Query, error) {
	b, err := JSON(o)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("read dashboard back: %w", err)
	}
	var out []Query
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Query{p.Title, t.Expr})
		}
	}
	return out, nil
}
