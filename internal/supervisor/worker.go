package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// worker is one worker process (or, for an external worker, one start-up
// probe). Fields set at creation are read-only; stopping is guarded by the
// supervisor's mu; the rest is owned by the goroutines noted.
type worker struct {
	url     string
	logPath string
	cmd     *exec.Cmd // nil for an external worker
	started time.Time
	readyAt time.Time // under mu
	// stopping marks a stop the supervisor asked for, so its exit means
	// STOPPED rather than FAILED (under mu).
	stopping bool
	// exited is closed by the wait goroutine after cmd.Wait returns, and
	// reported once the state machine has recorded the exit.
	exited   chan struct{}
	reported chan struct{}
	exitErr  error
	// abort ends the start-up probe early.
	probeCtx context.Context
	abort    context.CancelFunc
}

// kill sends SIGKILL to the whole process group: the worker may have
// children (vLLM spawns engine-core processes) that must not outlive it.
func (w *worker) kill() { w.signal(syscall.SIGKILL) }

func (w *worker) signal(sig syscall.Signal) {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	// Negative pid: the process group that Setpgid created.
	if err := syscall.Kill(-w.cmd.Process.Pid, sig); err != nil {
		_ = w.cmd.Process.Signal(sig)
	}
}

// startLocked creates a worker, enters STARTING and launches its goroutine.
func (s *Supervisor) startLocked(cause string) {
	s.starts++
	w := &worker{started: time.Now(), exited: make(chan struct{}), reported: make(chan struct{})}
	w.probeCtx, w.abort = context.WithTimeout(context.Background(), s.cfg.StartupTimeout)
	s.cur = w
	if s.cfg.Command == nil {
		w.url = strings.TrimRight(s.cfg.URL, "/")
		s.setStateLocked(Starting, cause, "url", w.url)
		s.wg.Add(1)
		go s.probe(w)
		return
	}
	port, err := s.cfg.Port, error(nil)
	if port == 0 {
		port, err = freePort(s.cfg.Host)
	}
	if err != nil {
		s.failLocked(w, fmt.Errorf("choose a port: %w", err), "start failed")
		return
	}
	w.url = "http://" + net.JoinHostPort(reachable(s.cfg.Host), strconv.Itoa(port))
	argv := s.cfg.Command(s.cfg.Host, port)
	w.logPath = filepath.Join(s.cfg.LogDir, fmt.Sprintf("worker-%s-%d.log", w.started.UTC().Format("20060102T150405"), s.starts))
	if err := s.spawnLocked(w, argv); err != nil {
		w.abort()
		s.failLocked(w, err, "start failed")
		return
	}
	s.lastPID, s.lastLog = w.cmd.Process.Pid, w.logPath
	s.setStateLocked(Starting, cause, "pid", w.cmd.Process.Pid, "url", w.url, "log_file", w.logPath, "argv", argv)
	s.wg.Add(2)
	go s.wait(w)
	go s.probe(w)
}

// spawnLocked starts the process in its own process group with its output
// going to a log file. fork+exec takes about a millisecond, so doing it under
// the lock keeps the state machine simple.
func (s *Supervisor) spawnLocked(w *worker, argv []string) error {
	f, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open worker log: %w", err)
	}
	defer f.Close() // the child has its own copy of the descriptor
	fmt.Fprintf(f, "# llmlab supervisor: %s\n", strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), s.cfg.Env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return &WorkerError{Reason: "could not start " + argv[0], Line: err.Error(), LogFile: w.logPath}
	}
	w.cmd = cmd
	return nil
}

// wait reaps the process and reports its exit to the state machine the
// moment it happens.
func (s *Supervisor) wait(w *worker) {
	defer s.wg.Done()
	err := w.cmd.Wait()
	// The leader is gone, but its children (vLLM's engine core) may live on
	// in its process group holding the GPU and the port; STOPPED or FAILED
	// must mean the memory is free for the next start. The group id cannot
	// be reused while any member is alive, so this reaches only them.
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	w.exitErr = err
	close(w.exited)
	w.abort()

	s.mu.Lock()
	defer close(w.reported) // runs after the unlock below
	defer s.mu.Unlock()
	if s.cur != w {
		return // already failed (start-up timeout) and replaced
	}
	status := exitStatus(w.cmd.ProcessState)
	if w.stopping {
		s.cur = nil
		s.failures = 0
		s.setStateLocked(Stopped, "worker exited after stop", "pid", w.cmd.Process.Pid, "status", status)
		s.startPendingLocked()
		return
	}
	reason := "worker exited with " + status
	if s.state == Starting {
		reason = "worker exited during start-up with " + status
	}
	s.failLocked(w, tailError(reason, w.logPath), "worker exited unexpectedly")
}

// probe polls /health until 200 (READY), the process exits, or the start-up
// timeout passes. Connection refused means "still loading", as with vLLM.
func (s *Supervisor) probe(w *worker) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		if s.healthy(w.probeCtx, w.url) {
			s.mu.Lock()
			if s.cur == w && s.state == Starting && !w.stopping {
				w.readyAt = time.Now()
				d := w.readyAt.Sub(w.started)
				s.coldStart, s.coldAt = d, w.readyAt
				s.lastActive = w.readyAt
				s.setStateLocked(Ready, "health check passed", "cold_start", d.Round(time.Millisecond).String())
			}
			s.mu.Unlock()
			w.abort()
			return
		}
		select {
		case <-t.C:
			continue
		case <-w.exited:
			return // wait() reports it
		case <-w.probeCtx.Done():
		}
		s.mu.Lock()
		if s.cur == w && s.state == Starting && !w.stopping && errors.Is(w.probeCtx.Err(), context.DeadlineExceeded) {
			// Start-up timeout: kill it; wait() will find it replaced.
			w.kill()
			s.failLocked(w, tailError(fmt.Sprintf("worker not healthy within start-up timeout %s", s.cfg.StartupTimeout), w.logPath), "start-up timeout")
		}
		s.mu.Unlock()
		return
	}
}

func (s *Supervisor) healthy(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := s.health.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// drain waits until no lease is held (or DrainTimeout), then terminates.
// It ends early if w exits meanwhile (s.cur no longer w): leases counted
// after that belong to the next worker.
func (s *Supervisor) drain(w *worker) {
	timer := time.NewTimer(s.cfg.DrainTimeout)
	defer timer.Stop()
	s.mu.Lock()
	for s.leases > 0 && s.cur == w {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
			continue
		case <-timer.C:
		}
		s.mu.Lock()
		s.log.Warn("drain timeout, stopping worker with requests in flight", "in_flight", s.leases, "timeout", s.cfg.DrainTimeout.String())
		break
	}
	s.mu.Unlock()
	s.terminate(w) // calls wg.Done
}

// terminate sends SIGTERM to the process group and SIGKILL after StopGrace;
// wait() then moves the state to STOPPED. An external worker just stops.
func (s *Supervisor) terminate(w *worker) {
	defer s.wg.Done()
	w.abort()
	if w.cmd == nil {
		s.mu.Lock()
		if s.cur == w {
			s.cur = nil
			s.setStateLocked(Stopped, "external worker released")
			s.startPendingLocked()
		}
		s.mu.Unlock()
		return
	}
	select {
	case <-w.exited:
		return // exited during the drain; its group is already gone
	default:
	}
	w.signal(syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-w.exited:
	case <-t.C:
		s.log.Warn("worker ignored SIGTERM, killing", "pid", w.cmd.Process.Pid, "grace", s.cfg.StopGrace.String())
		w.kill()
	}
}

func exitStatus(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown status"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ps.ExitCode())
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WorkerError is a worker failure with the worker's own last error line
// (e.g. vLLM's "ValueError: No available memory for the cache blocks …").
type WorkerError struct {
	Reason  string   // what the supervisor saw: exit status, timeout
	Line    string   // the worker's last error line, if any
	Tail    []string // the last lines of its log
	LogFile string
}

func (e *WorkerError) Error() string {
	if e.Line == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Line
}

const tailLines = 20

// tailError reads the end of the worker's log and builds a WorkerError.
func tailError(reason, path string) *WorkerError {
	e := &WorkerError{Reason: reason, LogFile: path}
	e.Tail = readTail(path, 64<<10, tailLines)
	e.Line = errorLine(e.Tail)
	return e
}

func readTail(path string, maxBytes int64, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(0, st.Size()-maxBytes)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	var lines []string
	for l := range bytes.Lines(b) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && !bytes.HasPrefix(l, []byte("# llmlab supervisor:")) {
			lines = append(lines, string(l))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// errorLine picks the line that best explains a failure: the last one that
// mentions an error, else the last line. JSON log lines are reduced to their
// message and error fields.
func errorLine(lines []string) string {
	pick := ""
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			pick = l
		}
	}
	if pick == "" && len(lines) > 0 {
		pick = lines[len(lines)-1]
	}
	if strings.HasPrefix(pick, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(pick), &m) == nil {
			parts := []string{}
			for _, k := range []string{"msg", "error", "err"} {
				if v, ok := m[k].(string); ok && v != "" {
					parts = append(parts, v)
				}
			}
			if len(parts) > 0 {
				pick = strings.Join(parts, ": ")
			}
		}
	}
	const maxLen = 500
	if len(pick) > maxLen {
		pick = pick[:maxLen] + "…"
	}
	return pick
}
