//go:build !unix

package proxy

import "net"

// socketPair returns the two ends of an in-memory connection: a SockJS
// session's client leg and its bridge.
func socketPair() (net.Conn, net.Conn, error) {
	a, b := net.Pipe()
	return a, b, nil
}
