package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
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
	// tail holds the end of the worker's output; copied is closed when
	// the copy of its output to the log has ended.
	tail   *tailBuffer
	copied chan struct{}
	output *os.File // the pipe's read end
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
	w.logPath = s.logs.path
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
// going, through a pipe, to the rotated log and the worker's tail.
// fork+exec takes about a millisecond, so doing it under the lock keeps the
// state machine simple.
func (s *Supervisor) spawnLocked(w *worker, argv []string) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("worker output pipe: %w", err)
	}
	w.tail = newTailBuffer(64 << 10)
	w.copied = make(chan struct{})
	sink := s.logs.sink(w.tail)
	fmt.Fprintf(sink, "# llmlab supervisor: start %d at %s: %s\n", s.starts, w.started.UTC().Format(time.RFC3339), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Env = append(os.Environ(), s.cfg.Env...)
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	pw.Close() // the child has its own copy; the copy ends when all copies close
	if err != nil {
		pr.Close()
		return &WorkerError{Reason: "could not start " + argv[0], Line: err.Error(), LogFile: w.logPath}
	}
	w.cmd = cmd
	w.output = pr
	// The copy ends when the worker and all of its process group have
	// closed the pipe: wait() kills the group after the leader exits.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(w.copied)
		_, _ = io.Copy(sink, pr)
		_ = pr.Close() // a second close (after a timeout) is harmless
	}()
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
	// The worker's last words are in the pipe: let the copy finish (the
	// group is dead, so it ends at once unless a process escaped the
	// group and holds the pipe open).
	select {
	case <-w.copied:
	case <-time.After(2 * time.Second):
		// Something outside the group (a daemonised grandchild) keeps
		// the pipe open: stop reading it, so Close does not wait on it.
		_ = w.output.Close()
		<-w.copied
	}
	close(w.exited)
	w.abort()

	s.mu.Lock()
	defer close(w.reported) // runs after the unlock below
	defer s.mu.Unlock()
	if s.cur != w {
		return // already failed (start-up timeout) and replaced
	}
	status := describeExit(w.cmd.ProcessState)
	if w.stopping {
		s.cur = nil
		s.failures = 0
		s.setStateLocked(Stopped, "worker exited after stop", "pid", w.cmd.Process.Pid, "status", status)
		s.startPendingLocked()
		return
	}
	reason := "worker " + status
	if s.state == Starting {
		reason += " during start-up"
	}
	s.failLocked(w, workerError(reason, w.tail, w.logPath, !killedBySignal(w.cmd.ProcessState)), "worker exited unexpectedly")
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

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
