package tune

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// depthSampler polls the worker's /metrics while a probe runs and keeps the
// peak of vllm:num_requests_running + vllm:num_requests_waiting (the
// requests in the engine: what a gateway in front would hold in flight and
// queued) and of waiting alone.
type depthSampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	peakIn      int
	peakWaiting int
}

func startSampler(ctx context.Context, client *http.Client, url string, every time.Duration) *depthSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &depthSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if running, waiting, ok := scrapeDepth(ctx, client, url); ok {
				s.mu.Lock()
				s.peakIn = max(s.peakIn, running+waiting)
				s.peakWaiting = max(s.peakWaiting, waiting)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peaks.
func (s *depthSampler) stop() (peakIn, peakWaiting int) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakIn, s.peakWaiting
}

// scrapeDepth reads the two gauges (summed over their label sets).
func scrapeDepth(ctx context.Context, client *http.Client, url string) (running, waiting int, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, false
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	var r, w float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, found := strings.Cut(line, "{")
		if !found {
			name, rest, _ = strings.Cut(line, " ")
		} else if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		var dst *float64
		switch name {
		case "vllm:num_requests_running":
			dst = &r
		case "vllm:num_requests_waiting":
			dst = &w
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			*dst += v
			ok = true
		}
	}
	return int(r), int(w), ok
}
