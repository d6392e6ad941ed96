// Package e2e builds the llmlab binary once and drives it as real processes
// on loopback. Each area keeps its tests in its own file (sim_test.go,
// serve_test.go, bench_test.go); the helpers here are shared.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/llmlab/llmlab/internal/testsupport"
)

// binPath is the llmlab binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "llmlab-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "llmlab")
	build := exec.Command("go", "build", "-o", binPath, "../../cmd/llmlab")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build llmlab:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running llmlab process.
type proc struct {
	cmd     *exec.Cmd
	out     *testsupport.SyncBuffer
	done    chan struct{}
	waitErr error
}

// start runs llmlab with args; the process is killed when the test ends.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startProgram(t, nil, binPath, args...)
}

// startProgram runs a program (llmlab or an external one such as
// prometheus) with env added to the environment; it is killed when the test
// ends, and its output logged when the test failed.
func startProgram(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testsupport.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", name, args, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %v output:\n%s", name, args, tail(p.out.String(), 8000))
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v; output:\n%s", timeout, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitHTTP polls url until it answers 200 or the process exits or timeout passes.
func waitHTTP(t testing.TB, p *proc, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited before %s was ready; output:\n%s", url, p.out.String())
		case <-ctx.Done():
			t.Fatalf("%s not ready within %v; output:\n%s", url, timeout, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
