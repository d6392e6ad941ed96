package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/llmlab/llmlab/internal/supervisor"
)

// handleReady is readiness, apart from liveness (/health: the process
// answers). A load balancer or Kubernetes should send traffic only while
// /ready is 200: it is 503 while the gateway drains for shutdown and while
// the worker is FAILED (backing off, or about to retry), with Retry-After.
// A STOPPED worker is ready: it starts on the first request.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusServiceUnavailable, "not_ready", "gateway is shutting down")
		return
	}
	st := s.sup.Status()
	if st.State == supervisor.Failed.String() {
		wait := max(time.Second, time.Until(st.RetryAt))
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		s.fail(w, http.StatusServiceUnavailable, "not_ready", "worker FAILED (%d consecutive failures): %s", st.ConsecutiveFailures, st.LastError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "worker": st.State})
}
