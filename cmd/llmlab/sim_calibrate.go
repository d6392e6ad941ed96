package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/llmlab/llmlab/internal/sim/engine"
)

// runSimCalibrate is `llmlab sim calibrate MEASUREMENTS.yaml`: it fits a
// card's step-time and memory terms from real vLLM measurements, writes
// them as a calibration file (for --calibration, or to paste into a GPU
// spec) and prints every point's measured and fitted value.
func runSimCalibrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab sim calibrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "calibration file to write (default: MEASUREMENTS with .calibration.yaml; '-' for stdout only)")
	asJSON := fs.Bool("json", false, "print the fit (terms and every point) as JSON instead of a table")
	maxErr := fs.Float64("max-error-pct", 0, "exit 4 when any point's |error| exceeds this percentage (0: never)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab sim calibrate MEASUREMENTS.yaml [flags]\n\n"+
			"Fits the terms of a GPU (non-torch memory increase; step overhead, per-sequence cost and\n"+
			"effective bandwidth; sustained compute and frontend cost) from real vLLM measurements:\n"+
			"start-up log lines, decode ITL at batch sizes, prefill TTFT, and checks serve points by\n"+
			"replaying them in virtual time. Format and an example: docs/calibration.md and\n"+
			"configs/calibration/. Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, simCalibrateExitCodes)
	}
	// The file may come before or after the flags.
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if path == "" && fs.NArg() == 1 {
		path = fs.Arg(0)
	} else if fs.NArg() > 0 || path == "" {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("want exactly one MEASUREMENTS.yaml")}
	}
	ms, err := engine.LoadMeasurements(path)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(stderr, "fitting %d start-up, %d decode, %d prefill points; replaying %d serve points…\n",
		len(ms.Startup), len(ms.Decode), len(ms.Prefill), len(ms.Serve))
	res, err := engine.Fit(ms)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	res.Calibration.Source = fmt.Sprintf("llmlab sim calibrate %s (band %s, GPU %s)", filepath.Base(path), ms.Band, res.GPU.Name)
	if *out == "" {
		*out = strings.TrimSuffix(path, filepath.Ext(path)) + ".calibration.yaml"
	}
	if *out != "-" {
		b, err := yaml.Marshal(res.Calibration)
		if err != nil {
			return fmt.Errorf("encode calibration: %w", err)
		}
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fmt.Errorf("write calibration: %w", err)
		}
		fmt.Fprintf(stderr, "wrote %s\n", *out)
	}
	worst := 0.0
	for _, r := range res.Rows {
		worst = math.Max(worst, math.Abs(r.ErrPct))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("write fit: %w", err)
		}
	} else {
		printFit(stdout, res)
	}
	if *maxErr > 0 && worst > *maxErr {
		return &exitError{code: exitSLOMissed, err: fmt.Errorf("largest point error %.1f%% exceeds --max-error-pct %.1f", worst, *maxErr)}
	}
	return nil
}

func printFit(w io.Writer, res engine.FitResult) {
	t := res.Calibration.Terms
	v := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	fmt.Fprintf(w, "GPU %s: %.0f GB/s × %.3f = %.1f GB/s effective; %.0f TFLOP/s × %.3f = %.1f TFLOP/s sustained\n",
		res.GPU.Name, res.GPU.BandwidthGBs, v(t.BandwidthEfficiency), res.GPU.BandwidthGBs*v(t.BandwidthEfficiency),
		res.GPU.FP16TFLOPS, v(t.ComputeEfficiency), res.GPU.FP16TFLOPS*v(t.ComputeEfficiency))
	fmt.Fprintf(w, "step overhead %.2f ms, per sequence %.3f ms, frontend %.1f ms/request %.2f ms/token, non-torch %.1f MiB\n\n",
		v(t.StepOverheadS)*1e3, v(t.PerSeqS)*1e3, v(t.FrontendRequestS)*1e3, v(t.FrontendTokenS)*1e3, v(t.NonTorchIncreaseGiB)*1024)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\tpoint\tmeasured\tsim\tunit\terror")
	for _, r := range res.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%.4g\t%.4g\t%s\t%+.1f%%\n", r.Kind, r.Point, r.Measured, r.Fitted, r.Unit, r.ErrPct)
	}
	tw.Flush()
}
