package supervisor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file turns a worker's end into an error a client can act on: how
// the process ended, and the line of its own output that explains why.

// WorkerError is a worker failure with the worker's own last error line
// (e.g. vLLM's "ValueError: No available memory for the cache blocks …").
type WorkerError struct {
	Reason  string   // what the supervisor saw: exit status, signal, timeout
	Line    string   // the worker's last error line, if any
	Tail    []string // the last lines of its output
	LogFile string
}

func (e *WorkerError) Error() string {
	if e.Line == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Line
}

// describeExit says how a process ended: "exited with status 1" or
// "killed by signal 9 (SIGKILL)".
func describeExit(ps *os.ProcessState) string {
	if ps == nil {
		return "ended with an unknown status"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return fmt.Sprintf("killed by signal %d (%s)", int(sig), unix.SignalName(sig))
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// killedBySignal reports whether the process was ended by a signal: its
// last output line then says nothing about why (it was cut off).
func killedBySignal(ps *os.ProcessState) bool {
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

const tailLines = 20

// workerError builds the error of a worker's end from its recent output.
// A worker that exited by itself usually said why last, so without an
// error line its last line is quoted; one killed by a signal was cut off
// mid-work, and its last line (e.g. "Starting vLLM API server on …") is
// no explanation, so only an error line is quoted.
func workerError(reason string, tail *tailBuffer, logFile string, lastLineExplains bool) *WorkerError {
	e := &WorkerError{Reason: reason, LogFile: logFile}
	e.Tail = tail.lines(tailLines)
	e.Line = errorLine(e.Tail, lastLineExplains)
	return e
}

// errorLine picks the line that best explains a failure: the last one that
// mentions an error, else (if lastLineExplains) the last line. JSON log
// lines are reduced to their message and error fields.
func errorLine(lines []string, lastLineExplains bool) string {
	pick := ""
	for _, l := range lines {
		low := strings.ToLower(l)
		if strings.Contains(low, "error") || strings.Contains(low, "traceback") || strings.Contains(low, "panic:") || strings.Contains(low, "out of memory") {
			pick = l
		}
	}
	if pick == "" && lastLineExplains && len(lines) > 0 {
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

// tailBuffer keeps the last bytes a worker wrote, so its error is read
// from memory, not from a log file that may have just been rotated.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// lines returns the last n non-empty lines, without the supervisor's own
// header lines.
func (t *tailBuffer) lines(n int) []string {
	if t == nil {
		return nil // an external worker: no output of its own here
	}
	t.mu.Lock()
	b := bytes.Clone(t.b)
	t.mu.Unlock()
	var out []string
	for l := range bytes.Lines(b) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && !bytes.HasPrefix(l, []byte("# llmlab supervisor:")) {
			out = append(out, string(l))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
