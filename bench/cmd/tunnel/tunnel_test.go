package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpEcho echoes each connection's bytes back until the client closes it,
// and reports each connection's end on ended.
func tcpEcho(t *testing.T) (addr string, ended <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.Close()
				done <- struct{}{}
			}()
		}
	}()
	return ln.Addr().String(), done
}

// roundTrip sends n patterned bytes through addr while reading them back,
// checks them, then closes and waits for the echo to see the end.
func roundTrip(t *testing.T, addr string, ended <-chan struct{}, n int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // also ends the writer below if the test fails early
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		// Large enough that sockets fill and a direction waits for
		// EPOLLOUT in the epoll tunnel.
		c.Write(want)
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes came back changed")
	}
	c.Close() // the client leaves
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel did not close the upstream connection after the client left")
	}
}

func TestGoroutineTunnel(t *testing.T) {
	up, ended := tcpEcho(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go GoroutineTunnel(ln, up)
	for range 3 {
		roundTrip(t, ln.Addr().String(), ended, 8<<20)
	}
}

func TestEpollTunnel(t *testing.T) {
	up, ended := tcpEcho(t)
	// EpollTunnel takes an address: borrow a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	failed := make(chan error, 1)
	go func() { failed <- EpollTunnel(addr, up) }() // runs for the rest of the test binary
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			<-ended // the probe's tunnel
			break
		}
		select {
		case err := <-failed:
			t.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the epoll tunnel is not listening: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		roundTrip(t, addr, ended, 8<<20)
	}
}
