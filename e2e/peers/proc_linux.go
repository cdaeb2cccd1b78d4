package peers

import "syscall"

// childProcAttr makes the kernel send SIGTERM to a child when the test
// binary dies without running its cleanups (a panic or a -timeout kill), so
// no peer outlives the test run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
