package wstest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address whose port is free now, for a child
// process to bind. The port is taken below Linux's ephemeral range (32768
// and up): a port from that range, freed here, can be handed to one of the
// outgoing connections that tests running in parallel open before the
// child binds it ("address already in use").
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(20000+rand.IntN(12000)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	tb.Fatal("no free port below the ephemeral range")
	return ""
}

// TCPPair returns both ends of a TCP connection on 127.0.0.1, closed when
// the test ends: for tests that need a real socket (receive queues,
// TCP_INFO) rather than net.Pipe.
func TCPPair(tb testing.TB) (accepted, dialed *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		d.Close()
		tb.Fatal(r.err)
	}
	accepted, dialed = r.c.(*net.TCPConn), d.(*net.TCPConn)
	tb.Cleanup(func() { accepted.Close(); dialed.Close() })
	return accepted, dialed
}

// DialReadBuffer is a net.Dial for websocket.Dialer.NetDial that gives
// each TCP connection a receive buffer of n bytes: a client that then
// stops reading fills it quickly, so the proxy's writes to it block.
func DialReadBuffer(n int) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(n)
		}
		return c, err
	}
}
