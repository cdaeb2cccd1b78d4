//go:build unix

package proxy

import (
	"net"
	"os"
	"syscall"
)

// socketPair returns the two ends of a connected Unix stream socket pair:
// a SockJS session's client leg and its bridge. A real socket, so the leg
// reads and writes as a TCP leg does (internal/wsconn's raw path).
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	a, err := fileConn(fds[0], "sockjs-leg")
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileConn(fds[1], "sockjs-bridge")
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fileConn turns fd into a net.Conn (which holds its own duplicate) and
// closes fd.
func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return net.FileConn(f)
}
