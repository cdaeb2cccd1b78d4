package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- WriteTimeout as "no progress", SetCloseDeadline, WriteProgress ------

// slowReader reads from r at about rate bytes a second, n bytes a read,
// and keeps what it read, until r fails (the writer closed it). It is the
// peer whose application keeps reading, more slowly than the writer
// writes.
type slowReader struct {
	got  bytes.Buffer
	done chan error
}

func readSlowly(r net.Conn, rate float64, n int) *slowReader {
	s := &slowReader{done: make(chan error, 1)}
	go func() {
		buf := make([]byte, n)
		start, total := time.Now(), 0
		for {
			k, err := r.Read(buf)
			s.got.Write(buf[:k])
			total += k
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				s.done <- err
				return
			}
			// Paced on the schedule, so a late wake-up is caught up.
			time.Sleep(time.Until(start.Add(time.Duration(float64(total) / rate * float64(time.Second)))))
		}
	}()
	return s
}

// wait returns what was read, once the reader is done.
func (s *slowReader) wait(t *testing.T) []byte {
	t.Helper()
	if err := recv(t, s.done, "the slow reader's end"); err != nil {
		t.Fatalf("slow reader: %v", err)
	}
	return s.got.Bytes()
}

// isTimeout reports a net.Error whose Timeout() is true that is also
// os.ErrDeadlineExceeded.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

// fillSocket fills c's socket and the peer's receive queue without going
// through c's writer (whose state stays clean): it writes to the net.Conn
// until a short deadline stops it.
func fillSocket(t *testing.T, c *Conn, peer *net.TCPConn) {
	t.Helper()
	// Small buffers fill at once and stay full.
	peer.SetReadBuffer(4 << 10)
	tcpOf(c).SetWriteBuffer(4 << 10)
	nc := c.NetConn()
	nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	junk := make([]byte, 64<<10)
	for {
		if _, err := nc.Write(junk); err != nil {
			if !isTimeout(err) {
				t.Fatal(err)
			}
			break
		}
	}
	nc.SetWriteDeadline(time.Time{})
}

// blockedWriter starts a WriteMessage of n bytes in its own goroutine and
// returns once it waits for room (the socket is full). On TCP, set a send
// buffer first: loopback sockets grow theirs to MiBs.
func blockedWriter(t *testing.T, c *Conn, n int) <-chan error {
	t.Helper()
	// On failure, end the write before the Conn's Release (registered
	// earlier, so run later) waits for its lock.
	t.Cleanup(func() { c.Close() })
	errc := make(chan error, 1)
	go func() { errc <- c.WriteMessage(BinaryMessage, make([]byte, n)) }()
	for deadline := time.Now().Add(testTimeout); counted(c).waits.Load() == 0; {
		select {
		case err := <-errc:
			t.Fatalf("the writer ended (%v) before the socket was full", err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never found the socket full")
		}
	}
	return errc
}

// testConn is a Server Conn on nc (counted: see countedSocket, when nc is
// a socket), with opts if given, that the test's end closes, which ends a
// write still blocked, and then releases.
func testConn(t *testing.T, nc net.Conn, opts ...Options) *Conn {
	if _, ok := nc.(syscall.Conn); ok {
		nc = countSocket(nc)
	}
	c := New(nc, Server, "", nil, optionsOf(opts))
	t.Cleanup(func() { c.Close(); c.Release() })
	return c
}

// lateBy is how much later than planned a timed event may come (the race
// detector and a loaded machine delay goroutines).
const lateBy = 250 * time.Millisecond

func checkAround(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if got < want-10*time.Millisecond || got > want+lateBy {
		t.Errorf("%s after %v, want %v (up to %v later)", what, got.Round(time.Millisecond), want, lateBy)
	}
}

// TestWriteTimeoutNoReader: a peer that reads nothing makes the flush fail
// with a timeout WriteTimeout after the socket filled (at once here: the
// buffers are small), not earlier and not much later.
func TestWriteTimeoutNoReader(t *testing.T) {
	c, peer := rawPair(t, Server, Options{WriteTimeout: 300 * time.Millisecond})
	peer.SetReadBuffer(4 << 10)
	tcpOf(c).SetWriteBuffer(4 << 10)
	start := time.Now()
	err := c.WriteMessage(BinaryMessage, make([]byte, 1<<20))
	elapsed := time.Since(start)
	if !isTimeout(err) {
		t.Fatalf("err %v (%T), want a timeout", err, err)
	}
	checkAround(t, "the timeout", elapsed, c.opts.WriteTimeout)
	if counted(c).waits.Load() == 0 {
		t.Error("the write never waited")
	}
}

// TestProgressDeadlineArmedOnlyWhenBlocked: on a socket a write that does
// not wait sets no deadline (the common path pays nothing for the
// WriteTimeout rule); one that waited removes the deadline it armed once
// it is done; a control frame's explicit deadline is removed by the next
// data flush.
func TestProgressDeadlineArmedOnlyWhenBlocked(t *testing.T) {
	c, peer := rawPair(t, Server, Options{WriteTimeout: testTimeout})
	c.nc.SetWriteDeadline(time.Time{})
	for range 10 {
		if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if d := c.wdeadline.Load(); d != 0 {
			t.Fatalf("a write that did not wait left deadline %v", Time(d))
		}
	}
	ctl := time.Now().Add(time.Hour)
	if err := c.WriteControl(PingMessage, nil, ctl); err != nil {
		t.Fatal(err)
	}
	if !Time(c.wdeadline.Load()).Equal(ctl) {
		t.Fatalf("ping deadline %v, want %v", Time(c.wdeadline.Load()), ctl)
	}
	if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if d := c.wdeadline.Load(); d != 0 {
		t.Fatalf("the ping's deadline %v outlived the next data flush", Time(d))
	}
	r := bufio.NewReader(peer)
	for range 10 {
		expectFrames(t, r, Server, dataFrame(TextMessage, true, "x"))
	}
	expectFrames(t, r, Server, rawFrame{fin: true, op: PingMessage, data: []byte{}}, dataFrame(TextMessage, true, "x"))

	// A write that waits, then completes.
	tcpOf(c).SetWriteBuffer(64 << 10)
	errc := blockedWriter(t, c, 1<<20)
	if d := c.wdeadline.Load(); d == 0 {
		t.Error("a waiting write has no deadline")
	}
	drained := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, r, 1<<20+10)
		drained <- err
	}()
	if err := recv(t, errc, "the blocked write"); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, drained, "the peer's read"); err != nil {
		t.Fatal(err)
	}
	if d := c.wdeadline.Load(); d != 0 {
		t.Fatalf("a write that waited left its deadline %v", Time(d))
	}
}

// TestWriteTimeoutChunks: on a connection that is not a socket (TLS; here
// a net.Pipe, on which a write returns only once the reader took it all)
// progress is seen per 16 KiB chunk. The peer reads 96 KiB/s: each 32 KiB
// flush takes a third of a second, more than WriteTimeout, but each chunk
// half of that. Before chunks (one deadline per flush, refreshed at its
// start) the first flush failed.
func TestWriteTimeoutChunks(t *testing.T) {
	a, b := net.Pipe()
	c := testConn(t, a, Options{WriteTimeout: 300 * time.Millisecond})
	sr := readSlowly(b, 96<<10, 1<<10)
	p := payload(BinaryMessage, 32000, 1)
	start := time.Now()
	for i := range 3 {
		if err := c.WriteMessage(BinaryMessage, p); err != nil {
			t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
		}
	}
	if elapsed := time.Since(start); elapsed < 2*c.opts.WriteTimeout {
		t.Errorf("3 messages took %v: not slower than WriteTimeout, the test proves nothing", elapsed)
	}
	c.Close()
	got := bufio.NewReader(bytes.NewReader(sr.wait(t)))
	for range 3 {
		expectFrames(t, got, Server, rawFrame{fin: true, op: BinaryMessage, data: p})
	}
}

// TestCloseDeadlineWakesBlockedFlush: a flush blocked with a long
// WriteTimeout ends at the close deadline set from another goroutine; the
// close frame after it fails at once.
func TestCloseDeadlineWakesBlockedFlush(t *testing.T) {
	t.Run("socket", func(t *testing.T) {
		c, peer := rawPair(t, Server, Options{WriteTimeout: 10 * time.Second})
		// Small buffers: once full, nothing moves (no progress re-arms
		// the deadline, which would apply the close deadline itself).
		peer.SetReadBuffer(4 << 10)
		tcpOf(c).SetWriteBuffer(4 << 10)
		errc := blockedWriter(t, c, 1<<20)
		start := time.Now()
		c.SetCloseDeadline(start.Add(200 * time.Millisecond))
		err := recv(t, errc, "the blocked write")
		checkAround(t, "the blocked write's end", time.Since(start), 200*time.Millisecond)
		if !isTimeout(err) {
			t.Fatalf("err %v, want a timeout", err)
		}
		start = time.Now()
		if err := c.WriteControl(CloseMessage, closePayload(1001, ""), time.Now().Add(time.Minute)); err == nil {
			t.Error("a close frame was written after the failed flush")
		}
		if d := time.Since(start); d > lateBy {
			t.Errorf("the close frame took %v to fail", d)
		}
	})
	t.Run("pipe", func(t *testing.T) {
		a, b := net.Pipe() // nobody reads b
		defer b.Close()
		ec := &enterConn{Conn: a, entered: make(chan struct{})}
		c := testConn(t, ec, Options{WriteTimeout: 10 * time.Second})
		errc := make(chan error, 1)
		go func() { errc <- c.WriteMessage(BinaryMessage, make([]byte, 100)) }()
		recv(t, ec.entered, "the write")
		start := time.Now()
		c.SetCloseDeadline(start.Add(200 * time.Millisecond))
		err := recv(t, errc, "the blocked write")
		checkAround(t, "the blocked write's end", time.Since(start), 200*time.Millisecond)
		if !isTimeout(err) {
			t.Fatalf("err %v, want a timeout", err)
		}
	})
}

// enterConn closes entered when a write starts (its deadline set).
type enterConn struct {
	net.Conn
	entered chan struct{}
	once    sync.Once
}

func (e *enterConn) Write(b []byte) (int, error) {
	e.once.Do(func() { close(e.entered) })
	return e.Conn.Write(b)
}

// TestCloseDeadlineCapsWriteControl: a close frame behind a full socket
// gives up at the close deadline, not at its own later one; a later close
// deadline does not move an earlier one.
func TestCloseDeadlineCapsWriteControl(t *testing.T) {
	c, peer := rawPair(t, Server, Options{WriteTimeout: 10 * time.Second})
	fillSocket(t, c, peer)
	start := time.Now()
	c.SetCloseDeadline(start.Add(200 * time.Millisecond))
	c.SetCloseDeadline(start.Add(time.Hour)) // the earliest wins
	err := c.WriteControl(CloseMessage, closePayload(1001, ""), start.Add(time.Minute))
	checkAround(t, "the close frame's timeout", time.Since(start), 200*time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("err %v, want a timeout", err)
	}
	// Past the close deadline even a write that would not wait fails.
	d, _ := rawPair(t, Server)
	d.SetCloseDeadline(time.Now().Add(-time.Millisecond))
	if err := d.WriteMessage(TextMessage, []byte("x")); !isTimeout(err) {
		t.Fatalf("write past the close deadline: %v, want a timeout", err)
	}
}

// deadlineLog is a net.Conn (not a socket) that records the write deadline
// last set.
type deadlineLog struct {
	net.Conn
	mu sync.Mutex
	wd time.Time
}

func (d *deadlineLog) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	d.wd = t
	d.mu.Unlock()
	return nil
}

func (d *deadlineLog) last() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wd
}

// TestCloseDeadlineRaces: the writer (under wmu) and closers (without it)
// set the connection's deadline concurrently; whatever the interleaving,
// the deadline left is the earlier of the writer's and the earliest close
// deadline.
func TestCloseDeadlineRaces(t *testing.T) {
	base := time.Now().Add(time.Hour)
	for run := range 50 {
		a, b := net.Pipe()
		dl := &deadlineLog{Conn: a}
		c := New(dl, Server, "", nil, Options{})
		var wg sync.WaitGroup
		earliest := atomic.Int64{}
		earliest.Store(1 << 62)
		for g := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(run), uint64(g)))
				for range 50 {
					d := time.Duration(r.IntN(1000)) * time.Second
					c.SetCloseDeadline(base.Add(d))
					for {
						old := earliest.Load()
						if int64(d) >= old || earliest.CompareAndSwap(old, int64(d)) {
							break
						}
					}
				}
			})
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(run), 99))
			for range 100 {
				c.wmu.Lock()
				var d int64
				if r.IntN(4) > 0 {
					d = stampOf(base.Add(time.Duration(r.IntN(1000)) * time.Second))
				}
				c.setWriteDeadline(d)
				c.wmu.Unlock()
			}
		})
		wg.Wait()
		wantClose := stampOf(base.Add(time.Duration(earliest.Load())))
		if got := c.closeDeadline.Load(); got != wantClose {
			t.Fatalf("run %d: close deadline %v, want the earliest %v", run, Time(got), Time(wantClose))
		}
		want := Time(effectiveDeadline(c.wdeadline.Load(), wantClose))
		if got := dl.last(); !got.Equal(want) {
			t.Fatalf("run %d: deadline left %v, want %v", run, got, want)
		}
		a.Close()
		b.Close()
	}
}
