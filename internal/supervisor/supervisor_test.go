package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/testsupport"
	"go.uber.org/goleak"
)

// The test binary doubles as a fake worker: with LLMLAB_FAKE_WORKER set it
// behaves like a worker process (a real process, in its own process group).
func TestMain(m *testing.M) {
	if mode := os.Getenv("LLMLAB_FAKE_WORKER"); mode != "" {
		fakeWorker(mode, os.Args[len(os.Args)-1])
		return
	}
	goleak.VerifyTestMain(m, lumberjackMill)
}

// lumberjackMill: lumberjack v2.2.1 starts one idle goroutine per Logger
// (for rotated-file clean-up) that Close does not stop
// (natefinch/lumberjack issue 56); one per supervisor is bounded.
var lumberjackMill = goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")

func fakeWorker(mode, port string) {
	switch mode {
	case "oom":
		time.Sleep(50 * time.Millisecond)
		fmt.Println("INFO loading weights")
		fmt.Println("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`.")
		fmt.Println("shutting down")
		os.Exit(1)
	case "hang":
		select {}
	case "escape":
		// A grandchild in its own session keeps the output pipe open
		// after the worker and its process group are gone.
		c := exec.Command("sleep", "30")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		_ = os.WriteFile(os.Getenv("LLMLAB_FAKE_CHILD_PIDFILE"), []byte(strconv.Itoa(c.Process.Pid)), 0o644)
		fmt.Println("RuntimeError: escaping")
		os.Exit(1)
	case "chatty":
		// 1.5 MiB of output: past a 1 MiB rotation size.
		line := strings.Repeat("x", 1023) + "\n"
		for range 1536 {
			fmt.Print(line)
		}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "child":
		// Like vLLM's engine core: a child in the worker's process group,
		// its pid written where the test can find it.
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		_ = os.WriteFile(os.Getenv("LLMLAB_FAKE_CHILD_PIDFILE"), []byte(strconv.Itoa(c.Process.Pid)), 0o644)
	}
	time.Sleep(100 * time.Millisecond) // loading: the port refuses connections
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}

func newSup(t *testing.T, mode string, tweak func(*Config)) *Supervisor {
	t.Helper()
	cfg := Config{
		Command: func(host string, port int) []string {
			return []string{os.Args[0], "-test.run=^$", fmt.Sprint(port)}
		},
		Env:            []string{"LLMLAB_FAKE_WORKER=" + mode},
		LogDir:         t.TempDir(),
		StartupTimeout: 10 * time.Second,
		StopGrace:      2 * time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func ensure(t *testing.T, s *Supervisor) *Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := s.EnsureReady(ctx)
	if err != nil {
		t.Fatalf("EnsureReady: %v", err)
	}
	return l
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitState(t *testing.T, s *Supervisor, want State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", s.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestColdStartServesAllWaiters(t *testing.T) {
	s := newSup(t, "ok", nil)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ensure(t, s)
			if resp, err := http.Get(l.URL + "/health"); err != nil {
				t.Error(err)
			} else {
				resp.Body.Close()
			}
			l.Release()
			l.Release() // harmless
		}()
	}
	wg.Wait()
	st := s.Status()
	if st.State != "READY" || st.Starts != 1 || st.Leases != 0 {
		t.Fatalf("status %+v: want READY, 1 start, 0 leases", st)
	}
	if st.LastColdStartSeconds < 0.1 || st.LastColdStartSeconds > 5 {
		t.Fatalf("cold start %.3fs: the fake loads for 0.1s", st.LastColdStartSeconds)
	}
}

func TestIdleStopKillsProcess(t *testing.T) {
	s := newSup(t, "ok", func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	l := ensure(t, s)
	pid := s.Status().PID
	time.Sleep(400 * time.Millisecond)
	if s.State() != Ready {
		t.Fatal("stopped while a lease was held")
	}
	l.Release()
	waitState(t, s, Stopped)
	if alive(pid) {
		t.Fatalf("worker pid %d still alive after idle stop", pid)
	}
	// Demand starts it again.
	ensure(t, s).Release()
	if st := s.Status(); st.Starts != 2 || st.PID == pid {
		t.Fatalf("status %+v: want a second, new process", st)
	}
}

func TestCrashDetectedAndRestartedOnDemand(t *testing.T) {
	s := newSup(t, "ok", nil)
	ensure(t, s).Release()
	pid := s.Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, Failed)
	if st := s.Status(); st.LastError != "worker killed by signal 9 (SIGKILL)" {
		t.Fatalf("last error %q should name the signal", st.LastError)
	}
	// The first retry is immediate.
	ensure(t, s).Release()
	if st := s.Status(); st.Starts != 2 || st.PID == pid || st.State != "READY" {
		t.Fatalf("status %+v: want READY with a new process", st)
	}
}

func TestFailedStartReportsWorkerErrorAndBacksOff(t *testing.T) {
	s := newSup(t, "oom", func(c *Config) { c.RestartBackoff = time.Hour; c.MaxRestartBackoff = time.Hour })
	ctx := context.Background()
	for i := range 2 {
		_, err := s.EnsureReady(ctx)
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("attempt %d: got %v, want UnavailableError", i, err)
		}
		if !strings.Contains(err.Error(), "No available memory for the cache blocks") {
			t.Fatalf("attempt %d: error %q lacks the worker's line", i, err)
		}
	}
	if st := s.Status(); st.Starts != 2 || st.ConsecutiveFailures != 2 {
		t.Fatalf("status %+v: want 2 starts, 2 failures", st)
	}
	// Third demand is inside the back-off: answered at once, no start.
	t0 := time.Now()
	_, err := s.EnsureReady(ctx)
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.RetryAfter < 30*time.Minute {
		t.Fatalf("got %v, want a back-off error with RetryAfter", err)
	}
	if time.Since(t0) > time.Second || s.Status().Starts != 2 {
		t.Fatal("back-off did not answer at once without starting")
	}
	// An operator stop clears the failure; an admin start ignores back-off.
	if err := s.Stop(ctx, "test"); err != nil || s.State() != Stopped {
		t.Fatalf("stop: %v, state %s", err, s.State())
	}
}

func TestStartupTimeout(t *testing.T) {
	s := newSup(t, "hang", func(c *Config) { c.StartupTimeout = 300 * time.Millisecond })
	_, err := s.EnsureReady(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start-up timeout") {
		t.Fatalf("got %v, want a start-up timeout", err)
	}
	pid := s.lastPIDForTest()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("hung worker %d not killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaiterContextCancel(t *testing.T) {
	s := newSup(t, "hang", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.EnsureReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if st := s.Status(); st.State != "STARTING" || st.Waiting != 0 {
		t.Fatalf("status %+v: want STARTING with no waiter", st)
	}
}

func TestStopDrainsLeases(t *testing.T) {
	s := newSup(t, "ok", nil)
	l := ensure(t, s)
	pid := s.Status().PID
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background(), "admin stop") }()
	waitState(t, s, Draining)
	select {
	case <-stopped:
		t.Fatal("Stop returned while a lease was held")
	case <-time.After(200 * time.Millisecond):
	}
	if !alive(pid) {
		t.Fatal("worker killed before drain finished")
	}
	l.Release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if s.State() != Stopped || alive(pid) {
		t.Fatalf("state %s, pid alive %v", s.State(), alive(pid))
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	s := newSup(t, "ignore-term", func(c *Config) { c.StopGrace = 200 * time.Millisecond })
	ensure(t, s).Release()
	t0 := time.Now()
	if err := s.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Fatalf("stopped after %v, before the grace period: SIGTERM was not ignored?", d)
	}
	if s.State() != Stopped {
		t.Fatalf("state %s", s.State())
	}
}

func TestClosedRefuses(t *testing.T) {
	s := newSup(t, "ok", nil)
	ensure(t, s).Release()
	pid := s.Status().PID
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatal("worker alive after Close")
	}
	if _, err := s.EnsureReady(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestBackoffSchedule(t *testing.T) {
	s := &Supervisor{cfg: Config{RestartBackoff: time.Second, MaxRestartBackoff: 5 * time.Second}}
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for n, w := range want {
		if got := s.backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
}

func TestErrorLine(t *testing.T) {
	got := errorLine([]string{"INFO a", `{"level":"ERROR","msg":"startup failed","error":"No available memory"}`, "bye"}, true)
	if got != "startup failed: No available memory" {
		t.Fatalf("got %q", got)
	}
	if got := errorLine([]string{"a", "b"}, true); got != "b" {
		t.Fatalf("got %q", got)
	}
	// A worker killed by a signal was cut off: its last ordinary line
	// explains nothing and is not quoted as the error.
	if got := errorLine([]string{"INFO Starting vLLM API server on http://127.0.0.1:8000"}, false); got != "" {
		t.Fatalf("got %q", got)
	}
}

// lastPIDForTest is the pid of the most recent worker process, live or not.
func (s *Supervisor) lastPIDForTest() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPID
}

func TestLeaseWorkerExited(t *testing.T) {
	s := newSup(t, "ok", nil)
	l := ensure(t, s)
	defer l.Release()
	if l.WorkerExited(context.Background(), 50*time.Millisecond) {
		t.Fatal("live worker reported as exited")
	}
	if err := syscall.Kill(s.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !l.WorkerExited(context.Background(), 5*time.Second) {
		t.Fatal("killed worker not reported")
	}
	// The exit is already recorded: no window where READY points at a dead worker.
	if st := s.State(); st != Failed {
		t.Fatalf("state %s right after WorkerExited, want FAILED", st)
	}
}

func TestDrainTimeoutStopsAnyway(t *testing.T) {
	s := newSup(t, "ok", func(c *Config) { c.DrainTimeout = 200 * time.Millisecond })
	l := ensure(t, s)
	defer l.Release()
	t0 := time.Now()
	if err := s.Stop(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond || s.State() != Stopped {
		t.Fatalf("stopped after %v in %s", d, s.State())
	}
}

// gone reports whether pid no longer runs: exited, or a zombie that only
// waits for init to reap it.
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !alive(pid)
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

func TestCrashKillsWorkersChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	s := newSup(t, "child", func(c *Config) { c.Env = append(c.Env, "LLMLAB_FAKE_CHILD_PIDFILE="+pidFile) })
	ensure(t, s).Release()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	if child == 0 || gone(child) {
		t.Fatalf("child %q not running", b)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	// Only the leader dies; its child would hold the GPU and the port.
	if err := syscall.Kill(s.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, Failed)
	deadline := time.Now().Add(2 * time.Second)
	for !gone(child) {
		if time.Now().After(deadline) {
			t.Fatalf("worker's child %d outlived the crashed worker", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A worker that exits while draining ends its drain: the drain must not go
// on waiting for the leases of the next worker and then signal a process
// group that is gone.
func TestDrainEndsWhenItsWorkerExits(t *testing.T) {
	var logs testsupport.SyncBuffer
	s := newSup(t, "ok", func(c *Config) {
		c.DrainTimeout = 300 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	l1 := ensure(t, s)
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background(), "test") }()
	waitState(t, s, Draining)
	if err := syscall.Kill(s.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	l2 := ensure(t, s) // a new worker, serving
	defer l2.Release()
	l1.Release()
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(logs.String(), "drain timeout") {
		t.Fatalf("the old worker's drain outlived it:\n%s", logs.String())
	}
	if s.State() != Ready {
		t.Fatalf("state %s, want READY", s.State())
	}
}

// An admin start while the worker drains is not lost: the gateway answers
// it 202, so once the old worker is gone a new one starts.
func TestStartDuringDrainStartsAfterIt(t *testing.T) {
	s := newSup(t, "ok", nil)
	l := ensure(t, s)
	pid := s.Status().PID
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background(), "test") }()
	waitState(t, s, Draining)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	l.Release()
	<-stopped
	waitState(t, s, Ready)
	if st := s.Status(); st.Starts != 2 || st.PID == pid {
		t.Fatalf("status %+v: want a second, new worker", st)
	}
}
