//go:build !linux

package main

import "errors"

// EpollTunnel needs Linux's epoll.
func EpollTunnel(listen, upstream string) error {
	return errors.New("the epoll tunnel runs on Linux only")
}
