package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// handshakeConn records what gorilla's Dialer reads during the opening
// handshake. gorilla reads the 101 response through its own buffer, which
// may also hold the first frames the broker sent right after it; stompgate
// reads frames itself (internal/wsconn), so it must recover those bytes.
// A 101 response has no body, so they are exactly what follows the first
// empty line.
type handshakeConn struct {
	net.Conn
	mu        sync.Mutex
	recording bool
	read      []byte
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.recording {
		c.read = append(c.read, p[:n]...)
	}
	c.mu.Unlock()
	return n, err
}

// afterHandshake stops recording and returns the bytes read past the
// response's header section.
func (c *handshakeConn) afterHandshake() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording = false
	read := c.read
	c.read = nil
	end := -1
	if i := bytes.Index(read, []byte("\r\n\r\n")); i >= 0 {
		end = i + 4
	}
	if i := bytes.Index(read, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2 // bare-LF line ends, which Go's HTTP reader accepts too
	}
	if end < 0 || end >= len(read) {
		return nil
	}
	return read[end:]
}

// netDialer dials the upstream's TCP connection, with TLS for wss://, and
// wraps it for handshake recording. gorilla calls it with the dial context
// (DialTimeout).
func netDialer(tlsConfig *tls.Config) (plain, withTLS func(ctx context.Context, network, addr string) (net.Conn, error)) {
	var d net.Dialer
	plain = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &handshakeConn{Conn: nc, recording: true}, nil
	}
	withTLS = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// tls.Dialer takes the server name from addr when the config has
		// none, as gorilla does.
		td := tls.Dialer{NetDialer: &d, Config: tlsConfig}
		nc, err := td.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &handshakeConn{Conn: nc, recording: true}, nil
	}
	return plain, withTLS
}
