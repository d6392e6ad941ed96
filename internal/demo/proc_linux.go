package demo

import "syscall"

// serveProcAttr has the kernel send serve SIGTERM if the demo dies without
// stopping it (killed, or a test's deadline), so serve drains and stops its
// worker instead of outliving the demo.
func serveProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
