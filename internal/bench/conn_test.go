package bench

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Connections are reused: a run whose requests never overlap much must not
// dial one connection per request (a load generator that re-dials measures
// its own TCP handshakes and runs out of ports).
func TestConnectionsAreReused(t *testing.T) {
	var conns atomic.Int64
	srv := &testServer{ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	url := srv.start(t)
	res := run(t, Config{URL: url, Model: "m", Scenario: scenario(t, 3), Rate: 200, Duration: time.Second, SLO: testSLO(5)})
	if res.CompletedTotal != 200 {
		t.Fatalf("completed %d", res.CompletedTotal)
	}
	if n := conns.Load(); n > 50 {
		t.Errorf("%d connections for 200 short sequential-ish requests; want reuse", n)
	} else {
		t.Logf("%d connections for 200 requests", n)
	}
}
