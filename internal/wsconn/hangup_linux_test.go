//go:build linux

package wsconn

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// watchedPair is rawPair with the hangup watch on. Its cleanup closes the
// Conn, as the proxy does, which ends the watch.
func watchedPair(t *testing.T, role Role) (*Conn, *net.TCPConn) {
	t.Helper()
	c, peer := rawPair(t, role)
	if !c.WatchHangups() {
		t.Fatal("WatchHangups refused a TCP connection")
	}
	t.Cleanup(func() { c.Close() })
	return c, peer
}

// TestHangupWatchEndsServe: with the watch on, a reader that parks after
// a short read still learns of the peer's end when the FIN or RST came
// with, or right behind, the last bytes it read — the case that made Serve
// read until EAGAIN (TestServeEnds' "EOF while parked" without the watch).
func TestHangupWatchEndsServe(t *testing.T) {
	msg := frame(fin(TextMessage), true, []byte("m"))
	cases := []struct {
		name   string
		parked bool // Serve is parked before the peer writes
		rst    bool // the peer resets instead of closing
	}{
		{"FIN with the message, before Serve", false, false},
		{"FIN behind the message, while parked", true, false},
		{"RST behind the message, before Serve", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 30 {
				c, peer := watchedPair(t, Server)
				pw := watchParks(c)
				h := &handler{c: c, collect: true}
				var wait func() error
				if tc.parked {
					wait = startServe(t, c, h.handle)
					recv(t, pw.parked, "park")
				}
				if _, err := peer.Write(msg); err != nil {
					t.Fatal(err)
				}
				if tc.rst {
					// The message is in the receive queue before the RST
					// comes (Serve is not running: no race on c).
					for !c.Unread() {
						time.Sleep(time.Millisecond)
					}
					_ = peer.SetLinger(0)
				}
				peer.Close()
				if !tc.parked {
					wait = startServe(t, c, h.handle)
				}
				err := wait()
				if h.msgs != 1 {
					t.Fatalf("%d messages, want 1", h.msgs)
				}
				var ce *websocket.CloseError
				switch {
				case tc.rst && errors.Is(err, syscall.ECONNRESET):
				case tc.rst:
					t.Fatalf("Serve: %v (%T), want ECONNRESET", err, err)
				case !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure:
					t.Fatalf("Serve: %v (%T), want close 1006", err, err)
				}
			}
		})
	}
}

// TestHangupWatchSkipsEmptyReads: a message at a time, the watched reader
// parks after each short read instead of reading again for EAGAIN, which
// is what the watch is for; the unwatched reader makes that extra read.
func TestHangupWatchSkipsEmptyReads(t *testing.T) {
	const n = 200
	msg := frame(fin(TextMessage), true, []byte("SEND\n\nx\x00"))
	for _, watch := range []bool{false, true} {
		c, peer := rawPair(t, Server)
		if watch && !c.WatchHangups() {
			t.Fatal("WatchHangups refused a TCP connection")
		}
		got := make(chan struct{}, 1)
		h := &handler{c: c}
		wait := startServe(t, c, func() bool {
			before := h.msgs
			stop := h.handle()
			for range h.msgs - before {
				got <- struct{}{}
			}
			return stop
		})
		for range n {
			if _, err := peer.Write(msg); err != nil {
				t.Fatal(err)
			}
			recv(t, got, "message")
		}
		peer.Close()
		_ = wait()
		// Serve has returned: its fields are the test's to read.
		empty := c.emptyReads
		c.Close()
		if watch && empty > n/10 {
			t.Errorf("watched: %d reads found nothing in %d messages, want almost none", empty, n)
		}
		if !watch && empty < n/2 {
			t.Errorf("unwatched: %d reads found nothing in %d messages; the test no longer shows the difference", empty, n)
		}
		t.Logf("watch %v: %d empty reads for %d messages", watch, empty, n)
	}
}

// TestHangupWatchLifetime: the watcher runs while something is watched;
// the last Close ends it, and a later watch starts a new one. Closing
// twice, or a socket closed behind the Conn's back, leaves nothing behind.
func TestHangupWatchLifetime(t *testing.T) {
	if n := watchedHangups(); n != 0 {
		t.Fatalf("%d sockets watched before the test", n)
	}
	for round := range 2 {
		var cs []*Conn
		for range 3 {
			c, _ := rawPair(t, Client)
			if !c.WatchHangups() {
				t.Fatal("WatchHangups refused a TCP connection")
			}
			if again := c.WatchHangups(); !again {
				t.Fatal("a second WatchHangups reported no watch")
			}
			cs = append(cs, c)
		}
		if n := watchedHangups(); n != 3 {
			t.Fatalf("round %d: %d watched, want 3", round, n)
		}
		for _, c := range cs {
			c.Close()
			c.Close()
		}
		hangups.mu.Lock()
		n, running := len(hangups.conns), hangups.file != nil
		hangups.mu.Unlock()
		if n != 0 || running {
			t.Fatalf("round %d: after the last Close, %d watched, watcher open %v", round, n, running)
		}
	}
	// Not a socket: no watch, and Serve reads as before.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if New(a, Server, "", nil).WatchHangups() {
		t.Error("WatchHangups accepted a pipe")
	}
}

// TestHangupWatchIgnoresReusedDescriptor: an event for a socket closed
// meanwhile must not touch the socket that reused its descriptor number.
func TestHangupWatchIgnoresReusedDescriptor(t *testing.T) {
	c, _ := watchedPair(t, Server)
	c.Close()
	c.hungUp() // what a late event would do: Control fails on a closed socket
	d, peer := watchedPair(t, Server)
	d.hungUp() // on a live socket it shuts the read side
	var got error
	if err := d.raw.Control(func(fd uintptr) {
		var buf [1]byte
		_, got = syscall.Read(int(fd), buf[:])
	}); err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Fatalf("read after hungUp: %v, want end of input", got)
	}
	_ = peer
}

// watchedHangups reports the number of watched sockets.
func watchedHangups() int {
	hangups.mu.Lock()
	defer hangups.mu.Unlock()
	return len(hangups.conns)
}
