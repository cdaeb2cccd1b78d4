//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || s390x || loong64)

package tcpinfo

import (
	"syscall"
	"time"
	"unsafe"
)

// sioCInQ is Linux's SIOCINQ (FIONREAD) on these architectures, sioCOutQ
// its SIOCOUTQ (TIOCOUTQ).
const (
	sioCInQ  = 0x541B
	sioCOutQ = 0x5411
)

// ReceiveQueue reports the bytes in the socket's receive queue, not yet
// read by the application (SIOCINQ).
func ReceiveQueue(fd uintptr) (int, bool) {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, sioCInQ, uintptr(unsafe.Pointer(&n)))
	return int(n), errno == 0
}

// SendQueue reports the socket's SIOCOUTQ: on a TCP socket the bytes
// written and not yet acknowledged by the peer, on a Unix stream socket
// the memory of what the peer has not read yet. It is made with
// syscall.RawSyscall, without the scheduler hand-off around a system
// call, as it never blocks: a writer waiting for room calls it at every
// checkpoint.
func SendQueue(fd uintptr) (int, bool) {
	var n int32
	_, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, sioCOutQ, uintptr(unsafe.Pointer(&n)))
	return int(n), errno == 0
}

// LastDataReceived is TCP_INFO's tcpi_last_data_recv on the TCP socket fd:
// how long ago the kernel last received data on it, read or not, to the
// millisecond.
func LastDataReceived(fd uintptr) (time.Duration, bool) {
	var info syscall.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	ok := errno == 0 && n >= uint32(unsafe.Offsetof(info.Last_data_recv)+unsafe.Sizeof(info.Last_data_recv))
	return time.Duration(info.Last_data_recv) * time.Millisecond, ok
}
