// Package tcpinfo reads what the kernel knows about a socket's queues and
// its peer's traffic: the bytes waiting to be read (SIOCINQ), the bytes
// the peer has not taken yet (SIOCOUTQ) and how long ago data last
// arrived (TCP_INFO's tcpi_last_data_recv).
//
// The answers are Linux's; elsewhere every function reports false (not
// known). The functions taking a descriptor must be called with one kept
// open by its owner, as inside syscall.RawConn's Control, Read or Write.
package tcpinfo

import (
	"net"
	"syscall"
	"time"
)

// Silence reports how long ago the kernel last received data from the
// peer on the TCP socket rc, whether the application has read it or not;
// false when that cannot be known (not a TCP socket, or not Linux). One
// system call.
func Silence(rc syscall.RawConn) (time.Duration, bool) {
	var d time.Duration
	var ok bool
	err := rc.Control(func(fd uintptr) { d, ok = LastDataReceived(fd) })
	return d, err == nil && ok
}

// PeerSilence reports, for any TCP connection, how long ago the kernel
// last received data from the peer (as Silence) and how many bytes wait
// unread in its receive queue; false when that cannot be known. For
// diagnostics, not a hot path.
func PeerSilence(nc net.Conn) (silence time.Duration, unread int, ok bool) {
	sc, isSC := nc.(syscall.Conn)
	if !isSC {
		return 0, 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	silence, okS := Silence(rc)
	var okQ bool
	if err := rc.Control(func(fd uintptr) { unread, okQ = ReceiveQueue(fd) }); err != nil {
		return 0, 0, false
	}
	return silence, unread, okS && okQ
}
