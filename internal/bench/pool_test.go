package bench

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// connCounter counts a test server's connections: accepted in all, and
// the most open at once.
type connCounter struct {
	mu                   sync.Mutex
	open, peak, accepted int
}

func (c *connCounter) hook(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.open++
		c.accepted++
		c.peak = max(c.peak, c.open)
	case http.StateClosed, http.StateHijacked:
		c.open--
	}
}

func (c *connCounter) get() (peak, accepted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak, c.accepted
}

// The pool bounds the connections: requests that overlap far more than
// MaxConns (a 100 ms server at 100 req/s keeps ~10 in flight) never open
// more than MaxConns connections to the server, whatever the timing.
func TestPoolBoundsConnections(t *testing.T) {
	var cc connCounter
	srv := &testServer{TTFT: 100 * time.Millisecond, PerToken: time.Millisecond, ConnState: cc.hook}
	url := srv.start(t)
	const n = 3
	res := run(t, Config{
		URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 100, Duration: time.Second, SLO: testSLO(5),
		MaxConns: n, MaxSendLag: time.Minute, // wait for a connection rather than give up
	})
	peak, accepted := cc.get()
	t.Logf("accepted %d connections, at most %d at once; %d requests completed", accepted, peak, res.CompletedTotal)
	if accepted > n {
		t.Errorf("the server accepted %d connections, pool is %d", accepted, n)
	}
	if res.CompletedTotal != 100 || res.FailedTotal != 0 || len(res.GeneratorErrorsTotal) != 0 {
		t.Errorf("completed %d failed %d generator errors %v; want all 100 served through the pool",
			res.CompletedTotal, res.FailedTotal, res.GeneratorErrorsTotal)
	}
}

// A server that is fine and a generator forced to fall behind (one
// connection for a load that needs several, little patience): the
// requests the generator could not send are its own errors, the server is
// charged with none, and the run is invalid with no SLO verdict.
func TestGeneratorErrorsAreNotTheServers(t *testing.T) {
	var cc connCounter
	srv := &testServer{TTFT: 200 * time.Millisecond, PerToken: time.Millisecond, ConnState: cc.hook}
	url := srv.start(t)
	res := run(t, Config{
		URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 40, Duration: time.Second, SLO: testSLO(5),
		MaxConns: 1, MaxSendLag: 20 * time.Millisecond,
	})
	if _, accepted := cc.get(); accepted > 1 {
		t.Errorf("%d connections with a pool of 1", accepted)
	}
	gen := res.GeneratorErrors[ClassGenPool] + res.GeneratorErrors[ClassGenLag]
	if gen == 0 || res.GeneratorErrors[ClassGenPool] == 0 {
		t.Fatalf("generator errors %v; want pool exhaustion", res.GeneratorErrors)
	}
	if res.Failed != 0 || len(res.Errors) != 0 || res.ErrorRate != 0 || res.FailedTotal != 0 {
		t.Errorf("server charged: failed %d errors %v error rate %v", res.Failed, res.Errors, res.ErrorRate)
	}
	if !res.Invalid || res.InvalidReason == "" || res.SLOMet || !res.GeneratorBehind {
		t.Errorf("invalid %v (%q) slo_met %v generator_behind %v; want an invalid run without a verdict",
			res.Invalid, res.InvalidReason, res.SLOMet, res.GeneratorBehind)
	}
	// Every request is either the server's (sent) or the generator's.
	if res.Requests+gen != 40 || res.SentTotal+sumClasses(res.GeneratorErrorsTotal) != 40 {
		t.Errorf("requests %d + generator errors %d, sent %d + %v; want 40 each",
			res.Requests, gen, res.SentTotal, res.GeneratorErrorsTotal)
	}
}

// A request the generator is too late to send is not sent at all.
func TestSendLagPastTheLimitIsAGeneratorError(t *testing.T) {
	srv := &testServer{TTFT: time.Millisecond, PerToken: time.Millisecond}
	url := srv.start(t)
	res := run(t, Config{
		URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 20, Duration: time.Second, SLO: testSLO(5),
		MaxSendLag: time.Nanosecond, // no send can be that punctual
	})
	if res.GeneratorErrors[ClassGenLag] != 20 || res.Requests != 0 || res.SentTotal != 0 || srv.count.Load() != 0 {
		t.Errorf("generator errors %v, requests %d, sent %d, server saw %d; want all 20 dropped as lag",
			res.GeneratorErrors, res.Requests, res.SentTotal, srv.count.Load())
	}
	if !res.Invalid || res.SLOMet || res.AchievedRate != 0 {
		t.Errorf("invalid %v slo_met %v achieved %v", res.Invalid, res.SLOMet, res.AchievedRate)
	}
}

// Dialling that fails for want of a local resource is the generator's:
// here a source address this machine does not have (EADDRNOTAVAIL, a
// real bind failure), as ports run out at a high rate.
func TestLocalDialFailureIsAGeneratorError(t *testing.T) {
	srv := &testServer{}
	url := srv.start(t)
	tr := NewPoolTransport(4)
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1")}}).DialContext // TEST-NET-1
	defer tr.CloseIdleConnections()
	res := run(t, Config{
		URL: url, Model: "m", Scenario: scenario(t, 2), Rate: 10, Duration: 500 * time.Millisecond, SLO: testSLO(5),
		Client: &http.Client{Transport: tr},
	})
	if res.GeneratorErrors[ClassGenDial] != 5 || res.Failed != 0 || !res.Invalid {
		t.Errorf("generator errors %v, server errors %v, invalid %v; want 5 generator_dial", res.GeneratorErrors, res.Errors, res.Invalid)
	}
	if localDialFailure(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}) || localDialFailure(errors.New("EOF")) {
		t.Error("a refused connection is the server's")
	}
}

// The automatic pool size follows the load and stays in its bounds.
func TestPoolSize(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want int
	}{
		{Config{Rate: 10, Timeout: 60 * time.Second, Arrival: "constant"}, 600},
		{Config{Rate: 1, Timeout: 60 * time.Second, Arrival: "constant"}, MinPool},
		{Config{Rate: 12000, Timeout: 60 * time.Second, Arrival: "constant"}, MaxPool},
		{Config{Rate: 10, Timeout: 60 * time.Second, Arrival: "poisson"}, 1200},
		{Config{Concurrency: 7}, 7},
		{Config{Rate: 10, MaxConcurrency: 5}, 5},
	} {
		if got := tc.cfg.poolSize(); got != tc.want {
			t.Errorf("%+v: pool %d, want %d", tc.cfg, got, tc.want)
		}
	}
}

// A closed loop has no schedule to fall behind: however small the
// allowed send lag, its requests are sent.
func TestClosedLoopHasNoSendLag(t *testing.T) {
	srv := &testServer{TTFT: time.Millisecond, PerToken: time.Millisecond}
	url := srv.start(t)
	res := run(t, Config{
		URL: url, Model: "m", Scenario: scenario(t, 2), Concurrency: 2, Duration: 500 * time.Millisecond,
		SLO: testSLO(5), MaxSendLag: time.Nanosecond,
	})
	if len(res.GeneratorErrorsTotal) != 0 || res.Invalid || res.CompletedTotal == 0 {
		t.Errorf("generator errors %v invalid %v completed %d", res.GeneratorErrorsTotal, res.Invalid, res.CompletedTotal)
	}
}
