package gateway

import (
	"strings"
	"testing"
)

// The profiling endpoints exist only when asked for, and only for the
// admin: without the token they answer 401, with it a real profile.
func TestPprofIsOptInAndAdminOnly(t *testing.T) {
	f := newFakeWorker(t)
	_, off := newGateway(t, f.ts.URL, nil)
	if code, _, b := do(t, "GET", off+"/admin/debug/pprof/heap", "", nil); code != 404 {
		t.Fatalf("pprof off: %d %s, want 404", code, b)
	}
	_, gw := newGateway(t, f.ts.URL, func(s *Settings) { s.Pprof = true; s.AdminToken = "adm" })
	for _, p := range []string{"", "heap", "goroutine", "cmdline"} {
		if code, _, b := do(t, "GET", gw+"/admin/debug/pprof/"+p, "", nil); code != 401 {
			t.Errorf("%s without token: %d %s, want 401", p, code, b)
		}
	}
	admin := map[string]string{"Authorization": "Bearer adm"}
	if code, _, b := do(t, "GET", gw+"/admin/debug/pprof/", "", admin); code != 200 || !strings.Contains(b, "goroutine") {
		t.Errorf("index: %d %.200s", code, b)
	}
	if code, _, b := do(t, "GET", gw+"/admin/debug/pprof/goroutine?debug=1", "", admin); code != 200 || !strings.Contains(b, "goroutine profile:") {
		t.Errorf("goroutine dump: %d %.200s", code, b)
	}
	// A binary heap profile: gzip-compressed protobuf.
	if code, _, b := do(t, "GET", gw+"/admin/debug/pprof/heap", "", admin); code != 200 || !strings.HasPrefix(b, "\x1f\x8b") {
		t.Errorf("heap: %d, %d bytes, want a gzip profile", code, len(b))
	}
}
