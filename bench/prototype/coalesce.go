package prototype

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// coalConn buffers writes while the opposite pump is working through input
// it has already read, and flushes them when that pump is about to block
// on a read (its bufio is empty): writes of one batch become one syscall.
type coalConn struct {
	net.Conn
	mu    sync.Mutex
	buf   []byte
	hold  bool
	other *coalConn
}

func (c *coalConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold && len(c.buf)+len(p) <= 64<<10 {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *coalConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *coalConn) setHold(on bool) {
	c.mu.Lock()
	c.hold = on
	if !on {
		c.flushLocked()
	}
	c.mu.Unlock()
}

func (c *coalConn) Read(p []byte) (int, error) {
	if o := c.other; o != nil {
		o.setHold(false) // about to block: what we forwarded goes out now
	}
	n, err := c.Conn.Read(p)
	if o := c.other; o != nil && n > 0 {
		o.setHold(true)
	}
	return n, err
}

type hijacker struct {
	http.ResponseWriter
	conn *coalConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &coalConn{Conn: c}
	return h.conn, brw, nil
}
