package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmlab/llmlab/internal/runfile"
)

// Every subcommand answers -h with its usage and exit codes, exit 0,
// nothing on stdout. The commands are those `llmlab -h` lists, so a new
// one is checked without editing this test.
func TestCLIHelpListsExitCodes(t *testing.T) {
	code, _, top := runSplit(t, "-h")
	if code != 0 {
		t.Fatalf("llmlab -h: exit %d\n%s", code, top)
	}
	cmds := [][]string{{"-h"}, {"sim", "serve", "-h"}, {"sim", "run", "-h"}, {"sim", "plan", "-h"}, {"sim", "calibrate", "-h"}}
	listed := map[string]bool{}
	for _, line := range strings.Split(top, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			listed[f[0]] = true
			cmds = append(cmds, []string{f[0], "-h"})
		}
	}
	for _, want := range []string{"serve", "sim", "bench", "demo", "version"} {
		if !listed[want] {
			t.Errorf("llmlab -h does not list %q:\n%s", want, top)
		}
	}
	for _, args := range cmds {
		name := strings.Join(args, " ")
		code, stdout, stderr := runSplit(t, args...)
		if code != 0 {
			t.Errorf("llmlab %s: exit %d\n%s", name, code, stderr)
			continue
		}
		if stdout != "" {
			t.Errorf("llmlab %s: help on stdout:\n%s", name, stdout)
		}
		if !strings.Contains(stderr, "usage: llmlab") {
			t.Errorf("llmlab %s: no usage line:\n%s", name, stderr)
		}
		if !strings.Contains(stderr, "Exit codes") || !strings.Contains(stderr, "2 usage") {
			t.Errorf("llmlab %s: help does not list the exit codes (\"Exit codes: … 2 usage …\"):\n%s", name, stderr)
		}
	}
	// An unknown subcommand or flag is a usage error, exit 2, everywhere.
	for _, args := range [][]string{
		{"no-such-command"}, {"serve", "--no-such-flag"}, {"bench", "--no-such-flag"}, {"sim", "--no-such-flag"},
		{"sim", "run", "--no-such-flag"}, {"sim", "plan", "--no-such-flag"}, {"sim", "calibrate", "--no-such-flag"},
		{"version", "--no-such-flag"}, {"demo", "--no-such-flag"}, {"demo", "--idle-timeout", "0s"},
	} {
		if code, _, stderr := runSplit(t, args...); code != 2 {
			t.Errorf("llmlab %s: exit %d, want 2\n%s", strings.Join(args, " "), code, stderr)
		}
	}
}

// --json output scripts cleanly: stdout is exactly one JSON value (progress
// and messages go to stderr), for sim run, bench, sim plan and version.
func TestCLIJSONStdoutIsOneValue(t *testing.T) {
	oneJSON := func(name, stdout string) map[string]any {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(stdout))
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: stdout is not JSON: %v\n%s", name, err, stdout)
		}
		if dec.More() {
			t.Errorf("%s: stdout holds more than one JSON value:\n%s", name, stdout)
		}
		return v
	}
	dir := t.TempDir()

	code, stdout, stderr := runSplit(t, "sim", "run", "--rate", "2", "--duration", "30s", "--json", "--out", filepath.Join(dir, "sim.json"))
	if code != 0 {
		t.Fatalf("sim run --json: exit %d\n%s", code, stderr)
	}
	if v := oneJSON("sim run --json", stdout); v["kind"] != runfile.KindSimRun {
		t.Errorf("sim run --json: kind %v", v["kind"])
	}

	code, stdout, stderr = runSplit(t, "sim", "run", "--find-max", "--duration", "1m", "--json")
	if code != 0 {
		t.Fatalf("sim run --find-max --json: exit %d\n%s", code, stderr)
	}
	if v := oneJSON("sim run --find-max --json", stdout); v["kind"] != runfile.KindSimRunFindMax {
		t.Errorf("sim run --find-max --json: kind %v", v["kind"])
	}

	url := startSim(t)
	code, stdout, stderr = runSplit(t, "bench", "--url", url, "--rate", "2", "--duration", "3s", "--json", "--out", filepath.Join(dir, "bench.json"))
	if code != 0 {
		t.Fatalf("bench --json: exit %d\n%s", code, stderr)
	}
	if v := oneJSON("bench --json", stdout); v["kind"] != runfile.KindBench {
		t.Errorf("bench --json: kind %v", v["kind"])
	}

	code, stdout, stderr = runSplit(t, "bench", "--url", url, "--find-max", "--step-duration", "2s", "--find-max-steps", "2",
		"--json", "--out", filepath.Join(dir, "findmax.json"))
	if code != 0 && code != 4 {
		t.Fatalf("bench --find-max --json: exit %d\n%s", code, stderr)
	}
	if v := oneJSON("bench --find-max --json", stdout); v["kind"] != runfile.KindBenchFindMax {
		t.Errorf("bench --find-max --json: kind %v", v["kind"])
	}

	code, stdout, stderr = runSplit(t, "sim", "plan")
	if code != 0 {
		t.Fatalf("sim plan: exit %d\n%s", code, stderr)
	}
	oneJSON("sim plan", stdout)

	code, stdout, stderr = runSplit(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d\n%s", code, stderr)
	}
	if v := oneJSON("version --json", stdout); v["goversion"] == nil {
		t.Errorf("version --json: %v", v)
	}
}
