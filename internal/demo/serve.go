package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// server is `llmlab serve` run as a child process: the demo drives the
// binary users run, not the gateway in-process.
type server struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// listenLine is serve's first stdout line.
var listenLine = regexp.MustCompile(`listening on (https?://\S+)`)

// startServer launches exe serve with args, logging its output to log,
// and returns once it prints the address it listens on.
func startServer(ctx context.Context, exe string, args []string, log io.Writer, timeout time.Duration) (*server, error) {
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	cmd.Stderr = log
	cmd.SysProcAttr = serveProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start serve: %w", err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	urls := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				urls <- m[1]
			}
		}
		_, _ = io.Copy(log, stdout)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it to the end first
		s.err = cmd.Wait()
		close(s.done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s.url = <-urls:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("serve exited before listening: %v (see its log)", s.err)
	case <-ctx.Done():
		s.stop(5 * time.Second)
		return nil, ctx.Err()
	case <-t.C:
		s.stop(5 * time.Second)
		return nil, fmt.Errorf("serve did not listen within %v", timeout)
	}
}

// stop asks serve to drain and exit (SIGINT, as Ctrl-C would), killing it
// after grace; it returns serve's exit error, nil for a clean exit.
func (s *server) stop(grace time.Duration) error {
	select {
	case <-s.done:
		return s.exitErr()
	default:
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = s.cmd.Process.Kill()
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.done:
		return s.exitErr()
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("serve did not exit within %v of SIGINT; killed", grace)
	}
}

func (s *server) exitErr() error {
	if s.err != nil {
		return fmt.Errorf("serve (pid %s): %w", strconv.Itoa(s.cmd.Process.Pid), s.err)
	}
	return nil
}
