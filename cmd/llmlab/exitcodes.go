package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/llmlab/llmlab/internal/runfile"
)

// Exit codes, one meaning each across every subcommand. Documented in
// each command's -h, docs/cli.md and docs/runfile.md.
const (
	exitOK        = 0 // done (a run: ended and, with --fail-on-slo, met the SLO)
	exitFailure   = 1 // an error: server unreachable, engine would not start, file not written, interrupted
	exitUsage     = 2 // bad flags or arguments; nothing was run
	exitNoSuccess = 3 // no request completed (bench, sim run: of the steady window, in any step of a search)
	exitSLOMissed = 4 // a goal given on the command line was not met: --fail-on-slo, sim calibrate --max-error-pct
	exitInvalid   = 5 // invalid run: the load generator fell behind (results.invalid), whatever --fail-on-slo
)

// The other commands' exit-code tables for -h, in the same words.
const (
	serveExitCodes = `
Exit codes: 0 stopped by SIGINT or SIGTERM after draining; 1 error (cannot
listen, a runtime failure); 2 usage error (a flag, setting or profile that
cannot be served; nothing was started).`
	simExitCodes = `
Exit codes: 0 stopped by SIGINT or SIGTERM; 1 the engine would not start
(vLLM's error on stderr) or failed; 2 usage error.`
	simPlanExitCodes = `
Exit codes: 0 the configuration starts (plan printed); 1 it does not start
(vLLM's error on stderr); 2 usage error.`
	simCalibrateExitCodes = `
Exit codes: 0 fitted; 1 the fit failed or a file was not written; 2 usage
error; 4 a point's error exceeds --max-error-pct.`
	versionExitCodes = `
Exit codes: 0 printed; 1 stdout could not be written; 2 usage error.`
)

// exitCodesHelp is the exit-code table for -h.
const exitCodesHelp = `
Exit codes: 0 done (and the SLO met, with --fail-on-slo); 1 error (server
unreachable, engine would not start, run file not written, interrupted);
2 usage error; 3 no request of the steady window completed; 4 the SLO was
not met and --fail-on-slo was given (find-max: no rate met it); 5 invalid
run: the load generator fell behind (bench, not find-max; see "INVALID RUN").`

// runVerdict turns a finished run's record into its exit status: nil, or
// an exitError with code 3, 4 or 5.
func runVerdict(rf *runfile.RunFile, failOnSLO bool) error {
	// First: an invalid run says nothing about the server, not even that
	// nothing completed. A search is not invalid as a whole (its steps
	// are; find_max.generator_limited warns).
	if rf.FindMax == nil && rf.Results != nil && rf.Results.Invalid {
		return &exitError{code: exitInvalid, err: fmt.Errorf("invalid run, the load generator fell behind: %s", rf.Results.InvalidReason)}
	}
	if !rf.AnyCompleted() {
		return &exitError{code: exitNoSuccess, err: errors.New("no request of the steady window completed")}
	}
	if failOnSLO && !rf.SLOMet {
		what := "the run did not meet the SLO"
		if rf.IsFindMax() {
			what = "no rate tried met the SLO"
		}
		return &exitError{code: exitSLOMissed, err: fmt.Errorf("%s (--fail-on-slo)", what)}
	}
	return nil
}

// writeJSON writes rf as one indented JSON object: the run file's content,
// the machine-readable summary of --json.
func writeJSON(w io.Writer, rf *runfile.RunFile) error { return writeAnyJSON(w, rf) }

// writeAnyJSON writes v as one indented JSON object.
func writeAnyJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// parseArgs parses args: -h passes through (exit 0 after the usage), any
// other error is a usage error (the flag package has printed it and the
// usage). Positional arguments are left to the caller.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitUsage}
	}
	return nil
}

// parseFlags is parseArgs for a command that takes no positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: exitUsage, err: fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}
