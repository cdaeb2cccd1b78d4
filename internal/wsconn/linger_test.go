package wsconn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- Linger ----------------------------------------------------------------

// peerMessage is a 70 KiB binary message in 16 KiB frames, masked, as a
// client that is busy sending when the proxy closes sends it.
func peerMessage() [][]byte {
	msg := payload(BinaryMessage, 70<<10, 7)
	var frames [][]byte
	for off := 0; off < len(msg); off += 16 << 10 {
		end := min(off+16<<10, len(msg))
		b0 := byte(opContinuation)
		if off == 0 {
			b0 = BinaryMessage
		}
		if end == len(msg) {
			b0 |= finBit
		}
		frames = append(frames, frame(b0, true, msg[off:end]))
	}
	return frames
}

// closeOutcome is what a peer that was still sending saw of the close.
type closeOutcome struct {
	writeErr error // its sending after our close
	gotClose bool  // it read our close frame, intact
	endErr   error // its read after the close frame: io.EOF is a clean end
}

func (o closeOutcome) reset() bool {
	isReset := func(err error) bool { return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) }
	return isReset(o.writeErr) || isReset(o.endErr)
}

func (o closeOutcome) clean() bool { return o.writeErr == nil && o.gotClose && o.endErr == io.EOF }

// closeWhileSending sends a close frame to a peer, lets one frame of the
// peer's message reach our receive queue unread, then ends the connection
// with end while the peer sends the rest; then the peer reads.
func closeWhileSending(t *testing.T, c *Conn, peer net.Conn, end func() error) closeOutcome {
	t.Helper()
	frames := peerMessage()
	cp := closePayload(1001, "going away")
	if err := c.WriteControl(CloseMessage, cp, soon()); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write(frames[0]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testTimeout); c.raw != nil && !c.Unread(); {
		if time.Now().After(deadline) {
			t.Fatal("the peer's frame never reached the receive queue")
		}
		time.Sleep(time.Millisecond)
	}
	ended := make(chan error, 1)
	go func() { ended <- end() }()
	var o closeOutcome
	for _, f := range frames[1:] {
		if _, o.writeErr = peer.Write(f); o.writeErr != nil {
			break
		}
	}
	if f, err := readFrame(peer); err == nil {
		o.gotClose = f.fin && f.op == CloseMessage && !f.masked && bytes.Equal(f.data, cp)
		_, o.endErr = peer.Read(make([]byte, 1))
	} else {
		o.endErr = err
	}
	peer.Close()
	if err := recv(t, ended, "the close"); err != nil {
		t.Errorf("close: %v", err)
	}
	return o
}

// TestLingerDeliversClose: a peer still sending when we close gets our
// close frame and then a clean end (EOF), in 20 runs of 20, when we
// linger. A plain Close with its input unread sends an RST instead of a
// FIN: the peer's sending or its read after our last frame fails with
// ECONNRESET (or EPIPE), and a peer whose kernel drops what it had not
// read (other systems do; Linux keeps it) loses the close frame too.
func TestLingerDeliversClose(t *testing.T) {
	t.Run("linger", func(t *testing.T) {
		for run := range 20 {
			c, peer := rawPair(t, Server)
			o := closeWhileSending(t, c, peer, func() error { return c.Linger(soon(), 0) })
			if !o.clean() {
				t.Fatalf("run %d: the peer saw write %v, close frame %v, then %v; want a clean close", run, o.writeErr, o.gotClose, o.endErr)
			}
			// A clean end also says every byte was read and dropped: a
			// byte left unread would have made our close an RST.
			checkLingerEnded(t, c)
		}
	})
	t.Run("close", func(t *testing.T) {
		resets := 0
		for range 20 {
			c, peer := rawPair(t, Server)
			o := closeWhileSending(t, c, peer, c.Close)
			if o.reset() {
				resets++
			}
			if testing.Verbose() {
				t.Logf("plain Close: the peer saw write %v, close frame %v, then %v", o.writeErr, o.gotClose, o.endErr)
			}
		}
		t.Logf("a plain Close reset the peer in %d runs of 20", resets)
		if resets == 0 {
			t.Error("a plain Close never reset the peer: the linger test proves nothing")
		}
	})
}

// TestLingerLimits: Linger stops at its byte limit and at its deadline,
// and a concurrent Close wakes it; every way, the connection is closed and
// the read buffer given back.
func TestLingerLimits(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		// Exactly the limit, and the peer neither sends more nor closes:
		// Linger reads it all and stops there.
		c, peer := rawPair(t, Server)
		if _, err := peer.Write(make([]byte, 10000)); err != nil {
			t.Fatal(err)
		}
		if err := c.Linger(soon(), 10000); err != ErrLingerLimit {
			t.Fatalf("Linger, the limit sent: %v, want ErrLingerLimit", err)
		}
		checkLingerEnded(t, c)
		// One byte short of it: Linger waits on, until its deadline.
		c, peer = rawPair(t, Server)
		if _, err := peer.Write(make([]byte, 9999)); err != nil {
			t.Fatal(err)
		}
		var ne net.Error
		if err := c.Linger(time.Now().Add(100*time.Millisecond), 10000); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Linger, a byte short of the limit: %v, want a timeout", err)
		}
		checkLingerEnded(t, c)
		// More than the limit, still coming: Linger stops at the limit.
		c, peer = rawPair(t, Server)
		go func() {
			for _, f := range peerMessage() {
				if _, err := peer.Write(f); err != nil {
					return // our Close reset it
				}
			}
		}()
		err := c.Linger(soon(), 10000)
		if err != ErrLingerLimit {
			t.Fatalf("Linger: %v, want ErrLingerLimit", err)
		}
		checkLingerEnded(t, c)
	})
	t.Run("deadline", func(t *testing.T) {
		c, peer := rawPair(t, Server) // the peer sends nothing, closes nothing
		start := time.Now()
		err := c.Linger(start.Add(200*time.Millisecond), 0)
		checkAround(t, "Linger's end", time.Since(start), 200*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Linger: %v, want a timeout", err)
		}
		// The peer saw our FIN: its read ends.
		if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("peer read %d, %v; want EOF", n, err)
		}
		checkLingerEnded(t, c)
	})
	t.Run("close", func(t *testing.T) {
		c, _ := rawPair(t, Server)
		ended := make(chan error, 1)
		go func() { ended <- c.Linger(time.Now().Add(time.Minute), 0) }()
		for deadline := time.Now().Add(testTimeout); !c.inRaw.Load(); {
			if time.Now().After(deadline) {
				t.Fatal("Linger never waited")
			}
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		c.Close()
		err := recv(t, ended, "Linger")
		if d := time.Since(start); d > lateBy {
			t.Errorf("Linger ended %v after Close", d)
		}
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Linger: %v, want net.ErrClosed", err)
		}
		checkLingerEnded(t, c)
	})
	t.Run("closed before", func(t *testing.T) {
		c, _ := rawPair(t, Server)
		c.Close()
		if err := c.Linger(soon(), 0); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Linger: %v, want net.ErrClosed", err)
		}
		checkLingerEnded(t, c)
	})
	t.Run("buffered", func(t *testing.T) {
		// Bytes that came with the handshake, never read: dropped.
		a, b := tcpPair(t)
		c := New(a, Server, "", frame(fin(TextMessage), true, []byte("unread")), Options{})
		b.Close()
		if err := c.Linger(soon(), 0); err != nil {
			t.Fatalf("Linger: %v", err)
		}
		checkLingerEnded(t, c)
	})
}

// checkLingerEnded: after Linger the connection is closed, the read buffer
// given back, and reading fails.
func checkLingerEnded(t *testing.T, c *Conn) {
	t.Helper()
	if c.rbuf != nil || c.rpool != nil {
		t.Error("Linger kept a read buffer")
	}
	if !c.closed.Load() {
		t.Error("Linger did not close the Conn")
	}
	if _, err := c.nextPiece(); err == nil {
		t.Error("reading after Linger did not fail")
	}
	if err := c.NetConn().SetReadDeadline(time.Time{}); err == nil {
		t.Error("the connection is not closed")
	}
}

// TestLingerPipe: a connection with no write side to shut (a net.Pipe)
// still drops what arrives until the peer closes.
func TestLingerPipe(t *testing.T) {
	a, b := net.Pipe()
	rc := &readCount{Conn: a}
	c := New(rc, Server, "", nil, Options{})
	defer c.Release()
	go func() {
		b.Write(make([]byte, 10000))
		b.Close()
	}()
	if err := c.Linger(soon(), 0); err != nil {
		t.Fatalf("Linger: %v", err)
	}
	if n := rc.n.Load(); n != 10000 {
		t.Errorf("dropped %d bytes, want 10000", n)
	}
	checkLingerEnded(t, c)
}

// readCount is a net.Conn that counts the bytes read from it.
type readCount struct {
	net.Conn
	n atomic.Int64
}

func (r *readCount) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.n.Add(int64(n))
	return n, err
}

// tlsPair returns both ends of a TLS connection on loopback TCP, the
// handshake done: the server's, which wsconn sees as a plain net.Conn, and
// the client's.
func tlsPair(t *testing.T) (server, client *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	a, b := tcpPair(t)
	server = tls.Server(a, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	client = tls.Client(b, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, errc, "the server's handshake"); err != nil {
		t.Fatal(err)
	}
	return server, client
}

// TestLingerTLS: on TLS, Linger sends close_notify and a FIN after the
// close frame and drops the peer's records until it closes.
func TestLingerTLS(t *testing.T) {
	server, client := tlsPair(t)
	c := New(server, Server, "", nil, Options{})
	defer c.Release()
	o := closeWhileSending(t, c, client, func() error { return c.Linger(soon(), 0) })
	if !o.clean() {
		t.Fatalf("the peer saw write %v, close frame %v, then %v; want a clean close", o.writeErr, o.gotClose, o.endErr)
	}
	checkLingerEnded(t, c)
}
