package demo

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The figure: three panels over one time axis.
const (
	figWidth  = 8 * vg.Inch
	figHeight = 6 * vg.Inch
)

// Colours: a band per worker state behind every panel, and the series.
var (
	stateShade = map[string]color.RGBA{
		StateStopped:  {0xee, 0xee, 0xee, 0xff},
		StateStarting: {0xff, 0xe0, 0xb2, 0xff},
		StateReady:    {0xe8, 0xf5, 0xe9, 0xff},
		StateDraining: {0xe3, 0xf2, 0xfd, 0xff},
		StateFailed:   {0xff, 0xcd, 0xd2, 0xff},
	}
	colState    = color.RGBA{0x21, 0x21, 0x21, 0xff}
	colQueue    = color.RGBA{0x8e, 0x24, 0xaa, 0xff}
	colInFlight = color.RGBA{0x00, 0x89, 0x7b, 0xff}
	colCold     = color.RGBA{0xe6, 0x51, 0x00, 0xff}
	colWarm     = color.RGBA{0x2e, 0x7d, 0x32, 0xff}
	colFailed   = color.RGBA{0xc6, 0x28, 0x28, 0xff}
)

// stateLevel places the lifecycle bottom to top; FAILED below STOPPED.
var stateLevel = map[string]float64{StateFailed: -1, StateStopped: 0, StateStarting: 1, StateReady: 2, StateDraining: 3}

// segment is a span of one worker state.
type segment struct {
	from, to float64
	state    string
}

// segments splits [0, cut] by the worker's state.
func (tl *Timeline) segments(cut float64) []segment {
	var out []segment
	cur := segment{from: 0, state: tl.StateAt(0)}
	for _, tr := range tl.Transitions {
		if tr.T <= 0 {
			cur.state = tr.To
			continue
		}
		if tr.T > cut {
			break
		}
		cur.to = tr.T
		out = append(out, cur)
		cur = segment{from: tr.T, state: tr.To}
	}
	cur.to = cut
	return append(out, cur)
}

// panels builds the three plots showing the timeline up to cut: states
// and transitions to cut, samples to cut, requests that ended by cut.
// Axis ranges are the whole run's so animation frames line up.
func (tl *Timeline) panels(cut float64, title string) ([]*plot.Plot, error) {
	end := math.Max(tl.End, 1)
	segs := tl.segments(cut)
	hasFailed := false
	for _, s := range tl.segments(end) {
		hasFailed = hasFailed || s.state == StateFailed
	}

	// Worker state.
	ps := plot.New()
	ps.Title.Text = title
	ps.Y.Label.Text = "worker"
	ymin := -0.5
	if hasFailed {
		ymin = -1.5
	}
	ticks := []plot.Tick{{Value: 0, Label: StateStopped}, {Value: 1, Label: StateStarting}, {Value: 2, Label: StateReady}, {Value: 3, Label: StateDraining}}
	if hasFailed {
		ticks = append([]plot.Tick{{Value: -1, Label: StateFailed}}, ticks...)
	}
	ps.Y.Tick.Marker = plot.ConstantTicks(ticks)
	if err := shade(ps, segs, ymin, 3.5); err != nil {
		return nil, err
	}
	var pts plotter.XYs
	for _, s := range segs {
		pts = append(pts, plotter.XY{X: s.from, Y: stateLevel[s.state]})
	}
	pts = append(pts, plotter.XY{X: cut, Y: stateLevel[segs[len(segs)-1].state]})
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.StepStyle, l.Color, l.Width = plotter.PostStep, colState, vg.Points(2)
	ps.Add(l)
	if err := tl.annotate(ps, segs, cut); err != nil {
		return nil, err
	}

	// Queue depth and in flight, from /status.
	pq := plot.New()
	pq.Y.Label.Text = "requests"
	qmax := 1.0
	var qd, inf plotter.XYs
	for _, s := range tl.Samples {
		qmax = math.Max(qmax, float64(max(s.QueueDepth, s.InFlight)))
		if s.T <= cut {
			qd = append(qd, plotter.XY{X: s.T, Y: float64(s.QueueDepth)})
			inf = append(inf, plotter.XY{X: s.T, Y: float64(s.InFlight)})
		}
	}
	qtop := math.Ceil(qmax*1.2) + 1
	if err := shade(pq, segs, 0, qtop); err != nil {
		return nil, err
	}
	for _, series := range []struct {
		name string
		xys  plotter.XYs
		col  color.RGBA
	}{{"in flight", inf, colInFlight}, {"queued", qd, colQueue}} {
		if len(series.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(series.xys)
		if err != nil {
			return nil, err
		}
		l.StepStyle, l.Color, l.Width = plotter.PostStep, series.col, vg.Points(1.5)
		pq.Add(l)
		pq.Legend.Add(series.name, l)
	}
	pq.Legend.Top, pq.Legend.Left = true, false

	// Per-request latency at the send time, cold or warm.
	pl := plot.New()
	pl.Y.Label.Text = "latency (s)"
	pl.X.Label.Text = "seconds since start"
	lmax := 1.0
	var cold, warm, failed plotter.XYs
	for _, r := range tl.Requests {
		lmax = math.Max(lmax, r.Latency)
		if r.Done > cut {
			continue
		}
		xy := plotter.XY{X: r.Sent, Y: r.Latency}
		switch {
		case !r.OK():
			failed = append(failed, xy)
		case r.Cold:
			cold = append(cold, xy)
		default:
			warm = append(warm, xy)
		}
	}
	ltop := lmax * 1.15
	if err := shade(pl, segs, 0, ltop); err != nil {
		return nil, err
	}
	for _, series := range []struct {
		name  string
		xys   plotter.XYs
		col   color.RGBA
		shape draw.GlyphDrawer
	}{
		{"cold (worker not READY when sent)", cold, colCold, draw.PyramidGlyph{}},
		{"warm", warm, colWarm, draw.CircleGlyph{}},
		{"failed", failed, colFailed, draw.CrossGlyph{}},
	} {
		if len(series.xys) == 0 {
			continue
		}
		s, err := plotter.NewScatter(series.xys)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color, s.GlyphStyle.Shape, s.GlyphStyle.Radius = series.col, series.shape, vg.Points(3)
		pl.Add(s)
		pl.Legend.Add(series.name, s)
	}
	pl.Legend.Top, pl.Legend.Left = true, false

	for _, p := range []*plot.Plot{ps, pq, pl} {
		p.X.Min, p.X.Max = 0, end
		p.Add(plotter.NewGrid())
	}
	ps.Y.Min, ps.Y.Max = ymin, 3.5
	pq.Y.Min, pq.Y.Max = 0, qtop
	pl.Y.Min, pl.Y.Max = 0, ltop
	return []*plot.Plot{ps, pq, pl}, nil
}

// annotate names the two spans the demo is about, once they are over:
// each cold start (over its STARTING band) and each idle wait before a
// stop (from the last request's end to DRAINING).
func (tl *Timeline) annotate(p *plot.Plot, segs []segment, cut float64) error {
	var xys plotter.XYs
	var labels []string
	for i, s := range segs {
		if s.state == StateStarting && s.to < cut {
			xys = append(xys, plotter.XY{X: s.from, Y: 0.35})
			labels = append(labels, fmt.Sprintf(" cold start %.1fs", s.to-s.from))
		}
		if s.state == StateReady && i+1 < len(segs) && segs[i+1].state == StateDraining {
			idleFrom := s.from
			for _, r := range tl.Requests {
				if r.Done > idleFrom && r.Done <= s.to {
					idleFrom = r.Done
				}
			}
			xys = append(xys, plotter.XY{X: idleFrom, Y: 2.3})
			labels = append(labels, fmt.Sprintf(" idle %.1fs → stop", s.to-idleFrom))
		}
	}
	if len(xys) == 0 {
		return nil
	}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return err
	}
	p.Add(lb)
	return nil
}

// shade paints each state's span as a band from y0 to y1.
func shade(p *plot.Plot, segs []segment, y0, y1 float64) error {
	for _, s := range segs {
		if s.to <= s.from {
			continue
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: s.from, Y: y0}, {X: s.to, Y: y0}, {X: s.to, Y: y1}, {X: s.from, Y: y1}})
		if err != nil {
			return err
		}
		poly.Color = stateShade[s.state]
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	return nil
}

// drawPanels renders the panels stacked on dc.
func drawPanels(dc draw.Canvas, plots []*plot.Plot) {
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadY: vg.Points(4)}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
}

// figureTitle names the whole run.
func (tl *Timeline) figureTitle() string {
	st := "the profile's start-up"
	if tl.Settings.StartupSeconds >= 0 {
		st = fmt.Sprintf("modelled start %gs", tl.Settings.StartupSeconds)
	}
	return fmt.Sprintf("llmlab demo: scale to zero (idle timeout %gs, %s, %g req/s for %gs)",
		tl.Settings.IdleTimeoutSeconds, st, tl.Settings.Rate, tl.Settings.LoadSeconds)
}

// WritePlot writes the whole timeline as PNG (pngPath) and SVG (svgPath).
func (tl *Timeline) WritePlot(pngPath, svgPath string) error {
	plots, err := tl.panels(math.Max(tl.End, 1), tl.figureTitle())
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	img := vgimg.NewWith(vgimg.UseWH(figWidth, figHeight), vgimg.UseDPI(120), vgimg.UseBackgroundColor(color.White))
	drawPanels(draw.New(img), plots)
	if err := writeFile(pngPath, vgimg.PngCanvas{Canvas: img}); err != nil {
		return err
	}
	svg := vgsvg.New(figWidth, figHeight)
	drawPanels(draw.New(svg), plots)
	return writeFile(svgPath, svg)
}

func writeFile(path string, w io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeOutputs writes every file of a finished timeline.
func writeOutputs(tl *Timeline, f Files) error {
	if err := tl.WriteJSON(f.Timeline); err != nil {
		return err
	}
	if err := tl.WritePlot(f.PNG, f.SVG); err != nil {
		return err
	}
	return tl.WriteGIF(f.GIF, DefaultFrames)
}
