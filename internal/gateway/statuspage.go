package gateway

import (
	_ "embed"
	"net/http"
)

// statusPage is the live status page: one HTML file with its styles and
// script inline, so it works with no network and nothing else running. It
// polls /status once a second.
//
//go:embed statuspage/index.html
var statusPage []byte

// statusPagePolicy forbids every load but the page's own inline code and
// its polls of /status: a stray external asset fails loudly in a browser.
const statusPagePolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"

// handleStatusPage is GET /.
func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusPagePolicy)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(statusPage)
}
