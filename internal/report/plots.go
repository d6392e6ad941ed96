package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/runfile"
)

// figure is one plot rendered both ways.
type figure struct {
	Name     string // file stem
	Title    string
	SVG, PNG []byte
}

const figW, figH = 8 * vg.Inch, 5 * vg.Inch

func render(p *plot.Plot, name, title string) (figure, error) {
	f := figure{Name: name, Title: title}
	for _, format := range []string{"svg", "png"} {
		wt, err := p.WriterTo(figW, figH, format)
		if err != nil {
			return f, fmt.Errorf("plot %s: %w", name, err)
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			return f, fmt.Errorf("plot %s: %w", name, err)
		}
		if format == "svg" {
			f.SVG = buf.Bytes()
		} else {
			f.PNG = buf.Bytes()
		}
	}
	return f, nil
}

// series is one config's curve: its probes (and repeats) as (RPS, p95).
type series struct {
	label string
	pts   plotter.XYs
}

// rpsVsP95 draws one line per config (its runs sorted by RPS), the SLO
// line, and marks the best point.
func rpsVsP95(lines []series, sloP95 float64, best *plotter.XY, bestLabel string) (figure, error) {
	p := plot.New()
	p.Title.Text = "Sustained RPS vs p95 end-to-end latency"
	p.X.Label.Text = "sustained requests/s"
	p.Y.Label.Text = "p95 e2e latency (s)"
	p.Legend.Top = true
	p.Legend.Left = true
	maxX := 0.0
	for i, s := range lines {
		if len(s.pts) == 0 {
			continue
		}
		sort.Slice(s.pts, func(a, b int) bool { return s.pts[a].X < s.pts[b].X })
		l, sc, err := plotter.NewLinePoints(s.pts)
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		c := plotutil.Color(i)
		l.Color, sc.Color = c, c
		sc.Shape = plotutil.Shape(i)
		p.Add(l, sc)
		p.Legend.Add(s.label, l, sc)
		for _, q := range s.pts {
			maxX = max(maxX, q.X)
		}
	}
	if sloP95 > 0 {
		slo, err := plotter.NewLine(plotter.XYs{{X: 0, Y: sloP95}, {X: max(maxX*1.05, 1), Y: sloP95}})
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		slo.Color = color.RGBA{R: 200, A: 255}
		slo.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(slo)
		p.Legend.Add(fmt.Sprintf("SLO p95 ≤ %.3gs", sloP95), slo)
	}
	if best != nil {
		sc, err := plotter.NewScatter(plotter.XYs{*best})
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		sc.Shape = draw.PyramidGlyph{}
		sc.Radius = vg.Points(7)
		sc.Color = color.RGBA{R: 220, G: 20, B: 60, A: 255}
		p.Add(sc)
		p.Legend.Add("best: "+bestLabel, sc)
	}
	p.Add(plotter.NewGrid())
	return render(p, "rps_vs_p95", "RPS vs p95")
}

// latencyCDF draws the CDF of e2e and TTFT of the steady, successful
// requests.
func latencyCDF(rows []bench.RequestRow, sloP95 float64) (figure, error) {
	var e2e, ttft []float64
	for _, r := range rows {
		if r.Steady && r.Status == "ok" {
			e2e = append(e2e, r.E2ES)
			if r.TTFTS > 0 {
				ttft = append(ttft, r.TTFTS)
			}
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency CDF at the best point (%d requests)", len(e2e))
	p.X.Label.Text = "latency (s)"
	p.Y.Label.Text = "fraction of requests"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Inch // clear of the TTFT curve at the left edge
	for i, d := range []struct {
		name string
		v    []float64
	}{{"e2e", e2e}, {"TTFT", ttft}} {
		if len(d.v) == 0 {
			continue
		}
		slices.Sort(d.v)
		xy := make(plotter.XYs, len(d.v))
		for k, v := range d.v {
			xy[k] = plotter.XY{X: v, Y: float64(k+1) / float64(len(d.v))}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		l.Color = plotutil.Color(i)
		p.Add(l)
		p.Legend.Add(d.name, l)
	}
	if sloP95 > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: sloP95, Y: 0}, {X: sloP95, Y: 1}})
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		l.Color = color.RGBA{R: 200, A: 255}
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("SLO: p95 ≤ %.3gs", sloP95), l)
	}
	p.Add(plotter.NewGrid())
	return render(p, "latency_cdf", "Latency CDF")
}

// ttftTPOT draws each steady request's TTFT and TPOT against its
// scheduled send time (log scale: the two differ by orders of magnitude).
func ttftTPOT(rows []bench.RequestRow) (figure, error) {
	var ttft, tpot plotter.XYs
	for _, r := range rows {
		if !r.Steady || r.Status != "ok" {
			continue
		}
		if r.TTFTS > 0 {
			ttft = append(ttft, plotter.XY{X: r.ScheduledS, Y: r.TTFTS})
		}
		if v := r.TPOT(); v > 0 {
			tpot = append(tpot, plotter.XY{X: r.ScheduledS, Y: v})
		}
	}
	p := plot.New()
	p.Title.Text = "TTFT and TPOT per request at the best point"
	p.X.Label.Text = "scheduled send (s from the run's start)"
	p.Y.Label.Text = "seconds (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	// Whole decades, so the log axis has labelled ticks and the legend
	// sits above the points.
	lo, hi := math.Inf(1), 0.0
	for _, xy := range []plotter.XYs{ttft, tpot} {
		for _, q := range xy {
			lo, hi = min(lo, q.Y), max(hi, q.Y)
		}
	}
	if hi > 0 {
		p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
		p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi))+0.5)
	}
	for i, d := range []struct {
		name string
		xy   plotter.XYs
	}{{"TTFT", ttft}, {"TPOT", tpot}} {
		if len(d.xy) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(d.xy)
		if err != nil {
			return figure{}, fmt.Errorf("plot: %w", err)
		}
		sc.Color = plotutil.Color(i)
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(1.5)
		p.Add(sc)
		p.Legend.Add(d.name, sc)
	}
	p.Add(plotter.NewGrid())
	return render(p, "ttft_tpot", "TTFT and TPOT")
}

// tuneSeries is each measured config's probes and repeats as (RPS, p95).
func tuneSeries(t *runfile.TuneFile) []series {
	var out []series
	for _, pt := range t.Points {
		if pt.Status != runfile.PointMeasured {
			continue
		}
		s := series{label: fmt.Sprintf("seqs %d / batched %d", pt.Args.MaxNumSeqs, pt.Args.MaxNumBatchedTokens)}
		for _, q := range pt.Probes {
			if q.RPS > 0 {
				s.pts = append(s.pts, plotter.XY{X: q.RPS, Y: q.E2EP95})
			}
		}
		for _, q := range pt.Repeats {
			if q.RPS > 0 {
				s.pts = append(s.pts, plotter.XY{X: q.RPS, Y: q.E2EP95})
			}
		}
		out = append(out, s)
	}
	return out
}

// runSeries is a find-max run file's steps as one series.
func runSeries(r *Run) series {
	s := series{label: r.ID}
	if r.FindMax != nil {
		for _, st := range r.FindMax.Steps {
			if st.Result.RPS > 0 {
				s.pts = append(s.pts, plotter.XY{X: st.Result.RPS, Y: st.Result.E2EP95})
			}
		}
	} else if r.Results != nil && r.Results.RPS > 0 {
		s.pts = append(s.pts, plotter.XY{X: r.Results.RPS, Y: r.Results.E2EP95})
	}
	return s
}
