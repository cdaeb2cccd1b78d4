//go:build linux

package wsconn

import (
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriteTimeoutCheckpoints: a writer whose socket has a large send
// buffer is woken only once most of it was read — here after 1.5 MiB, 3 s
// of the peer's reading at 512 KiB/s — yet the peer reads all along: the
// checkpoints see the send queue shrink (SIOCOUTQ) and the write waits on,
// with WriteProgress stamped. Counting only the bytes the socket accepted,
// the write failed WriteTimeout after it blocked.
func TestWriteTimeoutCheckpoints(t *testing.T) {
	w, r := unixPair(t)
	if err := w.SetWriteBuffer(1 << 20); err != nil { // the kernel doubles it
		t.Fatal(err)
	}
	var wp atomic.Int64
	c := testConn(t, w, Options{WriteTimeout: 300 * time.Millisecond, WriteProgress: &wp})
	const msg = 3 << 20
	errc := blockedWriter(t, c, msg)
	// Slowly for four WriteTimeouts, then at full speed.
	slow := time.Now().Add(4 * c.opts.WriteTimeout)
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, 4<<10)
		start, total := time.Now(), 0
		for time.Now().Before(slow) {
			n, err := r.Read(buf)
			if err != nil {
				read <- err
				return
			}
			total += n
			time.Sleep(time.Until(start.Add(time.Duration(float64(total) / (512 << 10) * float64(time.Second)))))
		}
		_, err := io.CopyN(io.Discard, r, int64(msg+10-total))
		read <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("the write ended while the peer read slowly: %v", err)
	case <-time.After(time.Until(slow)):
	}
	if s := Time(wp.Load()); time.Until(s) < -c.opts.WriteTimeout/2 {
		t.Errorf("WriteProgress %v, more than WriteTimeout/2 ago though the peer reads", s)
	}
	if err := recv(t, errc, "the write"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := recv(t, read, "the peer's reading"); err != nil {
		t.Fatal(err)
	}
}

// TestWriteTimeoutCheckpointsTCP is TestWriteTimeoutCheckpoints on loopback
// TCP, as for a broker on the same host: the send buffer autotunes to
// ~4 MiB, so a peer reading 128 KiB/s wakes a waiting writer every ~10 s,
// while its acknowledgements, paced by the receive window (its 16 KiB
// buffer) and the kernel's zero-window probes, come every 0.2–0.7 s
// (measured: see unixPair). Without the checkpoints the write failed at
// WriteTimeout; with them it lasts as long as the peer reads. 3 s.
func TestWriteTimeoutCheckpointsTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s")
	}
	var wp atomic.Int64
	c, peer := rawPair(t, Server, Options{WriteTimeout: time.Second, WriteProgress: &wp})
	c.nc.SetDeadline(time.Time{})
	peer.SetDeadline(time.Time{})
	peer.SetReadBuffer(16 << 10)
	const rate = 128 << 10
	go func() {
		buf := make([]byte, 4<<10)
		start, total := time.Now(), 0
		for {
			n, err := peer.Read(buf)
			if err != nil {
				return // closed by rawPair's cleanup
			}
			total += n
			time.Sleep(time.Until(start.Add(time.Duration(float64(total) / rate * float64(time.Second)))))
		}
	}()
	start := time.Now()
	p := make([]byte, 64<<10)
	for time.Since(start) < 3*c.opts.WriteTimeout {
		if err := c.WriteMessage(BinaryMessage, p); err != nil {
			t.Fatalf("cut after %v: %v", time.Since(start), err)
		}
	}
	if wp.Load() == 0 {
		t.Error("WriteProgress never stamped: the writer never waited, the test proves nothing")
	}
	// rawPair's cleanup closes the peer, which ends its reader; Release
	// (registered before) must not wait for a writer: there is none.
}
