// Package report is `llmlab report`: it reads tune files and run files
// and writes the results table (results.md), the RPS-vs-p95 plot, a latency
// CDF and a TTFT/TPOT view of the best point (PNG and SVG, gonum/plot), and
// a self-contained index.html with all of them and each run's metadata.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
)

// Tune is a tune file and where it was read from.
type Tune struct {
	Path string
	runfile.TuneFile
}

// Run is a run file and where it was read from.
type Run struct {
	Path string
	runfile.RunFile
}

// Input is everything the report draws from.
type Input struct {
	Tunes []Tune
	Runs  []Run
}

// Load reads the tune and run files named, or found (*.json, recursively)
// under the directories named. A JSON file that is neither is an error.
func Load(paths []string) (Input, error) {
	var in Input
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return in, fmt.Errorf("report input: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && filepath.Base(path) == "report" {
				return filepath.SkipDir // a report's own output
			}
			if !d.IsDir() && strings.HasSuffix(path, ".json") && !strings.HasPrefix(d.Name(), ".") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return in, fmt.Errorf("report input: %w", err)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return in, fmt.Errorf("report input: %w", err)
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return in, fmt.Errorf("report input %s: %w", f, err)
		}
		if head.Kind == runfile.KindTune {
			t, err := runfile.ReadTune(f)
			if err != nil {
				return in, err
			}
			in.Tunes = append(in.Tunes, Tune{Path: f, TuneFile: t})
			continue
		}
		rf, err := runfile.Read(f)
		if err != nil {
			return in, err
		}
		if rf.Kind == "" {
			return in, fmt.Errorf("report input %s: neither a run file nor a tune file", f)
		}
		in.Runs = append(in.Runs, Run{Path: f, RunFile: rf})
	}
	if len(in.Tunes) == 0 && len(in.Runs) == 0 {
		return in, errors.New("no tune or run files found")
	}
	return in, nil
}

// resolve finds a file a tune file names: as written (relative to where
// the tune ran), else beside the tune file's runs directory.
func resolve(tunePath, name string) (string, bool) {
	if name == "" {
		return "", false
	}
	if _, err := os.Stat(name); err == nil {
		return name, true
	}
	alt := filepath.Join(filepath.Dir(tunePath), "..", "runs", filepath.Base(name))
	if _, err := os.Stat(alt); err == nil {
		return alt, true
	}
	return "", false
}

// bestRequests reads the per-request rows of the best point's repeats of
// the main tune (steady window, all statuses).
func bestRequests(t *Tune) ([]bench.RequestRow, []string, error) {
	b, ok := t.BestPoint()
	if !ok {
		return nil, nil, nil
	}
	var rows []bench.RequestRow
	var used []string
	for _, r := range b.Repeats {
		p, ok := resolve(t.Path, r.RequestsFile)
		if !ok {
			continue
		}
		rr, err := bench.ReadRequests(p)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, rr...)
		used = append(used, p)
	}
	return rows, used, nil
}
