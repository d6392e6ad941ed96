package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/llmlab/llmlab/internal/report"
)

// runReport is `llmlab report`: read tune and run files, write the table,
// the plots and the HTML page.
func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "experiments/report", "directory to write results.md, rps_vs_p95.{png,svg}, latency_cdf.*, ttft_tpot.* and index.html into")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab report [flags] [FILE|DIR ...]\n\n"+
			"Reads tune files and run files (default: everything under experiments/, except a report\n"+
			"directory) and writes the results table, the RPS-vs-p95 plot (one line per config, the SLO\n"+
			"line, the best point marked), a latency CDF and a TTFT/TPOT view of the best point, and a\n"+
			"self-contained index.html. Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nExit codes: 0 written; 1 the report could not be written; 2 usage error (bad flag, no input found,\nan input that cannot be read or is neither a tune nor a run file).")
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"experiments"}
	}
	in, err := report.Load(paths)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	sum, err := report.Write(in, *out)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	fmt.Fprintf(stdout, "report: %d tune file(s), %d run file(s)\n", len(in.Tunes), len(in.Runs))
	if sum.Best != nil {
		fmt.Fprintf(stdout, "best: %s — %.2f req/s at p95 %.2fs\n", sum.Best.Config, sum.Best.MaxRPS, sum.Best.E2EP95)
	}
	for _, f := range sum.Files {
		fmt.Fprintln(stdout, "wrote", f)
	}
	return nil
}
