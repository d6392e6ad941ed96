package gateway

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A worker that closes every connection as soon as it goes idle (as
// uvicorn does after its keep-alive timeout) costs the client nothing: a
// request that meets a closed pooled connection is resent once on a new
// one, and none is served twice.
func TestWorkerClosingIdleConnectionsIsTransparent(t *testing.T) {
	var served, conns atomic.Int64
	f := newFakeWorker(t)
	f.ts.Close()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			served.Add(1)
		}
		f.serve(w, r)
	}))
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			conns.Add(1)
		case http.StateIdle:
			c.Close()
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	_, gw := newGateway(t, ts.URL, nil)
	const n = 6
	for i := range n {
		if resp, body := post(t, gw+"/v1/completions", `{"prompt":"hi","max_tokens":2}`); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if got := served.Load(); got != n {
		t.Fatalf("worker served %d requests, want %d (none lost, none twice)", got, n)
	}
	if conns.Load() < n {
		t.Fatalf("%d connections for %d requests on a worker that closes idle ones", conns.Load(), n)
	}
}
