//go:build !linux

package supervisor

import "syscall"

// sysProcAttr puts the worker in its own process group so a stop reaches
// its children.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
