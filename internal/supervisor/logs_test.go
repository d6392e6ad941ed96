package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWorkerLogsPrivateAndRotated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	s := newSup(t, "chatty", func(c *Config) { c.LogDir, c.LogMaxSizeMB, c.LogMaxBackups = dir, 1, 1 })
	ensure(t, s).Release()
	// The worker wrote 1.5 MiB before it listened: one rotation.
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("log dir %v %v, want 0700", st.Mode(), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) == 2 {
			for _, e := range ents {
				fi, _ := e.Info()
				if fi.Mode().Perm() != 0o600 || fi.Size() > 1<<20+4096 {
					t.Fatalf("%s: mode %v size %d, want 0600 and at most ~1 MiB", e.Name(), fi.Mode(), fi.Size())
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want worker.log and one rotated file, got %v", ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOwnLogDirRemovedUnlessKept(t *testing.T) {
	for _, keep := range []bool{false, true} {
		s := newSup(t, "ok", func(c *Config) { c.LogDir, c.KeepLogs = "", keep })
		ensure(t, s).Release()
		dir := filepath.Dir(s.Status().LogFile)
		if !strings.Contains(dir, "llmlab-worker-") {
			t.Fatalf("log dir %q", dir)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(dir)
		if keep != (err == nil) {
			t.Fatalf("keep %v: stat %s after Close: %v", keep, dir, err)
		}
		if keep {
			os.RemoveAll(dir)
		}
	}
}

func TestKilledWorkerErrorNamesSignalNotLastLine(t *testing.T) {
	s := newSup(t, "ok", nil)
	ensure(t, s).Release()
	// The fake worker's last words are ordinary; a SIGKILL says nothing.
	s.mu.Lock()
	w := s.cur
	s.mu.Unlock()
	_, _ = w.tail.Write([]byte("INFO Starting vLLM API server on http://127.0.0.1:1\n"))
	w.kill()
	waitState(t, s, Failed)
	if got := s.Status().LastError; got != "worker killed by signal 9 (SIGKILL)" {
		t.Fatalf("last error %q", got)
	}
}

// A process that escapes the worker's group and keeps its output pipe
// open delays neither the failure report nor Close.
func TestEscapedGrandchildDoesNotBlock(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := newSup(t, "escape", func(c *Config) { c.Env = append(c.Env, "LLMLAB_FAKE_CHILD_PIDFILE="+pidFile) })
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	t0 := time.Now()
	_, err := s.EnsureReady(t.Context())
	if err == nil || !strings.Contains(err.Error(), "RuntimeError: escaping") {
		t.Fatalf("got %v, want the worker's error line", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 8*time.Second {
		t.Fatalf("failure and Close took %v", d)
	}
}
