//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || s390x || loong64)

package wsconn

import (
	"syscall"
	"unsafe"
)

// sioCInQ is Linux's SIOCINQ (FIONREAD) on these architectures: the bytes
// in a socket's receive queue.
const sioCInQ = 0x541B

func inq(fd uintptr) (int, bool) {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, sioCInQ, uintptr(unsafe.Pointer(&n)))
	return int(n), errno == 0
}
