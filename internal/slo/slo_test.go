package slo

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultIsMilestoneZero(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if s.SLO.P95E2ESeconds != 5 || s.SLO.MaxErrorRate != 0.001 {
		t.Errorf("SLO = %+v, want p95 5 s and 0.1 %% errors", s.SLO)
	}
	if s.Workload.InputTokens != 200 || s.Workload.OutputTokens != 200 || s.Workload.Temperature != 0 {
		t.Errorf("workload = %+v, want 200/200 at temperature 0", s.Workload)
	}
	if s.Measurement.Duration != 10*time.Minute {
		t.Errorf("duration = %v, want 10m", s.Measurement.Duration)
	}
}

func TestMet(t *testing.T) {
	o := Objective{P95E2ESeconds: 5, MaxErrorRate: 0.001}
	cases := []struct {
		p95, errs float64
		want      bool
	}{
		{4.9, 0, true}, {5, 0.001, true}, {5.01, 0, false}, {1, 0.002, false},
	}
	for _, c := range cases {
		if got := o.Met(c.p95, c.errs); got != c.want {
			t.Errorf("Met(%v, %v) = %v, want %v", c.p95, c.errs, got, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	bad := map[string]string{
		"unknown key": "slo: {p95_e2e_seconds: 5, max_error_rate: 0.001, p99: 1}\nworkload: {input_tokens: 1, output_tokens: 1}\nmeasurement: {duration: 1m}",
		"zero p95":    "slo: {p95_e2e_seconds: 0}\nworkload: {input_tokens: 1, output_tokens: 1}\nmeasurement: {duration: 1m}",
		"no duration": "slo: {p95_e2e_seconds: 5}\nworkload: {input_tokens: 1, output_tokens: 1}",
		"bad yaml":    "slo: [",
	}
	for name, in := range bad {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: Parse accepted %q", name, in)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%s: empty error", name)
		}
	}
}
