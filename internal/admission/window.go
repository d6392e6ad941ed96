package admission

import "time"

// Guard is the micro-batching window's guardrail: it halves the window when
// the p95 nears the SLO and grows it back, a quarter of Max at a time, when
// there is room. The window stays within [0, Max].
type Guard struct {
	Max time.Duration
	// Near and Room are fractions of the SLO (defaults 0.8 and 0.5).
	Near, Room float64
	w          time.Duration
}

// NewGuard starts the window at max.
func NewGuard(max time.Duration) *Guard { return &Guard{Max: max, w: max} }

// Window is the current window.
func (g *Guard) Window() time.Duration { return g.w }

// Adjust reads the window's p95 against the SLO and returns the new window.
func (g *Guard) Adjust(p95, slo time.Duration, samples int) time.Duration {
	near, room := g.Near, g.Room
	if near <= 0 {
		near = 0.8
	}
	if room <= 0 || room >= near {
		room = 0.5
	}
	if samples == 0 || slo <= 0 || g.Max <= 0 {
		g.w = min(max(g.w, 0), max(g.Max, 0))
		return g.w
	}
	switch r := p95.Seconds() / slo.Seconds(); {
	case r >= near:
		g.w /= 2
		if g.w < time.Millisecond {
			g.w = 0
		}
	case r < room:
		g.w = min(g.Max, g.w+g.Max/4)
	}
	return g.w
}
