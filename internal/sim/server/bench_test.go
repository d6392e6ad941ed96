package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/openai"
)

// stepRecorder collects the step timings of the engine loop.
type stepRecorder struct {
	mu       sync.Mutex
	lags     []time.Duration // actual − modelled end, per step
	modelled time.Duration   // Σ modelled step time
	first    time.Time       // scheduled start of the first step
	last     time.Time       // actual end of the last step
	steps    int
	tokens   int
}

func (r *stepRecorder) observe(start, modelledEnd, end time.Time, tokens int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		r.first = start
	}
	r.last = end
	r.lags = append(r.lags, end.Sub(modelledEnd))
	r.modelled += modelledEnd.Sub(start)
	r.steps++
	r.tokens += tokens
}

// BenchmarkLiveStepTiming measures the live server's step-timing error
// with 256 concurrent streams of 200 input / 200 output tokens (ignore_eos),
// clients and server in this process, on this machine's cores:
//
//	go test -run XXX -bench LiveStepTiming -benchtime 1x ./internal/sim/server/
//
// Reported: lag_mean_us / lag_p99_us / lag_max_us (actual − modelled end of
// each step), wall/modelled (wall time of the run over Σ modelled step
// time; 1.0 means the simulator kept exactly to the model), steps, and
// cpu_util (process CPU seconds per wall second, on all cores).
func BenchmarkLiveStepTiming(b *testing.B) {
	for _, gpu := range []string{"rtx3050-4gb-laptop", "a100-40gb"} {
		b.Run("gpu="+gpu, func(b *testing.B) {
			cfg := testConfig()
			cfg.Engine.GPU = gpu
			cfg.Engine.MaxNumSeqs = 256
			cfg.Engine.MaxNumBatchedTokens = 2048
			for i := 0; i < b.N; i++ {
				runStepTiming(b, cfg, benchStreams)
			}
		})
	}
}

// benchStreams is the number of concurrent streams of the benchmark.
const benchStreams = 256

func runStepTiming(b *testing.B, cfg Config, streams int) {
	rec := &stepRecorder{}
	ts := startServer(b, cfg, rec.observe)
	body, _ := json.Marshal(obj{"prompt": make([]int, 200), "max_tokens": 200, "ignore_eos": true, "stream": true})
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	wall0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := ts.client.Post(ts.url+"/v1/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			rd := openai.NewSSEReader(resp.Body)
			n := 0
			for {
				d, err := rd.Next()
				if err != nil {
					errs <- err
					return
				}
				if bytes.Equal(d, []byte(openai.Done)) {
					break
				}
				n++
			}
			if n != 200 {
				errs <- fmt.Errorf("%d chunks, want 200", n)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(wall0)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	ts.stop()
	<-ts.loop.done

	rec.mu.Lock()
	defer rec.mu.Unlock()
	lags := slices.Clone(rec.lags)
	slices.Sort(lags)
	var sum time.Duration
	for _, l := range lags {
		sum += l
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	// All streams arrive at once, so the loop never idles between the
	// first step and the last: the run's wall time is last − first.
	run := rec.last.Sub(rec.first)
	b.ReportMetric(us(sum/time.Duration(len(lags))), "lag_mean_us")
	b.ReportMetric(us(lags[len(lags)/2]), "lag_p50_us")
	b.ReportMetric(us(lags[len(lags)*99/100]), "lag_p99_us")
	b.ReportMetric(us(lags[len(lags)-1]), "lag_max_us")
	b.ReportMetric(float64(run)/float64(rec.modelled), "wall/modelled")
	b.ReportMetric(float64(rec.steps), "steps")
	b.ReportMetric(us(rec.modelled/time.Duration(rec.steps)), "step_mean_us")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu_util")
	b.ReportMetric(float64(rec.tokens)/wall.Seconds(), "tokens/s")
	if rec.tokens != streams*200 {
		b.Fatalf("%d tokens, want %d", rec.tokens, streams*200)
	}
}
