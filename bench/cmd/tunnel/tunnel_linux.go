//go:build linux

package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"unsafe"
)

// EpollTunnel accepts connections on the TCP address listen and joins each
// to a fresh connection to upstream, with one goroutine (locked to its
// thread) running a level-triggered epoll loop over non-blocking sockets.
// Reads and writes are recvfrom/sendto through syscall.RawSyscall6, as in
// stompgate's wsconn. A direction whose peer cannot take all it read stops
// reading until the rest is written (EPOLLOUT), so a slow reader holds one
// buffer, never more. It returns only on a setup error.
func EpollTunnel(listen, upstream string) error {
	runtime.LockOSThread()
	laddr, err := sockaddr(listen)
	if err != nil {
		return err
	}
	uaddr, err := sockaddr(upstream)
	if err != nil {
		return err
	}
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(lfd, laddr); err != nil {
		return fmt.Errorf("bind %s: %w", listen, err)
	}
	if err := syscall.Listen(lfd, 4096); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	l := &loop{ep: ep, lfd: lfd, up: uaddr, ends: map[int]*end{}}
	if err := l.ctl(syscall.EPOLL_CTL_ADD, lfd, syscall.EPOLLIN); err != nil {
		return err
	}
	l.run()
	return nil
}

// end is one socket of a tunnel and the bytes read from it that its peer
// has not taken yet.
type end struct {
	fd       int
	peer     *end
	buf      []byte
	held     []byte // read from fd, not yet written to peer.fd
	interest uint32 // the events registered for fd
	dead     bool
}

type loop struct {
	ep, lfd int
	up      syscall.Sockaddr
	ends    map[int]*end // by descriptor
	closing []*end       // killed in this batch, closed at its end
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl(%d, fd %d): %w", op, fd, err)
	}
	return nil
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 512)
	for {
		n, err := syscall.EpollWait(l.ep, events, -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			e := l.ends[fd]
			if e == nil || e.dead {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.flush(e.peer) // e can take what its peer holds
			}
			switch {
			case e.dead:
			case len(e.held) == 0 && ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0:
				l.read(e) // finds the data, the end or the error
			case ev.Events&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0:
				l.kill(e) // reported however registered: do not spin on it
			}
		}
		// Close after the batch, so that no descriptor number is reused
		// while events for its old socket are still to be looked at.
		for _, e := range l.closing {
			delete(l.ends, e.fd)
			syscall.Close(e.fd)
		}
		l.closing = l.closing[:0]
	}
}

func (l *loop) accept() {
	for {
		c, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or a failed accept: wait for the next event
		}
		// The connect blocks the loop: loopback answers at once, and setup
		// is not what the benchmark measures.
		u, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = syscall.Connect(u, l.up); err == nil {
				err = syscall.SetNonblock(u, true)
			}
			if err != nil {
				syscall.Close(u)
			}
		}
		if err != nil {
			syscall.Close(c)
			continue
		}
		a := &end{fd: c, buf: make([]byte, tunnelBuffer)}
		b := &end{fd: u, buf: make([]byte, tunnelBuffer), peer: a}
		a.peer = b
		for _, e := range []*end{a, b} {
			_ = syscall.SetsockoptInt(e.fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
			l.ends[e.fd] = e
			e.interest = syscall.EPOLLIN
			if err := l.ctl(syscall.EPOLL_CTL_ADD, e.fd, e.interest); err != nil {
				l.kill(a)
				break
			}
		}
	}
}

// read takes what e's socket has and passes it to the peer.
func (l *loop) read(e *end) {
	n, errno := rawIO(syscall.SYS_RECVFROM, e.fd, e.buf, 0)
	switch {
	case errno == syscall.EAGAIN:
		return
	case errno != 0 || n == 0:
		l.kill(e)
		return
	}
	e.held = e.buf[:n]
	l.flush(e)
}

// flush writes what e holds to its peer; what the peer cannot take waits
// for EPOLLOUT on it, and e stops reading meanwhile.
func (l *loop) flush(e *end) {
	for len(e.held) > 0 {
		n, errno := rawIO(syscall.SYS_SENDTO, e.peer.fd, e.held, syscall.MSG_NOSIGNAL)
		if errno == syscall.EAGAIN {
			break
		}
		if errno != 0 {
			l.kill(e)
			return
		}
		e.held = e.held[n:]
	}
	l.update(e)
	l.update(e.peer)
}

// update registers the events e now waits for: input unless it holds
// bytes, output while its peer holds bytes for it.
func (l *loop) update(e *end) {
	var want uint32
	if len(e.held) == 0 {
		want |= syscall.EPOLLIN
	}
	if len(e.peer.held) > 0 {
		want |= syscall.EPOLLOUT
	}
	if want != e.interest && !e.dead {
		e.interest = want
		if l.ctl(syscall.EPOLL_CTL_MOD, e.fd, want) != nil {
			l.kill(e)
		}
	}
}

// kill ends both sockets of e's tunnel.
func (l *loop) kill(e *end) {
	for _, x := range []*end{e, e.peer} {
		if !x.dead {
			x.dead = true
			l.closing = append(l.closing, x)
		}
	}
}

func rawIO(trap uintptr, fd int, p []byte, flags int) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), uintptr(flags), 0, 0)
	return int(r), errno
}

func sockaddr(hostport string) (syscall.Sockaddr, error) {
	a, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa, nil
}
