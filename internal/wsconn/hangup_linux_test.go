//go:build linux

package wsconn

import (
	"errors"
	"net"
	"slices"
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

// TestHangupWatchSkipsEmptyReads: after a short read the watched reader
// parks at once instead of reading again to be told EAGAIN, which is what
// the watch is for; the unwatched reader makes that extra read. The
// handler sees the difference when the next message arrives while it
// handles a short read: the unwatched reader's next read returns it (no
// Parking in between), while the watched reader parks first (and wakes
// at once: the message made the socket readable).
func TestHangupWatchSkipsEmptyReads(t *testing.T) {
	msg := frame(fin(TextMessage), true, []byte("SEND\n\nx\x00"))
	for _, watch := range []bool{false, true} {
		c, peer := rawPair(t, Server)
		if watch && !c.WatchHangups() {
			t.Fatal("WatchHangups refused a TCP connection")
		}
		t.Cleanup(func() { c.Close() })
		var events []ServeEvent // the reading goroutine's until Serve returns
		h := &handler{c: c, stopAt: 2}
		var sendErr error
		wait := startServe(t, c, func(ev ServeEvent) bool {
			events = append(events, ev)
			if ev == Parking {
				return false
			}
			stop := h.arrived()
			if h.msgs == 1 && sendErr == nil && !stop {
				// The next message, in the receive queue before this
				// handler returns.
				if _, sendErr = peer.Write(msg); sendErr != nil {
					return true
				}
				for deadline := time.Now().Add(testTimeout); !c.Unread(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						sendErr = errors.New("the second message never reached the receive queue")
						return true
					}
				}
			}
			return stop
		})
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := wait(); err != nil || sendErr != nil || h.err != nil {
			t.Fatalf("Serve: %v; sending: %v; reading: %v", err, sendErr, h.err)
		}
		// Serve has returned: events is the test's to read. Parking may
		// come first, before the first message arrived.
		for len(events) > 0 && events[0] == Parking {
			events = events[1:]
		}
		want := []ServeEvent{Arrived, Arrived}
		if watch {
			want = []ServeEvent{Arrived, Parking, Arrived}
		}
		if !slices.Equal(events, want) {
			t.Errorf("watch %v: events %v after the first message, want %v", watch, events, want)
		}
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
	if New(a, Server, "", nil, Options{}).WatchHangups() {
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
