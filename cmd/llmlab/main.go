// Command llmlab is the control plane, lab and simulated engine for serving a
// small LLM on one small GPU. Each subcommand lives in its own file and only
// parses flags before handing off to an internal package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it receives the arguments after its name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"sim":     {"run the simulated vLLM engine (a vllm serve look-alike); 'sim run' for offline virtual time", runSim},
		"serve":   {"run the gateway and supervisor (OpenAI API, queue, admission, scale-to-zero)", runServe},
		"bench":   {"open-loop load generator with streaming token metrics", runBench},
		"report":  {"results table, RPS-vs-p95 plot, latency views and a self-contained HTML page from tune and run files", runReport},
		"tune":    {"grid search over engine arguments: max RPS under the SLO per config, live workers (--predict: offline first)", runTune},
		"version": {"print the version, VCS revision and Go version (--json)", runVersion},
		"demo":    {"scale-to-zero demo: idle worker stops, load starts it; transcript, timeline JSON, plot, GIF", runDemo},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError lets a subcommand choose its exit status (exitcodes.go: 2 for
// usage errors, 3 and 4 for a run that measured nothing or missed the SLO).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "llmlab: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return exitUsage
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "llmlab %s: %v\n", args[0], ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "llmlab %s: %v\n", args[0], err)
	return exitFailure
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: llmlab <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-7s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'llmlab <command> -h' for the flags and exit codes of one command.")
	fmt.Fprintln(w, "Exit codes, the same in every command: 0 done, 1 error, 2 usage error, 3 no request\n"+
		"completed, 4 a goal not met (--fail-on-slo, --max-error-pct). docs/cli.md has the table.")
}
