package supervisor

import "syscall"

// sysProcAttr puts the worker in its own process group (so a stop reaches
// its children) and has the kernel kill it if llmlab dies without stopping
// it, so no worker outlives its supervisor holding the GPU.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
