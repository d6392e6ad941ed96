// Package infra holds no code, only the tests of the monitoring and
// deployment files beside it (Prometheus, Grafana, compose), run by go test
// against the real tools: promtool, docker-compose.
package infra

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/slo"
	"github.com/llmlab/llmlab/internal/testsupport"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := testsupport.NeedBinary(t, "promtool")
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var promConfigs = []string{"prometheus/prometheus.yml", "prometheus/prometheus.gpu.yml", "prometheus/prometheus.local.yml"}

func TestPrometheusConfigsValid(t *testing.T) {
	for _, f := range promConfigs {
		out := promtool(t, "check", "config", f)
		if !strings.Contains(out, "2 rule files found") {
			t.Errorf("%s: rule files not found:\n%s", f, out)
		}
	}
}

// The three configs must differ only in their targets.
func TestPrometheusConfigsDifferOnlyInTargets(t *testing.T) {
	targets := regexp.MustCompile(`(?m)^\s*- targets: .*$|^#.*$`)
	var first []byte
	for _, f := range promConfigs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = targets.ReplaceAll(b, nil)
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Errorf("%s differs from %s beyond targets and comments", f, promConfigs[0])
		}
	}
}

func TestPrometheusRulesValid(t *testing.T) {
	out := promtool(t, "check", "rules", "prometheus/rules/recording.yml", "prometheus/rules/alerts.yml")
	if strings.Count(out, "SUCCESS") != 2 {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

// Each alert fires and stays silent where it should (tests/alerts_test.yml).
func TestPrometheusAlertUnitTests(t *testing.T) {
	out := promtool(t, "test", "rules", "prometheus/tests/alerts_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rf
}

// The rules hard-code the M0 objectives; they must equal configs/slo.yaml.
func TestRulesUseTheSLO(t *testing.T) {
	spec, err := slo.Default()
	if err != nil {
		t.Fatal(err)
	}
	le := fmt.Sprintf(`le="%g"`, spec.SLO.P95E2ESeconds)
	if !slices.Contains(observability.SLOBuckets, spec.SLO.P95E2ESeconds) {
		t.Errorf("the latency objective %g s is not a bucket bound of SLOBuckets", spec.SLO.P95E2ESeconds)
	}
	anyLE := regexp.MustCompile(`le="[^"]*"`)
	budget := regexp.MustCompile(`\* ([0-9.]+)\)`)
	for _, f := range []string{"prometheus/rules/recording.yml", "prometheus/rules/alerts.yml"} {
		for _, g := range readRules(t, f).Groups {
			for _, r := range g.Rules {
				for _, m := range anyLE.FindAllString(r.Expr, -1) {
					if m != le {
						t.Errorf("%s %s%s: %s, want %s (configs/slo.yaml)", f, r.Record, r.Alert, m, le)
					}
				}
				for _, m := range budget.FindAllStringSubmatch(r.Expr, -1) {
					v, _ := strconv.ParseFloat(m[1], 64)
					want := spec.SLO.MaxErrorRate
					if strings.Contains(r.Alert, "Latency") {
						want = 0.05 // p95: 5 % may be slower
					}
					if v != want {
						t.Errorf("%s %s: budget %g, want %g", f, r.Alert, v, want)
					}
				}
			}
		}
	}
}

// histogramQuantile is Prometheus's classic histogram_quantile
// (promql/quantile.go, bucketQuantile): find the bucket the rank falls in
// and interpolate linearly inside it. It is used here only to report what
// a bucket list would have answered; the test's verdict comes from
// promtool.
func histogramQuantile(q float64, bounds []float64, cum []float64) float64 {
	total := cum[len(cum)-1]
	rank := q * total
	i := 0
	for i < len(cum)-1 && cum[i] < rank {
		i++
	}
	if i == len(bounds) { // +Inf bucket: the highest finite bound
		return bounds[len(bounds)-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = bounds[i-1], cum[i-1]
	}
	return lo + (bounds[i]-lo)*(rank-below)/(cum[i]-below)
}

// cumulative counts samples at or below each bound, then the total.
func cumulative(samples, bounds []float64) []float64 {
	cum := make([]float64, len(bounds)+1)
	for _, s := range samples {
		for i, b := range bounds {
			if s <= b {
				cum[i]++
			}
		}
	}
	cum[len(bounds)] = float64(len(samples))
	return cum
}

// The gateway's latency histogram, scraped and put through the recording
// rule llmlab:request_duration_seconds:p95_1m by promtool, gives a p95
// within 10 % of the true one for latency distributions whose p95 lies
// anywhere from 0.7 s to 8 s, while ten times as many fast 429s are
// observed beside them.
func TestScrapedP95WithinTenPercent(t *testing.T) {
	promtool := testsupport.NeedBinary(t, "promtool")
	oldBuckets := []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160}
	dists := []struct{ median, sigma float64 }{
		{0.35, 0.45}, {0.8, 0.3}, {1.2, 0.5}, {2, 0.4}, {3, 0.3}, {5, 0.25},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	var tests strings.Builder
	for i, d := range dists {
		const n = 20000
		samples := make([]float64, n)
		m := observability.NewMetrics(nil)
		ok := m.Latency.WithLabelValues("/v1/completions", observability.OutcomeOK)
		rej := m.Latency.WithLabelValues("/v1/completions", observability.OutcomeRejected)
		for j := range samples {
			samples[j] = d.median * math.Exp(d.sigma*rng.NormFloat64())
			ok.Observe(samples[j])
			for range 10 {
				rej.Observe(0.0004)
			}
		}
		sorted := slices.Clone(samples)
		slices.Sort(sorted)
		truth := sorted[int(math.Ceil(0.95*n))-1]

		series := scrapeBuckets(t, m)
		fmt.Fprintf(&tests, "  # lognormal median %g s, sigma %g: true p95 %.4f s\n", d.median, d.sigma, truth)
		fmt.Fprintf(&tests, "  - interval: 1m\n    input_series:\n")
		for _, s := range series {
			fmt.Fprintf(&tests, "      - series: '%s'\n        values: '0 %g'\n", s.name, s.value)
		}
		fmt.Fprintf(&tests, "    promql_expr_test:\n      - expr: abs(llmlab:request_duration_seconds:p95_1m / %g - 1) < bool 0.10\n        eval_time: 1m\n        exp_samples:\n          - labels: '{}'\n            value: 1\n", truth)

		est := histogramQuantile(0.95, observability.SLOBuckets, cumulative(samples, observability.SLOBuckets))
		old := histogramQuantile(0.95, oldBuckets, cumulative(samples, oldBuckets))
		t.Logf("dist %d (median %g s, sigma %g): true p95 %.3f s; SLO buckets %.3f s (%+.1f %%); old buckets %.3f s (%+.1f %%)",
			i, d.median, d.sigma, truth, est, 100*(est/truth-1), old, 100*(old/truth-1))
	}
	rules, err := filepath.Abs("prometheus/rules/recording.yml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "quantile_test.yml")
	body := "rule_files:\n  - " + rules + "\nevaluation_interval: 1m\ntests:\n" + tests.String()
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool: the scraped p95 is not within 10 %% of the true p95: %v\n%s", err, out)
	}
}

type scraped struct {
	name  string
	value float64
}

// scrapeBuckets serves m's registry in the text format, parses it back as
// Prometheus would, and returns the latency histogram's buckets as series.
func scrapeBuckets(t *testing.T, m *observability.Metrics) []scraped {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	m.Handler().ServeHTTP(rec, req)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	fam := fams["llmlab_request_duration_seconds"]
	if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatal("scrape lacks the llmlab_request_duration_seconds histogram")
	}
	var out []scraped
	for _, mt := range fam.GetMetric() {
		var lbl []string
		for _, l := range mt.GetLabel() {
			lbl = append(lbl, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		h := mt.GetHistogram()
		for _, b := range h.GetBucket() {
			out = append(out, scraped{fmt.Sprintf("llmlab_request_duration_seconds_bucket{%s,le=\"%g\"}", strings.Join(lbl, ","), b.GetUpperBound()), float64(b.GetCumulativeCount())})
		}
		out = append(out,
			scraped{fmt.Sprintf("llmlab_request_duration_seconds_bucket{%s,le=\"+Inf\"}", strings.Join(lbl, ",")), float64(h.GetSampleCount())},
			scraped{fmt.Sprintf("llmlab_request_duration_seconds_count{%s}", strings.Join(lbl, ",")), float64(h.GetSampleCount())})
	}
	return out
}
