package wsconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// ErrLingerLimit is Linger's error when it read its byte limit before the
// peer closed.
var ErrLingerLimit = errors.New("wsconn: lingering close read its byte limit")

// Linger closes the connection as nginx's lingering_close does, so that
// what was sent last (an ERROR frame, the close frame) reaches a peer that
// is still sending. Closing a socket whose input was not all read makes
// the kernel send a TCP RST instead of a FIN, and the peer's kernel then
// drops what the peer had not read yet: the peer sees a bare 1006.
//
// Linger flushes nothing. It shuts the write side down (shutdown(SHUT_WR),
// so the peer gets a FIN after our last byte; on TLS, once the handshake is
// done, tls.Conn.CloseWrite's close_notify and then the FIN), then reads and
// drops whatever arrives — raw bytes, no frames are parsed; bytes already
// buffered are dropped too — until the peer closes (io.EOF: Linger returns
// nil), a read fails, the deadline passes (a zero deadline leaves the
// connection's read deadline as it is) or maxBytes were read
// (ErrLingerLimit; maxBytes <= 0: no limit). Then it closes the connection
// as Close does, which also ends the hangup watch, and gives back the read
// buffer: the Conn cannot be read again.
//
// It belongs to the reading goroutine, after the close frame was written
// and Serve returned. A concurrent Close (an abort timer)
// wakes it; it then returns net.ErrClosed. A writer blocked on a full
// socket would hold a TLS connection's CloseWrite: set a close deadline
// first (SetCloseDeadline). The bytes are read into a 4 KiB pooled buffer,
// given back on return.
func (c *Conn) Linger(deadline time.Time, maxBytes int64) error {
	c.releaseRead()
	if c.readErr == nil {
		c.readErr = net.ErrClosed
	}
	c.pendingErr = nil
	if c.closed.Load() {
		_ = c.Close()
		return net.ErrClosed
	}
	err := c.closeWrite()
	if err == nil && !deadline.IsZero() {
		err = c.nc.SetReadDeadline(deadline)
	}
	if err == nil {
		c.acquire(1) // the 4 KiB class
		if c.raw != nil {
			err = c.lingerRaw(maxBytes)
		} else {
			err = c.lingerRead(maxBytes)
		}
		c.releaseRead()
	}
	// Closing twice (after a concurrent Close) only fails: nothing to report.
	_ = c.Close()
	if err == io.EOF {
		return nil
	}
	return err
}

// closeWrite shuts the write side down.
func (c *Conn) closeWrite() error {
	if tc, ok := c.nc.(*tls.Conn); ok {
		if !tc.ConnectionState().HandshakeComplete {
			return nil
		}
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		if cw, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	if c.raw != nil {
		var err error
		if cerr := c.raw.Control(func(fd uintptr) { err = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); cerr != nil {
			return cerr
		}
		return err
	}
	return nil // a net.Pipe and the like: Close will do
}

// lingerRaw is Linger's reading on a socket: one syscall.RawConn.Read, in
// which Close can wake it (see readRaw).
func (c *Conn) lingerRaw(maxBytes int64) error {
	var rerr error
	left := maxBytes
	err := c.readRaw(func(fd uintptr) bool {
		for {
			if c.closed.Load() {
				rerr = net.ErrClosed
				return true
			}
			b := c.rbuf
			if left > 0 && int64(len(b)) > left {
				b = b[:left]
			}
			n, errno := recvRaw(fd, b)
			switch {
			case errno == syscall.EINTR:
				continue
			case errno == syscall.EAGAIN:
				return false
			case errno != 0:
				rerr = errno
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			if left > 0 {
				if left -= int64(n); left == 0 {
					rerr = ErrLingerLimit
					return true
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return rerr
}

// lingerRead is Linger's reading on other connections.
func (c *Conn) lingerRead(maxBytes int64) error {
	left := maxBytes
	for {
		b := c.rbuf
		if left > 0 && int64(len(b)) > left {
			b = b[:left]
		}
		n, err := c.nc.Read(b)
		if left > 0 {
			if left -= int64(n); left == 0 {
				return ErrLingerLimit
			}
		}
		if err != nil {
			return err
		}
	}
}
