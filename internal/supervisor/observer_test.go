package supervisor

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingObserver keeps what it is told.
type recordingObserver struct {
	mu sync.Mutex
	ts []Transition
}

func (o *recordingObserver) WorkerTransition(t Transition) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ts = append(o.ts, t)
}

func (o *recordingObserver) path() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b []string
	for _, t := range o.ts {
		b = append(b, t.From+">"+t.To)
	}
	return strings.Join(b, " ")
}

func TestObserverSeesEveryTransitionInOrder(t *testing.T) {
	obs := &recordingObserver{}
	s := newSup(t, "ok", func(c *Config) { c.Observer = obs })
	l := ensure(t, s)
	l.Release()
	if err := s.Stop(context.Background(), "test stop"); err != nil {
		t.Fatal(err)
	}
	want := "STOPPED>STARTING STARTING>READY READY>DRAINING DRAINING>STOPPED"
	if got := obs.path(); got != want {
		t.Fatalf("observed %q, want %q", got, want)
	}
	obs.mu.Lock()
	ready := obs.ts[1]
	obs.mu.Unlock()
	if ready.ColdStartSeconds <= 0 || ready.Cause == "" || ready.At.IsZero() {
		t.Fatalf("READY transition lacks cold start, cause or time: %+v", ready)
	}
	// The ring holds the same transitions.
	got := s.Transitions()
	if len(got) != 4 || got[3].To != "STOPPED" || got[3].Cause != "worker exited after stop" {
		t.Fatalf("Transitions() = %+v", got)
	}
}

func TestFailedTransitionCarriesTheError(t *testing.T) {
	obs := &recordingObserver{}
	s := newSup(t, "oom", func(c *Config) { c.Observer = obs; c.RestartBackoff = time.Hour; c.MaxRestartBackoff = time.Hour })
	if _, err := s.EnsureReady(context.Background()); err == nil {
		t.Fatal("want a failed start")
	}
	tr := s.Transitions()
	last := tr[len(tr)-1]
	if last.To != "FAILED" || !strings.Contains(last.Error, "No available memory") {
		t.Fatalf("last transition %+v, want FAILED with the worker's error", last)
	}
}

func TestTransitionRingKeepsTheLatest(t *testing.T) {
	var r transitionRing
	for i := range recentTransitions + 5 {
		r.add(Transition{Cause: strconv.Itoa(i)})
	}
	l := r.list()
	if len(l) != recentTransitions || l[0].Cause != "5" || l[len(l)-1].Cause != strconv.Itoa(recentTransitions+4) {
		t.Fatalf("ring order wrong: first %q last %q len %d", l[0].Cause, l[len(l)-1].Cause, len(l))
	}
}

func TestFixedPortAndMetricsURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := newSup(t, "ok", func(c *Config) { c.Port = port })
	want := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	if got := s.Status().MetricsURL; got != want {
		t.Fatalf("stopped: metrics URL %q, want %q", got, want)
	}
	lease := ensure(t, s)
	defer lease.Release()
	if lease.URL != "http://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("worker at %s, want port %d", lease.URL, port)
	}
	if got := s.Status().MetricsURL; got != want {
		t.Fatalf("ready: metrics URL %q, want %q", got, want)
	}
}

func TestReachable(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "::1", "127.0.0.1": "127.0.0.1", "10.1.2.3": "10.1.2.3", "worker": "worker"} {
		if got := reachable(in); got != want {
			t.Errorf("reachable(%q) = %q, want %q", in, got, want)
		}
	}
}

// A worker bound to every interface (as in a container, for a scraper
// elsewhere) is reached on loopback.
func TestWorkerOnAllInterfaces(t *testing.T) {
	s := newSup(t, "ok", func(c *Config) { c.Host = "0.0.0.0" })
	l := ensure(t, s)
	defer l.Release()
	if !strings.HasPrefix(l.URL, "http://127.0.0.1:") {
		t.Fatalf("worker URL %s, want loopback", l.URL)
	}
}
