package wsconn

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/stompgate/stompgate/internal/tcpinfo"
)

// writeLocked writes b under deadline or, when it is zero, the
// WriteTimeout rule:
//
//   - On a socket, no deadline is set before the write: one that does not
//     block needs none. writeRaw arms one when the socket is full (blocked:
//     now+WriteTimeout, or the first checkpoint), again each time the
//     socket accepted bytes before filling up again, and writeAll at each
//     checkpoint (checkpoint); writeAll removes it once the write is done.
//     The common path makes no clock read and no deadline call.
//   - Elsewhere (TLS) the write cannot be watched from inside, so the
//     deadline is set ahead: to now+1.5×WriteTimeout whenever less than
//     WriteTimeout is left, so that every chunk (writeAll) starts with at
//     least WriteTimeout, while a busy connection resets it only once per
//     half WriteTimeout.
//
// An explicit deadline (a control frame's) is a hard one: progress does
// not move it. Every deadline is capped by SetCloseDeadline's.
func (c *Conn) writeLocked(b []byte, deadline time.Time, now int64) error {
	if len(b) == 0 {
		return nil
	}
	c.wext = deadline.IsZero() && c.opts.WriteTimeout > 0
	var err error
	switch {
	case !deadline.IsZero():
		err = c.setWriteDeadline(stampOf(deadline))
	case c.wext && c.raw == nil:
		if now == 0 {
			now = Now()
		}
		wt := int64(c.opts.WriteTimeout)
		if left := c.wdeadline.Load() - now; left < wt || left > wt+wt/2 {
			err = c.setWriteDeadline(now + wt + wt/2)
		}
	case c.wdeadline.Load() != 0:
		// A control frame's deadline: data on a socket waits under
		// none until it blocks, and without a WriteTimeout under none
		// at all.
		err = c.setWriteDeadline(0)
	}
	if err != nil {
		return c.writeFailed(err)
	}
	if err := c.writeAll(b); err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// stampOf converts a deadline to a stamp, Time's inverse: through the
// monotonic clock when t carries a reading (as time.Now's do), so that
// Time(stampOf(t)) is the same instant.
func stampOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	n := clockBaseUnix + int64(t.Sub(clockBase))
	if n == 0 {
		n = -1 // a time, not "none"
	}
	return n
}

// effectiveDeadline is the earlier of a write deadline and a close
// deadline (stamps; 0: none).
func effectiveDeadline(w, closing int64) int64 {
	if closing != 0 && (w == 0 || closing < w) {
		return closing
	}
	return w
}

// setWriteDeadline records d (a stamp; 0: none) as the deadline wsconn
// wants and sets nc's to the earlier of it and the close deadline. Called
// with wmu held (or from writeRaw, whose caller holds it).
//
// SetCloseDeadline sets nc's deadline without wmu. Each side stores its
// value, sets nc's deadline from both, and reads both again, repeating if
// they changed meanwhile: so the last deadline set, by either, is the
// earlier of the two as they stand at the end.
func (c *Conn) setWriteDeadline(d int64) error {
	c.wdeadline.Store(d)
	for {
		eff := effectiveDeadline(d, c.closeDeadline.Load())
		if err := c.nc.SetWriteDeadline(Time(eff)); err != nil {
			return err
		}
		if effectiveDeadline(d, c.closeDeadline.Load()) == eff {
			return nil
		}
	}
}

// SetCloseDeadline sets a deadline no write outlives: from now on every
// write, a flush blocked in progress included, fails at t at the latest,
// with a timeout; WriteTimeout's progress rule no longer extends past t,
// and WriteControl's deadline is capped at t. It does not take the write
// lock (a blocked flush holds it): it sets the connection's write deadline
// directly, which wakes a write waiting past t.
//
// Safe from any goroutine, any number of times: the earliest t wins. A
// zero t is ignored.
func (c *Conn) SetCloseDeadline(t time.Time) {
	n := stampOf(t)
	if n == 0 {
		return
	}
	for {
		old := c.closeDeadline.Load()
		if old != 0 && old <= n {
			break
		}
		if c.closeDeadline.CompareAndSwap(old, n) {
			break
		}
	}
	for {
		eff := effectiveDeadline(c.wdeadline.Load(), c.closeDeadline.Load())
		if err := c.nc.SetWriteDeadline(Time(eff)); err != nil {
			return // closed: no write can wait
		}
		if effectiveDeadline(c.wdeadline.Load(), c.closeDeadline.Load()) == eff {
			return
		}
	}
}

// progressChunk is how much a write on a connection that is not a socket
// (TLS) is given at a time when WriteTimeout applies, so that a slow
// reader's progress is seen between chunks: a TLS record's most
// plaintext, so no record is cut short.
const progressChunk = 16 << 10

// writeAll writes b to the connection. On a socket it is one
// syscall.RawConn.Write around sendRaw, which waits for room (under the
// write deadline) only when the socket's send buffer is full.
func (c *Conn) writeAll(b []byte) error {
	if c.raw == nil {
		return c.writeChunks(b)
	}
	c.wpend, c.wsysErr, c.wwaited = b, 0, false
	err := c.raw.Write(c.writeFn)
	for err != nil && c.wwaited && c.wext && errors.Is(err, os.ErrDeadlineExceeded) && c.checkpoint() {
		err = c.raw.Write(c.writeFn)
	}
	c.wpend = nil
	if c.wwaited {
		c.writeWaited(err)
	}
	if err == nil && c.wsysErr != 0 {
		err = os.NewSyscallError("write", c.wsysErr)
	}
	if err == nil {
		return nil
	}
	// Worded like net.Conn.Write's errors, which the logs have shown so far.
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = "write"
		return oe
	}
	return &net.OpError{Op: "write", Net: c.nc.LocalAddr().Network(), Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: err}
}

// writeChunks is writeAll on a connection that is not a socket: under the
// WriteTimeout rule, in chunks, moving the deadline (see writeLocked)
// after each one when less than WriteTimeout is left.
func (c *Conn) writeChunks(b []byte) error {
	for c.wext && len(b) > progressChunk {
		if _, err := c.nc.Write(b[:progressChunk]); err != nil {
			return err
		}
		b = b[progressChunk:]
		now, wt := Now(), int64(c.opts.WriteTimeout)
		if c.wdeadline.Load()-now < wt {
			if err := c.setWriteDeadline(now + wt + wt/2); err != nil {
				return err
			}
		}
	}
	_, err := c.nc.Write(b)
	return err
}

// writeRaw is writeAll's loop inside syscall.RawConn.Write: returning false
// waits until the socket is writable again.
//
// The path where the socket is not full adds nothing but the sent flag;
// blocked and writeWaited, which move the deadline and stamp progress, run
// only when a write waits.
func (c *Conn) writeRaw(fd uintptr) bool {
	sent := false
	for len(c.wpend) > 0 {
		n, errno := sendRaw(fd, c.wpend)
		switch errno {
		case 0:
			c.wpend = c.wpend[n:]
			sent = true
		case syscall.EINTR:
		case syscall.EAGAIN:
			if sent || !c.wwaited {
				c.blocked(fd, sent)
			}
			c.wwaited = true
			return false
		default:
			c.wsysErr = errno
			if sent && c.wwaited {
				c.progress(Now())
			}
			return true
		}
	}
	if sent && c.wwaited {
		c.progress(Now())
	}
	return true
}

// blocked runs when the write is about to wait for room: for the first
// time, or again after the socket accepted bytes (sent). Under the
// WriteTimeout rule progress is counted from now: the wait gets
// now+WriteTimeout, or its first checkpoint (see Options.WriteTimeout), with the
// send queue's length to compare with there. A wait after one that made
// no progress (a wake-up that found no room) keeps its deadline.
//
// Setting the deadline here, inside syscall.RawConn.Write, is safe: the
// deadline calls take no lock that the write holds, and the wait that
// follows reads the new deadline.
func (c *Conn) blocked(fd uintptr, sent bool) {
	now := Now()
	if sent && c.wwaited {
		c.progress(now)
	}
	if c.wext {
		c.wlast = now
		c.woutq, c.wacks = tcpinfo.SendQueue(fd)
		c.armWait(now)
	}
}

// armWait sets the deadline of a write waiting under the WriteTimeout
// rule: WriteTimeout after the last progress, or the next checkpoint if
// sooner.
func (c *Conn) armWait(now int64) {
	d := c.wlast + int64(c.opts.WriteTimeout)
	if c.wacks {
		d = min(d, now+int64(min(c.opts.WriteTimeout/4, maxCheckpoint)))
	}
	// An error means the socket is closed: the wait reports it.
	_ = c.setWriteDeadline(d)
}

// maxCheckpoint bounds the interval between a waiting write's looks at
// its send queue, and so how late after the peer's last progress a write
// can fail: a quarter of the default 10 s WriteTimeout would be 2.5 s. A
// look is one ioctl, only while a write waits.
const maxCheckpoint = 250 * time.Millisecond

// checkpoint runs when a waiting write's deadline passed under the
// WriteTimeout rule, and reports whether the write should wait on: the
// peer took bytes from the send queue since the last look (progress, now)
// and the close deadline has not passed, or WriteTimeout since the last
// progress has not.
func (c *Conn) checkpoint() bool {
	now := Now()
	if cd := c.closeDeadline.Load(); cd != 0 && now >= cd {
		return false
	}
	if c.wacks {
		var q int
		var ok bool
		if c.raw.Control(func(fd uintptr) { q, ok = tcpinfo.SendQueue(fd) }) == nil && ok {
			if q < c.woutq {
				c.wlast = now
				c.progress(now)
			}
			c.woutq = q
		}
	}
	if now-c.wlast >= int64(c.opts.WriteTimeout) {
		return false
	}
	c.armWait(now)
	return true
}

// progress records that a write which had waited made progress.
func (c *Conn) progress(now int64) {
	if c.opts.WriteProgress != nil {
		c.opts.WriteProgress.Store(now)
	}
}

// writeWaited ends a write that waited: the deadline blocked armed is
// removed (the close deadline stays), so that it neither fails a later
// write nor fires for nothing. After a failure it no longer matters.
func (c *Conn) writeWaited(err error) {
	if err == nil && c.wext && c.wdeadline.Load() != 0 {
		// An error means the socket was closed: the next write says so.
		_ = c.setWriteDeadline(0)
	}
}
