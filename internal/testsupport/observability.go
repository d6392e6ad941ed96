// Package testsupport holds helpers shared by tests of several packages.
package testsupport

import (
	"os"
	"os/exec"
	"testing"
)

// NeedBinary returns the path of an external program a test drives
// (promtool, prometheus, chromium, docker-compose). When it is missing the
// test fails under CI=true (CI installs it: .ci/run) and is skipped
// elsewhere, saying what to install.
func NeedBinary(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "none of " + joinNames(names) + " on PATH (Debian: apt-get install prometheus chromium docker-compose)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func joinNames(ns []string) string {
	s := ""
	for i, n := range ns {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
