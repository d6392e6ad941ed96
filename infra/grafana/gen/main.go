// Command gen writes infra/grafana/dashboards/llmlab.json from the typed
// definition in internal/observability/dashboard, with the objectives of
// configs/slo.yaml. Run from the repository root:
//
//	go run ./infra/grafana/gen
package main

import (
	"fmt"
	"os"

	"github.com/llmlab/llmlab/internal/observability/dashboard"
	"github.com/llmlab/llmlab/internal/slo"
)

const out = "infra/grafana/dashboards/llmlab.json"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	spec, err := slo.Default()
	if err != nil {
		return err
	}
	b, err := dashboard.JSON(dashboard.Objectives{P95Seconds: spec.SLO.P95E2ESeconds, MaxErrorRate: spec.SLO.MaxErrorRate})
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	return nil
}
