package main

import (
	"net"
	"sync"
)

// The tunnels below are floors, not proxies: they forward bytes between a
// client and the upstream without reading them (the WebSocket handshake
// passes through, and so does every frame), which is what nginx does after
// an Upgrade. They price the two ways a Go proxy can wait for sockets,
// without any of stompgate's WebSocket or STOMP work:
//
//   - GoroutineTunnel: one goroutine per direction, blocked in net.Conn.Read
//     and woken by Go's poller, as stompgate's pumps are.
//   - EpollTunnel (Linux): one goroutine that runs its own epoll loop over
//     non-blocking descriptors, as nginx's worker does.
//
// If even the goroutine floor costs more CPU per message than nginx, no
// change inside stompgate's pumps can reach nginx; the epoll floor says what
// an event-loop redesign could at best reach. bench/history.md ("Floors")
// has the figures.

// tunnelBuffer is the read buffer of each direction of both tunnels.
const tunnelBuffer = 16 << 10

// GoroutineTunnel accepts connections on ln and joins each to a fresh
// connection to upstream (host:port) until ln is closed.
func GoroutineTunnel(ln net.Listener, upstream string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				copyThenClose(up, c)
			}()
			copyThenClose(c, up)
			wg.Wait()
		}()
	}
}

// copyThenClose copies src to dst until either ends, then closes both so
// that the opposite direction ends too. It is not io.Copy: a TCPConn's
// ReadFrom would splice(2), which neither stompgate nor nginx's WebSocket
// tunnel does.
func copyThenClose(dst, src net.Conn) {
	buf := make([]byte, tunnelBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}
