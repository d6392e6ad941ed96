package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/llmlab/llmlab/internal/gateway"
	"github.com/llmlab/llmlab/internal/observability"
	"github.com/llmlab/llmlab/internal/profile"
)

// serveGCPercent is llmlab serve's GOGC unless the environment sets one.
const serveGCPercent = 400

// runServe runs the gateway and supervisor until ctx is cancelled (SIGINT,
// SIGTERM), then drains and exits 0. Settings: flags > LLMLAB_* environment
// > the profile's gateway: section > defaults.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profileName := fs.String("profile", "", "model profile: an embedded name ("+joinNames()+") or a YAML file (env LLMLAB_PROFILE; default "+profile.DefaultName+")")
	// Every knob's flag keeps its raw text for Settings.Set, so flags,
	// environment and profile share one parser and one precedence rule.
	def := gateway.Defaults()
	vals := map[string]*knobValue{}
	for _, k := range def.Knobs() {
		v := &knobValue{isBool: k.IsBool(), list: k.IsList()}
		vals[k.Key] = v
		usage := fmt.Sprintf("%s (env %s; default %s)", k.Usage, k.Env(), k.Default())
		if t := k.Type(); t != "" {
			// flag's help shows a back-quoted word as the value's name.
			usage = fmt.Sprintf("%s (`%s`; env %s; default %s)", k.Usage, t, k.Env(), k.Default())
		}
		fs.Var(v, k.Flag(), usage)
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab serve [flags]\n\nOpenAI-compatible gateway with a scale-to-zero worker supervisor.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nGo's GOGC is %d unless the GOGC environment variable sets it (a larger heap for less\ngarbage-collection CPU per request; docs/results.md §13.3).\n", serveGCPercent)
		fmt.Fprintln(stderr, serveExitCodes)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	name := *profileName
	if name == "" {
		name = os.Getenv("LLMLAB_PROFILE")
	}
	prof, err := profile.Load(name)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	set := gateway.Defaults()
	// A managed worker inherits VLLM_API_KEY and then requires it, as
	// vllm serve does: the gateway must send it.
	set.WorkerAPIKey = os.Getenv("VLLM_API_KEY")
	if err := set.ApplyProfile(prof.Gateway); err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := set.ApplyEnv(os.Getenv); err != nil {
		return &exitError{code: 2, err: err}
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		for _, k := range set.Knobs() {
			if k.Flag() == f.Name {
				if err := set.Set(k.Key, strings.Join(vals[k.Key].vals, ",")); err != nil && flagErr == nil {
					flagErr = fmt.Errorf("--%s: %w", f.Name, err)
				}
			}
		}
	})
	if flagErr != nil {
		return &exitError{code: 2, err: flagErr}
	}
	if err := set.Validate(); err != nil {
		return &exitError{code: 2, err: err}
	}
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// The gateway allocates ~13 kB per proxied request against a live
		// heap of a few MB, so at Go's default (100) it collects every few
		// hundred requests; 400 cut its CPU per request by ~20 %
		// (docs/results.md §13.3), for a heap of up to 5× the live one
		// instead of 2×. GOGC in the environment still decides.
		debug.SetGCPercent(serveGCPercent)
	}
	log, err := observability.NewLogger(stderr, set.LogLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	srv, err := gateway.New(set, prof, gateway.Options{Logger: log, Executable: exe})
	if err != nil {
		// A profile or settings file that cannot be served is a usage
		// error, found at start rather than on the first request.
		return &exitError{code: 2, err: err}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(set.Host, strconv.Itoa(set.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	scheme := "http"
	if set.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "llmlab serve: listening on %s://%s (profile %s, engine %s)\n", scheme, ln.Addr(), prof.Name, prof.Engine)
	return srv.Run(ctx, ln)
}

// knobValue is a setting's flag: its raw text, repeatable for list knobs
// (--api-key a --api-key b), a switch for bool knobs (--keep-logs).
type knobValue struct {
	vals         []string
	isBool, list bool
}

func (v *knobValue) String() string { return "" }

func (v *knobValue) Set(s string) error {
	if v.list {
		v.vals = append(v.vals, s)
	} else {
		v.vals = []string{s}
	}
	return nil
}

func (v *knobValue) IsBoolFlag() bool { return v.isBool }

func joinNames() string {
	s := ""
	for i, n := range profile.Names() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
