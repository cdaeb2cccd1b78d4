//go:build linux

package wsconn

import (
	"os"
	"sync"
	"syscall"
)

// The hangup watcher lets a reader park after a short read, as nginx does,
// instead of reading once more only to be told EAGAIN: at small messages
// that extra read was a third of stompgate's system calls.
//
// A short read emptied the socket's receive queue, so any later input
// raises a new readiness event and wakes the parked reader — except the
// peer's FIN (or RST) when it arrived before that read: its event was
// already consumed by the wake-up that led to the read, the read returned
// the data before it, and nothing reports it again. nginx asks epoll for
// EPOLLRDHUP and knows; Go's poller folds EPOLLRDHUP into "readable".
//
// So stompgate keeps one epoll instance of its own, in which every watched
// socket is registered for EPOLLRDHUP only, edge-triggered: one event per
// connection's life, when the peer's FIN or RST arrives (data does not
// reach it: epoll filters events by the registered mask). On that event
// the watcher shuts the socket's read side down. That loses nothing (the
// peer has sent its last byte, and queued bytes stay readable), and it
// wakes every poller of the socket: Go's poller marks it readable, so the
// reader, parked or about to park, reads again and finds the end.
//
// The watcher's epoll descriptor is itself waited on through Go's poller
// (an epoll descriptor is pollable), so no thread blocks on it. Its
// goroutine runs while at least one socket is watched: the first
// registration starts it and the last Close ends it.
type hangupWatcher struct {
	mu    sync.Mutex
	file  *os.File // the epoll descriptor; nil when nothing is watched
	epfd  int
	conns map[uint64]*Conn // by registration id, carried in the event
	next  uint64
}

var hangups = hangupWatcher{conns: make(map[uint64]*Conn)}

// epollET is EPOLLET as the event mask's bit (syscall declares it as a
// negative int).
const epollET = 1 << 31

// WatchHangups lets the reader park after a short read (see the hangup
// watcher). It reports false when that cannot be done (not a socket, or
// epoll refused), and the reader then reads until EAGAIN as before. Call
// it once, before reading; Close ends the watch.
func (c *Conn) WatchHangups() bool {
	if c.raw == nil || c.hangupID != 0 {
		return c.hangupID != 0
	}
	w := &hangups
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil && !w.startLocked() {
		return false
	}
	w.next++
	id := w.next
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | epollET, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		err = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil || err != nil {
		if len(w.conns) == 0 {
			w.stopLocked()
		}
		return false
	}
	w.conns[id] = c
	c.hangupID = id
	return true
}

// unwatchHangups ends c's watch; the kernel drops the registration itself
// when the socket is closed.
func (c *Conn) unwatchHangups() {
	w := &hangups
	w.mu.Lock()
	if c.hangupID == 0 || w.conns[c.hangupID] != c {
		w.mu.Unlock()
		return
	}
	delete(w.conns, c.hangupID)
	var f *os.File
	if len(w.conns) == 0 {
		f = w.detachLocked()
	}
	w.mu.Unlock()
	if f != nil {
		// Outside the lock: Close waits for the watcher's callback, which
		// takes the lock.
		_ = f.Close()
	}
}

// hungUp wakes c's reader for the end of its input: see hangupWatcher.
func (c *Conn) hungUp() {
	// Control fails once the socket is closed, so a descriptor number
	// reused by a newer connection is never touched.
	_ = c.raw.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RD) })
}

func (w *hangupWatcher) startLocked() bool {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	// Non-blocking, so that os.NewFile registers it with Go's poller.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return false
	}
	f := os.NewFile(uintptr(epfd), "wsconn-hangups")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return false
	}
	w.file, w.epfd = f, epfd
	go w.run(rc)
	return true
}

func (w *hangupWatcher) stopLocked() {
	if f := w.detachLocked(); f != nil {
		_ = f.Close()
	}
}

func (w *hangupWatcher) detachLocked() *os.File {
	f := w.file
	w.file, w.epfd = nil, -1
	return f
}

// run handles the events of one epoll descriptor until it is closed (by
// the last unwatchHangups), which ends rc.Read.
func (w *hangupWatcher) run(rc syscall.RawConn) {
	var evs [64]syscall.EpollEvent
	var hit []*Conn
	_ = rc.Read(func(epfd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(epfd), evs[:], 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return true // the descriptor is unusable: stop
			}
			if n == 0 {
				return false // wait for the next event
			}
			w.mu.Lock()
			for _, ev := range evs[:n] {
				id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if c := w.conns[id]; c != nil {
					hit = append(hit, c)
				}
			}
			w.mu.Unlock()
			for i, c := range hit {
				c.hungUp()
				hit[i] = nil
			}
			hit = hit[:0]
		}
	})
}
