package gateway

import (
	"net/http"
	"net/http/pprof"
)

// pprofPrefix is where the opt-in profiling endpoints live: under /admin/,
// so the admin token (or, without one, loopback only) guards them like the
// other admin routes (auth.go). A CPU profile or a goroutine dump shows
// request contents and costs CPU while it runs: never open to API clients.
const pprofPrefix = "/admin/debug/pprof/"

// addPprof adds Go's profiling endpoints to the route table when the
// `pprof` setting is on (--pprof, LLMLAB_PPROF): the index at
// /admin/debug/pprof/, and cmdline, profile (CPU, ?seconds=N), symbol,
// trace and the named profiles (heap, allocs, goroutine, block, mutex,
// threadcreate) below it. Use: go tool pprof -http=: \
// -H 'Authorization: Bearer <admin token>' http://HOST:PORT/admin/debug/pprof/profile?seconds=30
// (or curl the profile to a file first).
//
// pprof.Index serves a named profile only under /debug/pprof/, so each
// named profile gets its own route; the index page's links are relative
// and work under the prefix.
func (s *Server) addPprof(table map[string]route) {
	if !s.set.Pprof {
		return
	}
	table[pprofPrefix] = route{method: http.MethodGet, h: pprof.Index}
	table[pprofPrefix+"cmdline"] = route{method: http.MethodGet, h: pprof.Cmdline}
	table[pprofPrefix+"profile"] = route{method: http.MethodGet, h: pprof.Profile}
	table[pprofPrefix+"symbol"] = route{method: http.MethodGet, h: pprof.Symbol}
	table[pprofPrefix+"trace"] = route{method: http.MethodGet, h: pprof.Trace}
	for _, name := range []string{"heap", "allocs", "goroutine", "block", "mutex", "threadcreate"} {
		table[pprofPrefix+name] = route{method: http.MethodGet, h: pprof.Handler(name).ServeHTTP}
	}
}
