package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/llmlab/llmlab/internal/observability"
)

// runVersion prints which build this is: a line, or JSON with --json (the
// same object as the gateway's GET /version). Exit 0; 2 on a usage error.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmlab version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the build information as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: llmlab version [--json]\n\nPrint the llmlab version, VCS revision and Go version.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, versionExitCodes)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b := observability.ReadBuild()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	mod := ""
	if b.Modified {
		mod = " (modified)"
	}
	_, err := fmt.Fprintf(stdout, "llmlab %s revision %s%s %s\n", b.Version, b.Revision, mod, b.GoVersion)
	return err
}
