package bench

import (
	"fmt"
	"time"
)

// progressLoop writes the live progress line until done is closed.
func (r *runner) progressLoop(done <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	var prevSent int64
	prevAt := time.Duration(0)
	for {
		select {
		case <-done:
			fmt.Fprint(r.cfg.Progress, "\r\033[K")
			return
		case <-t.C:
		}
		p := r.rec.snapshot()
		now := r.since()
		dt := (now - prevAt).Seconds()
		phase := ""
		if now > r.cfg.Duration {
			phase = "  (draining)"
		}
		// The figures the line is for come first, so a narrow terminal
		// cuts the details.
		gen := ""
		if p.genErrors > 0 {
			// The generator's own failures, apart from the server's errors.
			gen = fmt.Sprintf("  GENERATOR BEHIND, not sent %d", p.genErrors)
		}
		line := fmt.Sprintf("%4.0fs/%.0fs  sent %d  rps %.1f  p95 %.3fs  errors %d%s  done %d  in-flight %d  sending %.1f/s%s",
			now.Seconds(), r.cfg.Duration.Seconds(), p.sent, float64(p.windowOK)/dt, p.windowP95.Seconds(),
			p.failed, gen, p.done, p.inflight, float64(p.sent-prevSent)/dt, phase)
		if w := r.cfg.ProgressWidth; w > 1 && len(line) > w-1 {
			line = line[:w-1] // ASCII only; the last column is left free so the cursor does not wrap
		}
		fmt.Fprint(r.cfg.Progress, "\r\033[K"+line)
		prevSent, prevAt = p.sent, now
	}
}
