package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The health probe: how STARTING becomes READY (or FAILED by timeout).

// probe polls /health until 200 (READY), the process exits, or the start-up
// timeout passes. Connection refused means "still loading", as with vLLM.
func (s *Supervisor) probe(w *worker) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		if s.healthy(w.probeCtx, w.url) {
			s.mu.Lock()
			if s.cur == w && s.state == Starting && !w.stopping {
				w.readyAt = time.Now()
				d := w.readyAt.Sub(w.started)
				s.coldStart, s.coldAt = d, w.readyAt
				s.lastActive = w.readyAt
				s.setStateLocked(Ready, "health check passed", "cold_start", d.Round(time.Millisecond).String())
			}
			s.mu.Unlock()
			w.abort()
			return
		}
		select {
		case <-t.C:
			continue
		case <-w.exited:
			return // wait() reports it
		case <-w.probeCtx.Done():
		}
		s.mu.Lock()
		if s.cur == w && s.state == Starting && !w.stopping && errors.Is(w.probeCtx.Err(), context.DeadlineExceeded) {
			// Start-up timeout: kill it; wait() will find it replaced.
			w.kill()
			s.failLocked(w, workerError(fmt.Sprintf("worker not healthy within start-up timeout %s", s.cfg.StartupTimeout), w.tail, w.logPath, false), "start-up timeout")
		}
		s.mu.Unlock()
		return
	}
}

func (s *Supervisor) healthy(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := s.health.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
