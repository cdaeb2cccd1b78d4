//go:build unix

package wsconn

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// unixPair returns both ends of a Unix stream socket pair, closed when the
// test ends. The writer's send buffer is the smallest the kernel allows
// (4.6 KiB on Linux), so that a reader's progress wakes a waiting writer
// every few KiB.
//
// The slow-reader tests use it rather than loopback TCP, whose progress,
// as a writer sees it, comes in lumps: the receiver reopens its window
// only after reading a good part of its buffer, and with a small one the
// sender waits for its persist timer (≥ 200 ms). Measured on Linux 6.18
// with a peer reading 64 KiB/s, whatever the SO_RCVBUF (4–128 KiB),
// SO_SNDBUF (8 KiB – autotuned) and MSS (536 – 64 KiB): 0.3–2 s between
// two writes that made progress, 17–29 s with the autotuned loopback send
// buffer (~4 MiB) — too coarse for a WriteTimeout of 300 ms. A Unix
// socket wakes the writer when the reader has taken about its send
// buffer: ~70 ms here. The data path is the same (syscall.RawConn, sendto,
// EAGAIN).
func unixPair(t *testing.T) (w, r *net.UnixConn) {
	t.Helper()
	w, r = socketPair(t)
	t.Cleanup(func() { w.Close(); r.Close() })
	if err := w.SetWriteBuffer(1); err != nil {
		t.Fatal(err)
	}
	return w, r
}

// TestWriteTimeoutSlowReader: a peer that reads 64 KiB/s is never cut,
// though each 32 KiB flush to it takes half a second, longer than the
// WriteTimeout of 300 ms: the socket keeps accepting bytes, and each time
// it does the deadline moves. Before, the deadline was set per flush and
// the first flush failed. WriteProgress is stamped along.
func TestWriteTimeoutSlowReader(t *testing.T) {
	w, r := unixPair(t)
	var wp atomic.Int64
	c := testConn(t, w, Options{WriteTimeout: 300 * time.Millisecond, WriteProgress: &wp})
	sr := readSlowly(r, 64<<10, 1<<10)
	p := payload(BinaryMessage, 32000, 2)
	start := time.Now()
	lastStamp := int64(0)
	stamps := 0
	for i := range 3 {
		if err := c.WriteMessage(BinaryMessage, p); err != nil {
			t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
		}
		if s := wp.Load(); s != lastStamp {
			stamps++
			lastStamp = s
		}
	}
	if elapsed := time.Since(start); elapsed < 3*c.opts.WriteTimeout {
		t.Errorf("3 messages took %v: not much slower than WriteTimeout, the test proves nothing", elapsed)
	}
	if counted(c).waits.Load() < 3 || stamps < 3 {
		t.Errorf("%d waits, WriteProgress moved after %d of 3 messages", counted(c).waits.Load(), stamps)
	}
	c.Close()
	got := bufio.NewReader(bytes.NewReader(sr.wait(t)))
	for range 3 {
		expectFrames(t, got, Server, rawFrame{fin: true, op: BinaryMessage, data: p})
	}
}

// TestCloseDeadlineStopsProgress: progress moves the WriteTimeout deadline
// but never past the close deadline.
func TestCloseDeadlineStopsProgress(t *testing.T) {
	w, r := unixPair(t)
	c := testConn(t, w, Options{WriteTimeout: 300 * time.Millisecond})
	sr := readSlowly(r, 64<<10, 1<<10)
	start := time.Now()
	c.SetCloseDeadline(start.Add(500 * time.Millisecond))
	var err error
	for i := 0; err == nil && i < 10; i++ {
		err = c.WriteMessage(BinaryMessage, make([]byte, 32000))
	}
	checkAround(t, "the timeout", time.Since(start), 500*time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("err %v, want a timeout", err)
	}
	c.Close()
	sr.wait(t)
}

// TestWriteProgress: the stamp moves only when a write that had found the
// socket full makes progress — not while nobody reads, not for writes that
// never wait; with or without a WriteTimeout.
func TestWriteProgress(t *testing.T) {
	w, r := unixPair(t)
	var wp atomic.Int64
	c := testConn(t, w, Options{WriteProgress: &wp})
	w.SetWriteBuffer(256 << 10) // room for all: these writes never wait
	for range 10 {
		if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// Read them all before the next part, so that nothing frees room.
	if _, err := io.ReadFull(r, make([]byte, 30)); err != nil {
		t.Fatal(err)
	}
	if wp.Load() != 0 || counted(c).waits.Load() != 0 {
		t.Fatalf("WriteProgress %d after writes that did not wait (%d waits)", wp.Load(), counted(c).waits.Load())
	}
	w.SetWriteBuffer(1)
	errc := blockedWriter(t, c, 64<<10)
	// Wake-ups without room do not count: nobody reads yet.
	if wp.Load() != 0 {
		t.Fatal("WriteProgress stamped while nobody read")
	}
	before := Now()
	go io_Discard(r)
	if err := recv(t, errc, "the blocked write"); err != nil {
		t.Fatal(err)
	}
	if s := wp.Load(); s < before || s > Now() {
		t.Fatalf("WriteProgress = %d, want a stamp in [%d, now]", s, before)
	}
}

// io_Discard reads r until it fails.
func io_Discard(r net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}
