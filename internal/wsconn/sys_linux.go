package wsconn

import (
	"syscall"
	"unsafe"
)

// recvRaw and sendRaw are read(2) and write(2) for a non-blocking socket,
// made as recvfrom(2) and sendto(2) with syscall.RawSyscall6.
//
// Why not syscall.Read and syscall.Write: on a socket that never blocks,
// the scheduler hand-off around a syscall (entersyscall/exitsyscall) is
// pure cost, and read(2)/write(2) go through the VFS layer and the file
// position lock (fdget_pos, vfs_write, sock_write_iter) before reaching
// the same socket code that recvfrom/sendto (nginx's recv/send) enter
// directly. docs/internals/hot-path.md#raw-syscalls gives the figure, the
// command that measures it and why it is kept.
//
// They must only be called with an fd from syscall.RawConn's Read or
// Write, which keeps it open, on a socket in non-blocking mode (every
// socket the net package makes).
func recvRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	raceWritten(p, int(n))
	return int(n), 0
}

func sendRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	raceRead(p)
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
