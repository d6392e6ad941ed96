package demo

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"math"
	"os"

	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// DefaultFrames is the animation's frame count: about one per second of
// a default demo.
const DefaultFrames = 48

// The animation plays each frame for frameDelay and holds the last one.
const (
	gifDPI         = 80 // 8 × 6 in → 640 × 480 pixels
	frameDelay     = 12 // hundredths of a second
	lastFrameDelay = 400
)

// WriteGIF writes an animation of the timeline: frame k shows the run up
// to k/(frames-1) of its length, on fixed axes. Frames after the first
// hold only the pixels that changed (the rest transparent), which keeps
// the file small for a README.
func (tl *Timeline) WriteGIF(path string, frames int) error {
	if frames < 2 {
		frames = 2
	}
	end := math.Max(tl.End, 1)
	pal := gifPalette()
	conv := newConverter(pal)
	anim := &gif.GIF{}
	var prev *image.Paletted
	for k := range frames {
		cut := end * float64(k) / float64(frames-1)
		plots, err := tl.panels(cut, tl.frameTitle(cut))
		if err != nil {
			return fmt.Errorf("gif frame %d: %w", k, err)
		}
		c := vgimg.NewWith(vgimg.UseWH(figWidth, figHeight), vgimg.UseDPI(gifDPI), vgimg.UseBackgroundColor(color.White))
		drawPanels(draw.New(c), plots)
		full := conv.paletted(c.Image())
		frame := full
		if prev != nil {
			frame = delta(prev, full)
		}
		prev = full
		anim.Image = append(anim.Image, frame)
		anim.Delay = append(anim.Delay, frameDelay)
		anim.Disposal = append(anim.Disposal, gif.DisposalNone)
	}
	anim.Delay[len(anim.Delay)-1] = lastFrameDelay
	anim.Config = image.Config{ColorModel: pal, Width: prev.Rect.Dx(), Height: prev.Rect.Dy()}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w := bufio.NewWriter(f)
	if err := gif.EncodeAll(w, anim); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// frameTitle says where the animation is: time, state and queue.
func (tl *Timeline) frameTitle(cut float64) string {
	s := fmt.Sprintf("t = %4.1fs   worker %s", cut, tl.StateAt(cut))
	var last *Sample
	for i := range tl.Samples {
		if tl.Samples[i].T > cut {
			break
		}
		last = &tl.Samples[i]
	}
	if last != nil {
		s += fmt.Sprintf("   queued %d   in flight %d", last.QueueDepth, last.InFlight)
	}
	done := 0
	for _, r := range tl.Requests {
		if r.Done <= cut {
			done++
		}
	}
	return s + fmt.Sprintf("   done %d", done)
}

// transparent is palette index 0: unchanged pixels of a delta frame.
const transparent = 0

// gifPalette holds every colour the figure draws, each blended towards
// white in steps (anti-aliased edges on a white page), and towards the
// state bands (edges on a shaded panel).
func gifPalette() color.Palette {
	pal := color.Palette{color.RGBA{}}
	seen := map[color.RGBA]bool{}
	add := func(c color.RGBA) {
		if !seen[c] && len(pal) < 256 {
			seen[c] = true
			pal = append(pal, c)
		}
	}
	bases := []color.RGBA{{0, 0, 0, 0xff}, {0x80, 0x80, 0x80, 0xff}, colState, colQueue, colInFlight, colCold, colWarm, colFailed}
	grounds := []color.RGBA{{0xff, 0xff, 0xff, 0xff}}
	for _, st := range []string{StateStopped, StateStarting, StateReady, StateDraining, StateFailed} {
		grounds = append(grounds, stateShade[st])
	}
	for _, g := range grounds {
		add(g)
	}
	for _, b := range bases {
		add(b)
	}
	for _, g := range grounds {
		for _, b := range bases {
			for i := 1; i < 6; i++ {
				add(blend(b, g, float64(i)/6))
			}
		}
	}
	return pal
}

func blend(a, b color.RGBA, t float64) color.RGBA {
	mix := func(x, y uint8) uint8 { return uint8(math.Round(float64(x)*(1-t) + float64(y)*t)) }
	return color.RGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 0xff}
}

// converter maps colours to the palette, remembering each answer: a plot
// has few distinct colours, so the nearest-colour search runs rarely.
type converter struct {
	pal   color.Palette
	cache map[color.RGBA]uint8
}

func newConverter(pal color.Palette) *converter {
	return &converter{pal: pal, cache: map[color.RGBA]uint8{}}
}

func (c *converter) index(px color.RGBA) uint8 {
	if i, ok := c.cache[px]; ok {
		return i
	}
	// Index 0 is the transparent entry: never a drawn colour.
	i := uint8(c.pal[1:].Index(px) + 1)
	c.cache[px] = i
	return i
}

func (c *converter) paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	out := image.NewPaletted(image.Rect(0, 0, b.Dx(), b.Dy()), c.pal)
	rgba, _ := img.(*image.RGBA)
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			var px color.RGBA
			if rgba != nil {
				px = rgba.RGBAAt(b.Min.X+x, b.Min.Y+y)
			} else {
				px = color.RGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.RGBA)
			}
			px.A = 0xff
			out.Pix[y*out.Stride+x] = c.index(px)
		}
	}
	return out
}

// delta is cur cropped to the pixels that differ from prev, the others
// transparent; at least one pixel so every frame is a valid image.
func delta(prev, cur *image.Paletted) *image.Paletted {
	r := image.Rectangle{}
	b := cur.Rect
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if prev.ColorIndexAt(x, y) != cur.ColorIndexAt(x, y) {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	if r.Empty() {
		r = image.Rect(0, 0, 1, 1)
	}
	out := image.NewPaletted(r, cur.Palette)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			i := cur.ColorIndexAt(x, y)
			if prev.ColorIndexAt(x, y) == i {
				i = transparent
			}
			out.SetColorIndex(x, y, i)
		}
	}
	return out
}
