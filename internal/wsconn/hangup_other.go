//go:build !linux

package wsconn

// WatchHangups reports false: parking after a short read needs epoll's
// EPOLLRDHUP (see hangup_linux.go), so the reader reads until EAGAIN.
func (c *Conn) WatchHangups() bool { return false }

func (c *Conn) unwatchHangups() {}
