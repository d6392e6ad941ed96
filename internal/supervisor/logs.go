package supervisor

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"
)

// workerLogs is where worker output goes: one file, worker.log, in a
// private directory (0700; files 0600), rotated by size with a kept count.
// A directory the supervisor created itself (no LogDir given) is removed
// on Close unless KeepLogs.
type workerLogs struct {
	dir     string
	path    string
	owned   bool
	keep    bool
	out     *lumberjack.Logger
	removed bool
}

func openWorkerLogs(cfg Config) (*workerLogs, error) {
	l := &workerLogs{dir: cfg.LogDir, keep: cfg.KeepLogs}
	if l.dir == "" {
		dir, err := os.MkdirTemp("", "llmlab-worker-") // 0700
		if err != nil {
			return nil, fmt.Errorf("supervisor: log dir: %w", err)
		}
		l.dir, l.owned = dir, true
	} else if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("supervisor: log dir: %w", err)
	}
	l.path = filepath.Join(l.dir, "worker.log")
	l.out = &lumberjack.Logger{
		Filename:   l.path,
		MaxSize:    max(1, cfg.LogMaxSizeMB),
		MaxBackups: cfg.LogMaxBackups,
	}
	// lumberjack creates new files 0600; an existing file keeps its mode,
	// so open it now to find out whether it can be written.
	if _, err := l.out.Write(nil); err != nil {
		return nil, fmt.Errorf("supervisor: worker log: %w", err)
	}
	return l, nil
}

// sink is where one worker's output goes: the log file and the worker's
// tail (for its error). A failing log write (a full disk) is dropped rather
// than returned: an error would end the copy and the worker would die of
// SIGPIPE on its next write.
func (l *workerLogs) sink(tail *tailBuffer) io.Writer { return logSink{out: l.out, tail: tail} }

type logSink struct {
	out  io.Writer
	tail *tailBuffer
}

func (s logSink) Write(p []byte) (int, error) {
	_, _ = s.tail.Write(p)
	_, _ = s.out.Write(p)
	return len(p), nil
}

// close closes the log and removes a directory the supervisor created,
// unless asked to keep it.
func (l *workerLogs) close() error {
	err := l.out.Close()
	if l.owned && !l.keep && !l.removed {
		l.removed = true
		if rerr := os.RemoveAll(l.dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}
