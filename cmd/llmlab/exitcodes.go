package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/llmlab/llmlab/internal/runfile"
)

// Exit codes of the lab commands (bench, sim run; the tuner will share
// them). Documented in each command's -h and in docs/runfile.md.
const (
	exitOK        = 0 // the run ended and (with --fail-on-slo) met the SLO
	exitFailure   = 1 // an error: server unreachable, engine would not start, run file not written, interrupted
	exitUsage     = 2 // bad flags or arguments; nothing was run
	exitNoSuccess = 3 // no request of the steady window completed (in any step of a search)
	exitSLOMissed = 4 // --fail-on-slo and the SLO was not met (find-max: no rate met it)
	exitInvalid   = 5 // invalid run: the load generator fell behind (results.invalid), whatever --fail-on-slo
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
func writeJSON(w io.Writer, rf *runfile.RunFile) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rf); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
