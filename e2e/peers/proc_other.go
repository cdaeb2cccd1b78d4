//go:build !linux

package peers

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
