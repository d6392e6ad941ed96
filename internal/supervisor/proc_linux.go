package supervisor

import "syscall"

// sysProcAttr puts the worker in its own process group (so a stop reaches
// its children) and has the kernel signal it if llmlab dies without
// stopping it, so no worker outlives its supervisor holding the GPU. The
// signal is SIGTERM, not SIGKILL: vLLM stops its engine-core and GPU worker
// processes on SIGTERM, while a SIGKILLed vLLM leaves them running with the
// GPU memory (vllm-project/vllm#55510), and nothing of llmlab is left to
// clean up after it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
