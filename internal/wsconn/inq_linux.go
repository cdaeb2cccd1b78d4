//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || s390x || loong64)

package wsconn

import (
	"syscall"
	"unsafe"
)

// sioCInQ is Linux's SIOCINQ (FIONREAD) on these architectures: the bytes
// in a socket's receive queue. sioCOutQ is SIOCOUTQ (TIOCOUTQ): on a TCP
// socket the bytes written and not yet acknowledged by the peer, on a Unix
// stream socket the memory of what the peer has not read yet.
const (
	sioCInQ  = 0x541B
	sioCOutQ = 0x5411
)

func inq(fd uintptr) (int, bool) {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, sioCInQ, uintptr(unsafe.Pointer(&n)))
	return int(n), errno == 0
}

// outq is SIOCOUTQ, made with RawSyscall like sendRaw: it never blocks.
func outq(fd uintptr) (int, bool) {
	var n int32
	_, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, sioCOutQ, uintptr(unsafe.Pointer(&n)))
	return int(n), errno == 0
}

// lastDataRecv is TCP_INFO's tcpi_last_data_recv: milliseconds since the
// kernel last received data on the TCP socket fd (read or not).
func lastDataRecv(fd uintptr) (uint32, bool) {
	var info syscall.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	return info.Last_data_recv, errno == 0 && n >= uint32(unsafe.Offsetof(info.Last_data_recv)+unsafe.Sizeof(info.Last_data_recv))
}
