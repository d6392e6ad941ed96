package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/llmlab/llmlab/internal/runfile"
)

// Row is one line of the results table: a configuration and its maximum.
type Row struct {
	Source     string // tune id or run id
	Config     string
	Seqs       int
	Batched    int
	ModelLen   int
	Util       float64
	MaxRPS     float64
	E2EP95     float64
	MaxRate    float64
	Status     string
	RunLengthS float64
	Repeats    int
	Best       bool
}

// Summary is what Write produced.
type Summary struct {
	Files []string
	// Best is the best row of the main tune (nil: none).
	Best *Row
}

// Write renders the report into dir.
func Write(in Input, dir string) (Summary, error) {
	var sum Summary
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sum, fmt.Errorf("report dir: %w", err)
	}
	main := mainTune(in.Tunes)
	var rows []Row
	for i := range in.Tunes {
		rows = append(rows, tuneRows(&in.Tunes[i], &in.Tunes[i] == main)...)
	}
	var runRows []Row
	for i := range in.Runs {
		runRows = append(runRows, runRow(&in.Runs[i]))
	}
	for i := range rows {
		if rows[i].Best {
			sum.Best = &rows[i]
		}
	}

	// Figures.
	var figs []figure
	sloP95 := 0.0
	var lines []series
	var best *plotter.XY
	bestLabel := ""
	if main != nil {
		sloP95 = main.SLO.P95E2ESeconds
		lines = tuneSeries(&main.TuneFile)
		if b, ok := main.BestPoint(); ok {
			best = &plotter.XY{X: b.MaxRPS, Y: b.E2EP95}
			bestLabel = b.Args.Label()
		}
	} else {
		for i := range in.Runs {
			r := &in.Runs[i]
			sloP95 = r.SLO.P95E2ESeconds
			lines = append(lines, runSeries(r))
		}
	}
	f, err := rpsVsP95(lines, sloP95, best, bestLabel)
	if err != nil {
		return sum, err
	}
	figs = append(figs, f)
	var reqNote string
	if main != nil {
		reqRows, used, err := bestRequests(main)
		if err != nil {
			return sum, err
		}
		if len(reqRows) > 0 {
			c, err := latencyCDF(reqRows, sloP95)
			if err != nil {
				return sum, err
			}
			v, err := ttftTPOT(reqRows)
			if err != nil {
				return sum, err
			}
			figs = append(figs, c, v)
			steady := 0
			for _, r := range reqRows {
				if r.Steady && r.Status == "ok" {
					steady++
				}
			}
			reqNote = fmt.Sprintf("Latency CDF and TTFT/TPOT view: the %d successful requests of the steady window among %d per-request rows of the best point's confirmation runs (%s).",
				steady, len(reqRows), strings.Join(used, ", "))
		} else {
			reqNote = "No per-request rows for the best point (its runs were not saved with per-request rows), so no latency CDF or TTFT/TPOT view."
		}
	}
	for _, f := range figs {
		for ext, b := range map[string][]byte{".svg": f.SVG, ".png": f.PNG} {
			p := filepath.Join(dir, f.Name+ext)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return sum, fmt.Errorf("write %s: %w", p, err)
			}
			sum.Files = append(sum.Files, p)
		}
	}

	md := markdown(in, rows, runRows, figs, reqNote)
	p := filepath.Join(dir, "results.md")
	if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
		return sum, fmt.Errorf("write %s: %w", p, err)
	}
	sum.Files = append(sum.Files, p)
	html, err := htmlPage(in, main, rows, runRows, figs, reqNote)
	if err != nil {
		return sum, err
	}
	p = filepath.Join(dir, "index.html")
	if err := os.WriteFile(p, html, 0o644); err != nil {
		return sum, fmt.Errorf("write %s: %w", p, err)
	}
	sum.Files = append(sum.Files, p)
	sort.Strings(sum.Files)
	return sum, nil
}

// mainTune is the newest tune with a best point, else the newest tune.
func mainTune(ts []Tune) *Tune {
	var m *Tune
	for i := range ts {
		t := &ts[i]
		better := m == nil ||
			(t.Best >= 0) != (m.Best >= 0) && t.Best >= 0 ||
			(t.Best >= 0) == (m.Best >= 0) && t.CreatedAt.After(m.CreatedAt)
		if better {
			m = t
		}
	}
	return m
}

func tuneRows(t *Tune, isMain bool) []Row {
	var out []Row
	for i, p := range t.Points {
		r := Row{
			Source: t.ID, Config: p.Args.Label(), Seqs: p.Args.MaxNumSeqs, Batched: p.Args.MaxNumBatchedTokens,
			ModelLen: p.Args.MaxModelLen, Util: p.Args.GPUMemoryUtilization, RunLengthS: t.Settings.ProbeDurationS,
			Repeats: len(p.Repeats), Best: isMain && i == t.Best,
		}
		if len(p.Repeats) > 0 {
			r.RunLengthS = t.Settings.RepeatDurationS
		}
		if p.Status != runfile.PointMeasured {
			r.RunLengthS = 0
		}
		switch p.Status {
		case runfile.PointMeasured:
			r.MaxRPS, r.E2EP95, r.MaxRate = p.MaxRPS, p.E2EP95, p.MaxRate
			r.Status = "measured"
			if p.MaxRate == 0 {
				r.Status = "no rate met the SLO"
			}
			if p.EndsRow {
				r.Status += "; latency blow-up ends row"
			}
		case runfile.PointOOM:
			r.Status = "OOM at start: " + p.Reason
		case runfile.PointStartFailed:
			r.Status = "did not start: " + p.Reason
		case runfile.PointFailed:
			r.Status = "failed: " + p.Error
		default:
			r.Status = p.Status
			if p.Reason != "" {
				r.Status += ": " + p.Reason
			}
		}
		out = append(out, r)
	}
	return out
}

func runRow(r *Run) Row {
	row := Row{Source: r.ID, Config: r.Kind + " " + r.Profile, RunLengthS: r.Config.DurationS, Status: "SLO not met"}
	if r.Sim != nil {
		row.Seqs, row.Batched, row.ModelLen, row.Util = r.Sim.MaxNumSeqs, r.Sim.MaxNumBatchedTokens, r.Sim.MaxModelLen, r.Sim.GPUMemoryUtilization
	}
	if r.FindMax != nil {
		row.MaxRate, row.MaxRPS, row.RunLengthS = r.FindMax.MaxRate, r.FindMax.MaxRPS, r.FindMax.StepDurationS
	} else if r.Results != nil {
		row.MaxRate, row.MaxRPS = r.Config.Rate, r.Results.RPS
	}
	if r.Results != nil {
		row.E2EP95 = r.Results.E2EP95
	}
	if r.SLOMet {
		row.Status = "SLO met"
	}
	return row
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func markdown(in Input, rows, runRows []Row, figs []figure, reqNote string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# llmlab results\n\nGenerated %s by `llmlab report` from %d tune file(s) and %d run file(s).\n\n",
		time.Now().UTC().Format(time.RFC3339), len(in.Tunes), len(in.Runs))
	for i := range in.Tunes {
		t := &in.Tunes[i]
		s := t.Settings
		kind := "live sim worker"
		if t.Engine != "sim" {
			kind = "live " + t.Engine + " worker"
		}
		fmt.Fprintf(&b, "## Tune %s (profile %s, %s, model %s, GPU %s)\n\n", t.ID, t.Profile, kind, t.Model, orDash(t.GPU))
		fmt.Fprintf(&b, "SLO: p95 end-to-end latency ≤ %.3g s and error rate ≤ %.3g %%. Search probes of %g s; "+
			"%d confirmation run(s) of %g s at each point's max rate, figure = their median. Calibration: %s.\n\n",
			t.SLO.P95E2ESeconds, 100*t.SLO.MaxErrorRate, s.ProbeDurationS, s.Repeats, s.RepeatDurationS, calibration(t))
		b.WriteString("| max_num_seqs | max_num_batched_tokens | max_model_len | util | max RPS | p95 e2e (s) | max rate (req/s) | run length (s) | repeats | status |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range rows {
			if r.Source != t.ID {
				continue
			}
			st := mdEscape(r.Status)
			if r.Best {
				st = "**best** — " + st
			}
			fmt.Fprintf(&b, "| %d | %d | %d | %g | %s | %s | %s | %s | %d | %s |\n", r.Seqs, r.Batched, r.ModelLen, r.Util,
				num(r.MaxRPS, "%.2f"), num(r.E2EP95, "%.2f"), num(r.MaxRate, "%.3g"), num(r.RunLengthS, "%g"), r.Repeats, st)
		}
		if bp, ok := t.BestPoint(); ok {
			fmt.Fprintf(&b, "\nBest point: **%s** — %.2f req/s sustained at p95 %.2f s. Suggested `queue_max`: %d.\n",
				bp.Args.Label(), bp.MaxRPS, bp.E2EP95, t.SuggestedQueueMax)
		} else {
			b.WriteString("\nNo point met the SLO.\n")
		}
		if pr := t.Prediction; pr != nil {
			fmt.Fprintf(&b, "Predicted offline first: %d of %d points measured live, ~%.0f s of live time saved; live best == predicted best: %v.\n",
				pr.Selected, len(t.Points), pr.SavedSeconds, pr.Agree)
		}
		b.WriteString("\n")
	}
	if len(runRows) > 0 {
		b.WriteString("## Run files\n\n| run | kind and profile | source | max RPS | p95 e2e (s) | rate (req/s) | run length (s) | SLO |\n|---|---|---|---:|---:|---:|---:|---|\n")
		for i, r := range runRows {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %g | %s |\n", r.Source, mdEscape(r.Config), in.Runs[i].Source,
				num(r.MaxRPS, "%.2f"), num(r.E2EP95, "%.2f"), num(r.MaxRate, "%.3g"), r.RunLengthS, r.Status)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Figures\n\n")
	for _, f := range figs {
		fmt.Fprintf(&b, "![%s](%s.svg) ([PNG](%s.png))\n\n", f.Title, f.Name, f.Name)
	}
	if reqNote != "" {
		b.WriteString(reqNote + "\n")
	}
	return b.String()
}

// calibration names a sim tune's step-time calibration: a file, or the
// built-in one (docs/calibration.md).
func calibration(t *Tune) string {
	switch {
	case t.Engine != "sim":
		return "– (real engine)"
	case t.Calibration != "":
		return t.Calibration
	}
	return "built-in (docs/calibration.md)"
}

func num(v float64, f string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf(f, v)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// htmlFigure is a figure inlined: its SVG markup, and its PNG as a data URL.
type htmlFigure struct {
	Name, Title string
	SVG         template.HTML
	PNG         template.URL
}

func htmlPage(in Input, main *Tune, rows, runRows []Row, figs []figure, reqNote string) ([]byte, error) {
	var hf []htmlFigure
	for _, f := range figs {
		svg := string(f.SVG)
		if i := strings.Index(svg, "<svg"); i > 0 {
			svg = svg[i:] // drop the XML prolog: inline SVG takes the element alone
		}
		hf = append(hf, htmlFigure{Name: f.Name, Title: f.Title, SVG: template.HTML(svg),
			PNG: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(f.PNG))})
	}
	// A run file a tune wrote gets its engine, GPU and engine args from
	// the tune's point (a live run file records only the load).
	owner := map[string]func(*runMeta){}
	for i := range in.Tunes {
		t := &in.Tunes[i]
		for _, pt := range t.Points {
			set := func(m *runMeta) {
				m.Engine = t.Engine + " (live worker of tune " + t.ID + ")"
				m.EngineArgs = pt.Args.Label()
				if t.Engine == "sim" {
					m.GPU, m.Calibrated = orDash(t.GPU), calibration(t)
				}
			}
			names := []string{pt.SearchRunFile}
			for _, r := range pt.Repeats {
				names = append(names, r.RunFile)
			}
			for _, n := range names {
				if n != "" {
					owner[strings.TrimSuffix(filepath.Base(n), ".json")] = set
				}
			}
		}
	}
	var runs []runMeta
	for i := range in.Runs {
		m := newRunMeta(&in.Runs[i], runRows[i])
		if set, ok := owner[in.Runs[i].ID]; ok {
			set(&m)
		}
		runs = append(runs, m)
	}
	data := map[string]any{
		"Generated": time.Now().UTC().Format(time.RFC3339), "Tunes": in.Tunes, "Rows": rows, "Runs": runs,
		"Figures": hf, "ReqNote": reqNote, "Main": main,
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render index.html: %w", err)
	}
	return buf.Bytes(), nil
}

// runMeta is a run file's metadata for the HTML page.
type runMeta struct {
	Row                                              Row
	ID, Kind, Source, Profile, Model, URL, Host, GPU string
	Engine, EngineArgs, Calibrated                   string
}

func newRunMeta(r *Run, row Row) runMeta {
	m := runMeta{Row: row, ID: r.ID, Kind: r.Kind, Source: r.Source, Profile: r.Profile, Model: r.Config.Model,
		URL: r.Config.URL, Host: r.Environment.Host, GPU: "–", Engine: "live server (not recorded)", EngineArgs: "–", Calibrated: "–"}
	if s := r.Sim; s != nil {
		m.Engine = "sim (offline, virtual time)"
		m.GPU = s.GPU
		m.EngineArgs = fmt.Sprintf("max_model_len %d, max_num_seqs %d, max_num_batched_tokens %d, gpu_memory_utilization %g",
			s.MaxModelLen, s.MaxNumSeqs, s.MaxNumBatchedTokens, s.GPUMemoryUtilization)
		m.Calibrated = fmt.Sprint(s.Calibrated)
	}
	return m
}

var page = template.Must(template.New("index").Funcs(template.FuncMap{
	"num": num, "dash": orDash, "calibration": func(t Tune) string { return calibration(&t) },
	"fmt": func(f string, v float64) string { return fmt.Sprintf(f, v) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmlab report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td.l,th.l{text-align:left}
tr.best{background:#fff3b0;font-weight:bold}
figure{margin:1.5em 0}
figure svg{max-width:100%;height:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:14px}
dt{font-weight:bold}
</style></head><body>
<h1>llmlab report</h1>
<p>Generated {{.Generated}} by <code>llmlab report</code>. Self-contained: every figure is inline.</p>
{{range $t := .Tunes}}
<section class="tune" id="tune-{{$t.ID}}">
<h2>Tune {{$t.ID}}</h2>
<dl>
<dt>profile</dt><dd>{{$t.Profile}}</dd>
<dt>engine</dt><dd>{{$t.Engine}} ({{if eq $t.Engine "sim"}}simulated engine, live worker process{{else}}real engine{{end}})</dd>
<dt>model</dt><dd>{{$t.Model}}</dd>
<dt>GPU</dt><dd>{{dash $t.GPU}}</dd>
<dt>calibration</dt><dd>{{calibration $t}}</dd>
<dt>base engine args</dt><dd>{{$t.BaseArgs.Label}}</dd>
<dt>SLO</dt><dd>p95 e2e ≤ {{$t.SLO.P95E2ESeconds}} s, error rate ≤ {{$t.SLO.MaxErrorRate}}</dd>
<dt>run length</dt><dd>probes of {{$t.Settings.ProbeDurationS}} s; {{$t.Settings.Repeats}} repeats of {{$t.Settings.RepeatDurationS}} s at the max rate (median)</dd>
<dt>suggested queue_max</dt><dd>{{$t.SuggestedQueueMax}}</dd>
<dt>host</dt><dd>{{$t.Environment.Host}} ({{$t.Environment.NumCPU}} CPUs, llmlab {{$t.Environment.Version}})</dd>
</dl>
<table class="results">
<thead><tr><th>max_num_seqs</th><th>max_num_batched_tokens</th><th>max_model_len</th><th>util</th><th>max RPS</th><th>p95 e2e (s)</th><th>max rate</th><th>run length (s)</th><th>repeats</th><th class="l">status</th></tr></thead>
<tbody>
{{range $.Rows}}{{if eq .Source $t.ID}}<tr{{if .Best}} class="best"{{end}} data-seqs="{{.Seqs}}" data-batched="{{.Batched}}"><td>{{.Seqs}}</td><td>{{.Batched}}</td><td>{{.ModelLen}}</td><td>{{.Util}}</td><td class="rps">{{num .MaxRPS "%.2f"}}</td><td>{{num .E2EP95 "%.2f"}}</td><td>{{num .MaxRate "%.3g"}}</td><td>{{num .RunLengthS "%g"}}</td><td>{{.Repeats}}</td><td class="l">{{if .Best}}best — {{end}}{{.Status}}</td></tr>
{{end}}{{end}}</tbody></table>
{{with $t.Prediction}}<p>Predicted offline first: {{.Selected}} points measured live, ~{{fmt "%.0f" .SavedSeconds}} s of live time saved; live best == predicted best: {{.Agree}}.</p>{{end}}
</section>
{{end}}
{{if .Runs}}<h2>Run files</h2>
<div class="scroll"><table class="runs"><thead><tr><th class="l">run</th><th class="l">kind</th><th class="l">source</th><th class="l">profile</th><th class="l">model</th><th class="l">engine (sim or real)</th><th class="l">GPU</th><th class="l">engine args</th><th class="l">calibrated</th><th>max RPS</th><th>p95 e2e (s)</th><th>run length (s)</th><th class="l">SLO</th></tr></thead><tbody>
{{range .Runs}}<tr><td class="l">{{.ID}}</td><td class="l">{{.Kind}}</td><td class="l">{{.Source}}{{if eq .Source "live"}} ({{.URL}}){{end}}</td><td class="l">{{.Profile}}</td><td class="l">{{.Model}}</td><td class="l">{{.Engine}}</td><td class="l">{{.GPU}}</td><td class="l">{{.EngineArgs}}</td><td class="l">{{.Calibrated}}</td><td>{{num .Row.MaxRPS "%.2f"}}</td><td>{{num .Row.E2EP95 "%.2f"}}</td><td>{{.Row.RunLengthS}}</td><td class="l">{{.Row.Status}}</td></tr>
{{end}}</tbody></table></div>{{end}}
<h2>Figures</h2>
{{range .Figures}}<figure id="fig-{{.Name}}">{{.SVG}}<figcaption>{{.Title}} (<a download="{{.Name}}.png" href="{{.PNG}}">PNG</a>)</figcaption></figure>
{{end}}
{{if .ReqNote}}<p>{{.ReqNote}}</p>{{end}}
</body></html>
`))
