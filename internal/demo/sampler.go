package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// statusDoc is the part of the gateway's GET /status the demo reads.
type statusDoc struct {
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
	Worker struct {
		State string `json:"state"`
	} `json:"worker"`
	Queue struct {
		Depth    int `json:"depth"`
		InFlight int `json:"in_flight"`
	} `json:"queue"`
	Transitions []struct {
		From             string    `json:"from"`
		To               string    `json:"to"`
		At               time.Time `json:"at"`
		Cause            string    `json:"cause"`
		ColdStartSeconds float64   `json:"cold_start_seconds"`
		Error            string    `json:"error"`
	} `json:"transitions"`
}

// sampler polls /status: the worker's state, queue depth and in-flight
// count at each tick, and every transition the supervisor recorded (its
// ring holds 32, far more than happen between two polls).
type sampler struct {
	client       *http.Client
	url          string
	t0           time.Time
	every        time.Duration
	onTransition func(Transition)

	mu          sync.Mutex
	samples     []Sample
	transitions []Transition
	seen        map[string]bool
	lastErr     error
	profile     string
}

func newSampler(client *http.Client, gateway string, t0 time.Time, every time.Duration, onTransition func(Transition)) *sampler {
	return &sampler{client: client, url: gateway + "/status", t0: t0, every: every, onTransition: onTransition, seen: map[string]bool{}}
}

// run polls until ctx ends.
func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) poll(ctx context.Context) {
	doc, err := s.fetch(ctx)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return
	}
	s.lastErr = nil
	s.profile = doc.Profile.Name
	s.samples = append(s.samples, Sample{
		T: now.Sub(s.t0).Seconds(), State: doc.Worker.State,
		QueueDepth: doc.Queue.Depth, InFlight: doc.Queue.InFlight,
	})
	for _, tr := range doc.Transitions {
		key := tr.At.Format(time.RFC3339Nano) + tr.From + tr.To
		if s.seen[key] || tr.At.Before(s.t0) {
			continue
		}
		s.seen[key] = true
		t := Transition{
			T: tr.At.Sub(s.t0).Seconds(), From: tr.From, To: tr.To, Cause: tr.Cause,
			ColdStartSeconds: tr.ColdStartSeconds, Error: tr.Error,
		}
		s.transitions = append(s.transitions, t)
		if s.onTransition != nil {
			s.onTransition(t)
		}
	}
}

func (s *sampler) fetch(ctx context.Context) (*statusDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	return &doc, nil
}

// profileName is the profile serve reported (empty before the first poll).
func (s *sampler) profileName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profile
}

// latest returns the newest sample (ok false before the first).
func (s *sampler) latest() (Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// snapshot returns copies of everything gathered, and the last poll error.
func (s *sampler) snapshot() ([]Sample, []Transition, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...), append([]Transition(nil), s.transitions...), s.lastErr
}

// waitFor polls the latest sample until cond holds, ctx ends or timeout
// passes.
func (s *sampler) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(Sample) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(s.every / 2)
	defer tick.Stop()
	for {
		if smp, ok := s.latest(); ok && cond(smp) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-deadline.C:
			_, _, err := s.snapshot()
			if err != nil {
				return fmt.Errorf("%s did not happen within %v (last /status error: %w)", what, timeout, err)
			}
			return fmt.Errorf("%s did not happen within %v", what, timeout)
		case <-tick.C:
		}
	}
}
