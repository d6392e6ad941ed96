// Command sidebyside measures what a proxy adds in front of a trivial
// backend, side by side in one run: straight to the backend ("direct"),
// through `llmlab serve` (engine external) and, when installed, through
// nginx (keepalive upstream). For each it runs a closed loop (N clients)
// and an open loop (a constant rate) with llmlab's own load generator
// (internal/bench, in this process) and prints the closed-loop throughput
// as a ratio to direct, the added open-loop latency, and the proxy's CPU
// per request from /proc/<pid>/stat (utime+stime of the process and its
// live children, before and after each run). Run it through
// scripts/perf/sidebyside.sh, which builds the binaries.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/slo"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

type options struct {
	llmlab, backend, nginx string
	duration               time.Duration
	concurrency            int
	rate                   float64
	outputTokens           int
	stream                 bool
	eventInterval          time.Duration
	nginxWorkers           string
	jsonOut                string
	proxyCPUs, backendCPUs string
	cpuProfile             string
}

func main() {
	var o options
	flag.StringVar(&o.llmlab, "llmlab", "bin/llmlab", "llmlab binary")
	flag.StringVar(&o.backend, "backend", "", "backend binary (scripts/perf/backend)")
	flag.StringVar(&o.nginx, "nginx", "auto", "nginx binary; auto: from PATH or /usr/sbin if installed; none: skip")
	flag.StringVar(&o.nginxWorkers, "nginx-workers", "auto", "nginx worker_processes")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "each run's length (1 s of it warm-up)")
	flag.IntVar(&o.concurrency, "concurrency", 32, "closed-loop clients")
	flag.Float64Var(&o.rate, "rate", 1000, "open-loop rate, req/s")
	flag.IntVar(&o.outputTokens, "output-len", 4, "tokens in each answer")
	flag.BoolVar(&o.stream, "stream", false, "streamed answers: --output-len token events each, plus usage and [DONE] (nginx gets proxy_buffering off)")
	flag.DurationVar(&o.eventInterval, "event-interval", 0, "backend's pause between streamed events")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures as JSON to this file")
	flag.StringVar(&o.proxyCPUs, "proxy-cpus", "", "taskset CPU list for the proxy (empty: no pinning)")
	flag.StringVar(&o.backendCPUs, "backend-cpus", "", "taskset CPU list for the backend (empty: no pinning)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of llmlab serve during its closed-loop run to this file (serve runs with --pprof)")
	flag.Parse()
	if o.backend == "" {
		fmt.Fprintln(os.Stderr, "sidebyside: --backend is required")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

// target is one path to the backend.
type target struct {
	name    string
	url     string
	pid     int    // the proxy's process (0 for direct)
	profile string // --cpuprofile: where to write its closed-loop CPU profile
}

// figures are one target's results.
type figures struct {
	Name          string  `json:"name"`
	ClosedRPS     float64 `json:"closed_rps"`
	ClosedRatio   float64 `json:"closed_ratio_to_direct"`
	ClosedCPUus   float64 `json:"closed_proxy_cpu_us_per_req"`
	ClosedBackend float64 `json:"closed_backend_cpu_us_per_req"`
	ClosedFailed  int64   `json:"closed_failed"`
	OpenRate      float64 `json:"open_rate"`
	OpenP50ms     float64 `json:"open_e2e_p50_ms"`
	OpenP99ms     float64 `json:"open_e2e_p99_ms"`
	AddedP50ms    float64 `json:"open_added_p50_ms"`
	AddedP99ms    float64 `json:"open_added_p99_ms"`
	OpenCPUus     float64 `json:"open_proxy_cpu_us_per_req"`
	OpenFailed    int64   `json:"open_failed"`
	OpenInvalid   bool    `json:"open_invalid"`
	// Streams (--stream): TTFT in the open loop, and the proxy's CPU per
	// relayed event (token events + usage + [DONE]) in the closed loop.
	OpenTTFTp50ms   float64 `json:"open_ttft_p50_ms,omitempty"`
	OpenTTFTp99ms   float64 `json:"open_ttft_p99_ms,omitempty"`
	AddedTTFTp99ms  float64 `json:"open_added_ttft_p99_ms,omitempty"`
	ClosedTTFTp99ms float64 `json:"closed_ttft_p99_ms,omitempty"`
	ClosedCPUusEvt  float64 `json:"closed_proxy_cpu_us_per_event,omitempty"`
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "llmlab-perf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	be, beAddr, err := startPrinting(ctx, o.backendCPUs, o.backend, "listening on ", "--addr", "127.0.0.1:0", "--event-interval", o.eventInterval.String())
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	defer stop(be)
	targets := []target{{name: "direct", url: "http://" + beAddr}}

	prof := filepath.Join(dir, "external.yaml")
	if err := os.WriteFile(prof, []byte(profileYAML(beAddr)), 0o644); err != nil {
		return err
	}
	gwArgs := []string{"serve", "--profile", prof, "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"}
	if o.cpuProfile != "" {
		gwArgs = append(gwArgs, "--pprof")
	}
	gw, gwURL, err := startPrinting(ctx, o.proxyCPUs, o.llmlab, "listening on ", gwArgs...)
	if err != nil {
		return fmt.Errorf("llmlab serve: %w", err)
	}
	defer stop(gw)
	gwURL, _, _ = strings.Cut(gwURL, " ")
	targets = append(targets, target{name: "llmlab serve", url: gwURL, pid: gw.Process.Pid, profile: o.cpuProfile})

	if ngx := findNginx(o.nginx); ngx != "" {
		ng, url, err := startNginx(ctx, o, ngx, dir, beAddr)
		if err != nil {
			return fmt.Errorf("nginx: %w", err)
		}
		defer stop(ng)
		targets = append(targets, target{name: "nginx", url: url, pid: ng.Process.Pid})
	} else {
		fmt.Fprintln(os.Stderr, "nginx not installed: measuring direct and llmlab serve only")
	}

	for _, t := range targets {
		if err := waitReady(ctx, t.url); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	kind := "answers"
	if o.stream {
		kind = fmt.Sprintf("streams (%v between events)", o.eventInterval)
	}
	fmt.Printf("side by side: %d CPUs (GOMAXPROCS %d), backend %s, %v per run, closed loop %d clients, open loop %.0f req/s, %d-token %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), beAddr, o.duration, o.concurrency, o.rate, o.outputTokens, kind)

	var out []figures
	for _, t := range targets {
		f := figures{Name: t.name, OpenRate: o.rate}
		// Warm-up, closed and open: connections, the proxy's pools and
		// its goroutines, so the first target is not the only cold one.
		for _, c := range []bench.Config{{Concurrency: o.concurrency}, {Rate: o.rate}} {
			c.Duration, c.Warmup = 2*time.Second, time.Second
			if _, _, _, err := measure(ctx, o, t, be.Process.Pid, c); err != nil {
				return fmt.Errorf("%s warm-up: %w", t.name, err)
			}
		}
		prof := startProfile(ctx, t, o.duration)
		res, cpu, beCPU, err := measure(ctx, o, t, be.Process.Pid, bench.Config{Concurrency: o.concurrency})
		if perr := prof(); perr != nil {
			return fmt.Errorf("%s CPU profile: %w", t.name, perr)
		}
		if err != nil {
			return fmt.Errorf("%s closed loop: %w", t.name, err)
		}
		n := float64(res.SentTotal)
		f.ClosedRPS, f.ClosedCPUus, f.ClosedBackend, f.ClosedFailed = res.RPS, cpu/n*1e6, beCPU/n*1e6, res.FailedTotal
		if o.stream {
			f.ClosedTTFTp99ms, f.ClosedCPUusEvt = res.TTFTP99*1e3, f.ClosedCPUus/float64(o.outputTokens+2)
		}
		res, cpu, _, err = measure(ctx, o, t, be.Process.Pid, bench.Config{Rate: o.rate})
		if err != nil {
			return fmt.Errorf("%s open loop: %w", t.name, err)
		}
		f.OpenP50ms, f.OpenP99ms, f.OpenCPUus = res.E2EP50*1e3, res.E2EP99*1e3, cpu/float64(res.SentTotal)*1e6
		f.OpenFailed, f.OpenInvalid = res.FailedTotal, res.Invalid
		if o.stream {
			f.OpenTTFTp50ms, f.OpenTTFTp99ms = res.TTFTP50*1e3, res.TTFTP99*1e3
		}
		out = append(out, f)
	}
	for i := range out {
		out[i].ClosedRatio = out[i].ClosedRPS / out[0].ClosedRPS
		out[i].AddedP50ms = out[i].OpenP50ms - out[0].OpenP50ms
		out[i].AddedP99ms = out[i].OpenP99ms - out[0].OpenP99ms
		if o.stream {
			out[i].AddedTTFTp99ms = out[i].OpenTTFTp99ms - out[0].OpenTTFTp99ms
		}
	}
	printTable(os.Stdout, out)
	if o.stream {
		printStreams(os.Stdout, out, o.concurrency)
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func printTable(w io.Writer, out []figures) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tclosed req/s\tratio to direct\tproxy CPU µs/req\tbackend CPU µs/req\topen p50 ms\topen p99 ms\tadded p50 ms\tadded p99 ms\tproxy CPU µs/req (open)\tfailed\t")
	for _, f := range out {
		cpu, cpuOpen := fmt.Sprintf("%.1f", f.ClosedCPUus), fmt.Sprintf("%.1f", f.OpenCPUus)
		if f.Name == "direct" {
			cpu, cpuOpen = "-", "-"
		}
		failed := strconv.FormatInt(f.ClosedFailed+f.OpenFailed, 10)
		if f.OpenInvalid {
			failed += " (open loop INVALID: generator behind)"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%.1f\t%.3f\t%.3f\t%+.3f\t%+.3f\t%s\t%s\t\n",
			f.Name, f.ClosedRPS, f.ClosedRatio, cpu, f.ClosedBackend, f.OpenP50ms, f.OpenP99ms, f.AddedP50ms, f.AddedP99ms, cpuOpen, failed)
	}
	_ = tw.Flush()
}

func printStreams(w io.Writer, out []figures, conc int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "streams\tproxy CPU µs/event (closed)\tTTFT p99 ms, %d streams at once (closed)\topen TTFT p50 ms\topen TTFT p99 ms\tadded TTFT p99 ms\t\n", conc)
	for _, f := range out {
		cpu := fmt.Sprintf("%.2f", f.ClosedCPUusEvt)
		if f.Name == "direct" {
			cpu = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%.3f\t%+.3f\t\n", f.Name, cpu, f.ClosedTTFTp99ms, f.OpenTTFTp50ms, f.OpenTTFTp99ms, f.AddedTTFTp99ms)
	}
	_ = tw.Flush()
}

// startProfile fetches a CPU profile of t over the steady part of a run
// of length d (after its 1 s warm-up) into t.profile, in the background;
// the function it returns waits for it. A no-op when t.profile is empty.
func startProfile(ctx context.Context, t target, d time.Duration) func() error {
	if t.profile == "" {
		return func() error { return nil }
	}
	secs := max(1, int((d-2*time.Second)/time.Second))
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			select {
			case <-time.After(time.Second + 500*time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/admin/debug/pprof/profile?seconds=%d", t.url, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET profile: %s", resp.Status)
			}
			f, err := os.Create(t.profile)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			fmt.Fprintf(os.Stderr, "%s: CPU profile of the closed loop (%d s) in %s\n", t.name, secs, t.profile)
			return f.Close()
		}()
	}()
	return func() error { return <-done }
}

// measure runs one bench configuration against t and returns its result
// and the CPU seconds the proxy and the backend used meanwhile.
func measure(ctx context.Context, o options, t target, backendPID int, c bench.Config) (bench.Result, float64, float64, error) {
	sc, err := bench.DefaultScenario()
	if err != nil {
		return bench.Result{}, 0, 0, err
	}
	sc.Stream, sc.InputTokens, sc.OutputTokens = o.stream, 16, o.outputTokens
	spec, err := slo.Default()
	if err != nil {
		return bench.Result{}, 0, 0, err
	}
	c.URL, c.Model, c.Scenario, c.SLO, c.Timeout = t.url, "m", sc, spec, 10*time.Second
	if c.Duration == 0 {
		c.Duration, c.Warmup = o.duration, time.Second
	}
	p0, b0 := cpuSeconds(t.pid), cpuSeconds(backendPID)
	res, err := bench.Run(ctx, c)
	p1, b1 := cpuSeconds(t.pid), cpuSeconds(backendPID)
	if err == nil && res.SentTotal == 0 {
		err = errors.New("nothing sent")
	}
	return res, p1 - p0, b1 - b0, err
}

// cpuSeconds is utime+stime of pid and of its live children (nginx's
// workers), from /proc; 0 for pid 0.
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	total := 0.0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ticks, ok := stat(p)
		if ok && (p == pid || ppid == pid) {
			total += float64(ticks) / userHZ
		}
	}
	return total
}

// stat reads ppid and utime+stime from /proc/<pid>/stat; the command name
// (field 2) may hold spaces, so fields count from the last ')'.
func stat(pid int) (ppid int, ticks int64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])             // field 4
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return ppid, ut + st, true
}

func profileYAML(backend string) string {
	return `name: perf-external
engine: external
model: m
url: http://` + backend + `
engine_args:
  max_model_len: 4096
  gpu_memory_utilization: 0.9
  max_num_seqs: 1024
  max_num_batched_tokens: 8192
  enable_chunked_prefill: true
  block_size: 16
gateway:
  idle_timeout: 0s
  queue_max: 4096
  max_conns: 0
`
}

// startPrinting starts a command (under taskset when cpus is set) and
// returns it with the rest of the first output line that holds marker.
func startPrinting(ctx context.Context, cpus, name, marker string, args ...string) (*exec.Cmd, string, error) {
	if cpus != "" {
		args = append([]string{"-c", cpus, name}, args...)
		name = "taskset"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), marker); ok && !sent {
				found <- strings.TrimSpace(rest)
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case s, ok := <-found:
		if !ok {
			stop(cmd)
			return nil, "", errors.New("exited before listening")
		}
		return cmd, s, nil
	case <-time.After(30 * time.Second):
		stop(cmd)
		return nil, "", errors.New("not listening after 30 s")
	}
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func findNginx(flagVal string) string {
	switch flagVal {
	case "none":
		return ""
	case "auto":
		if p, err := exec.LookPath("nginx"); err == nil {
			return p
		}
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx"
		}
		return ""
	}
	return flagVal
}

// startNginx runs nginx in the foreground with a keepalive upstream to the
// backend, everything (pid, logs, temp files) under dir.
func startNginx(ctx context.Context, o options, bin, dir, backend string) (*exec.Cmd, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`worker_processes %s;
pid %[2]s/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  upstream backend {
    server %[3]s;
    keepalive 256;
  }
  server {
    listen %[4]s;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering %[5]s;
    }
  }
}
`, o.nginxWorkers, dir, backend, addr, map[bool]string{false: "on", true: "off"}[o.stream])
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	args := []string{"-p", dir, "-c", path, "-g", "daemon off;"}
	name := bin
	if o.proxyCPUs != "" {
		args = append([]string{"-c", o.proxyCPUs, bin}, args...)
		name = "taskset"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	return cmd, "http://" + addr, nil
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/models", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s/v1/models not ready after 30 s", url)
}
