package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/stompgate/stompgate/internal/tcpinfo"
	"github.com/stompgate/stompgate/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every blocking step, so that a broken test fails
// instead of hanging.
const testTimeout = 5 * time.Second

func soon() time.Time { return time.Now().Add(testTimeout) }

// payload returns n bytes of test data (printable ASCII for text).
func payload(mt, n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		if mt == TextMessage {
			b[i] = byte('a' + r.IntN(26))
		} else {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

// ---- hand-written frames -------------------------------------------------

var testKey = [4]byte{0x9a, 0x37, 0xc1, 0x5e}

// frame encodes one frame with first byte b0 (FIN, RSV and opcode);
// a masked frame uses testKey.
func frame(b0 byte, masked bool, p []byte) []byte {
	b := []byte{b0}
	var m byte
	if masked {
		m = maskBit
	}
	switch n := len(p); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, p...)
	}
	b = append(b, testKey[:]...)
	for i, x := range p {
		b = append(b, x^testKey[i&3])
	}
	return b
}

func fin(op int) byte { return finBit | byte(op) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func closePayload(code int, text string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), text...)
}

// rawFrame is a frame as a raw peer reads it, unmasked.
type rawFrame struct {
	fin    bool
	op     int
	masked bool
	data   []byte
}

func (f rawFrame) String() string {
	return fmt.Sprintf("{fin:%v op:%d masked:%v len:%d}", f.fin, f.op, f.masked, len(f.data))
}

// readFrame reads one frame, insisting on the shortest length encoding.
func readFrame(r io.Reader) (rawFrame, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return rawFrame{}, err
	}
	if h[0]&rsvBits != 0 {
		return rawFrame{}, errors.New("reserved bits set")
	}
	f := rawFrame{fin: h[0]&finBit != 0, op: int(h[0] & 0x0f), masked: h[1]&maskBit != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return rawFrame{}, err
		}
		if n = uint64(binary.BigEndian.Uint16(h[:2])); n <= 125 {
			return rawFrame{}, fmt.Errorf("length %d in a 16-bit field", n)
		}
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return rawFrame{}, err
		}
		if n = binary.BigEndian.Uint64(h[:8]); n <= 0xffff {
			return rawFrame{}, fmt.Errorf("length %d in a 64-bit field", n)
		}
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return rawFrame{}, err
		}
	}
	f.data = make([]byte, n)
	if _, err := io.ReadFull(r, f.data); err != nil {
		return rawFrame{}, err
	}
	if f.masked {
		for i := range f.data {
			f.data[i] ^= key[i&3]
		}
	}
	return f, nil
}

// expectFrames reads len(want) frames from r and compares them with want;
// every frame must be masked exactly when role is Client.
func expectFrames(t *testing.T, r io.Reader, role Role, want ...rawFrame) {
	t.Helper()
	for i, w := range want {
		f, err := readFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.masked != (role == Client) {
			t.Fatalf("frame %d: masked = %v from a %s", i, f.masked, roleName(role))
		}
		if f.fin != w.fin || f.op != w.op || !bytes.Equal(f.data, w.data) {
			t.Fatalf("frame %d = %v %q, want %v %q", i, f, trim(f.data), w, trim(w.data))
		}
	}
}

func trim(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func roleName(r Role) string {
	if r == Client {
		return "Client"
	}
	return "Server"
}

// ---- reading and writing whole messages ------------------------------------

// readMsg reads one data message from c, checking the Piece invariants, and
// returns its type, payload and the Size of its first piece.
func readMsg(c *Conn) (mt int, data []byte, size int64, err error) {
	return readMsgParking(c, nil)
}

// readMsgParking is readMsg calling parking, if set, on Parking.
func readMsgParking(c *Conn, parking func()) (mt int, data []byte, size int64, err error) {
	for i := 0; ; i++ {
		p, err := c.nextPieceParking(parking)
		if err != nil {
			return 0, nil, 0, err
		}
		if p.First() != (i == 0) {
			return 0, nil, 0, fmt.Errorf("piece %d: First = %v", i, p.First())
		}
		if i == 0 {
			mt, size = p.Type, p.Size
		} else {
			if p.Type != mt {
				return 0, nil, 0, fmt.Errorf("piece %d: Type %d in a message of type %d", i, p.Type, mt)
			}
			if p.Size != -1 {
				return 0, nil, 0, fmt.Errorf("piece %d: Size = %d, want -1", i, p.Size)
			}
		}
		data = append(data, p.Data...)
		if p.Last() {
			if size != -1 && size != int64(len(data)) {
				return 0, nil, 0, fmt.Errorf("first piece's Size = %d, message is %d bytes", size, len(data))
			}
			return mt, data, size, nil
		}
	}
}

// writeMsg writes a whole message in one of three ways.
func writeMsg(c *Conn, mt int, p []byte, way int) error {
	switch way % 3 {
	case 0:
		return c.WriteMessage(mt, p)
	case 1: // in odd chunks
		c.BeginMessage(mt)
		for len(p) > 0 {
			n := min(len(p), 7919)
			if err := c.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
	default:
		c.BeginMessage(mt)
		if err := c.Write(p); err != nil {
			return err
		}
	}
	if err := c.EndMessage(); err != nil {
		return err
	}
	return c.Flush()
}

// ---- peers -------------------------------------------------------------

// tcpPair returns both ends of a TCP connection on 127.0.0.1, with
// deadlines so that a stuck test fails rather than hangs.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	a, b = wstest.TCPPair(t)
	a.SetDeadline(soon())
	b.SetDeadline(soon())
	return a, b
}

// rawPair returns a Conn of the given role on a TCP connection (counted:
// see countedSocket) and the raw peer; opts, if given, are the Conn's.
func rawPair(t testing.TB, role Role, opts ...Options) (*Conn, *net.TCPConn) {
	a, b := tcpPair(t)
	c := New(countSocket(a), role, "", nil, optionsOf(opts))
	t.Cleanup(c.Release)
	return c, b
}

// optionsOf is a test helper's optional Options: the one given, if any.
func optionsOf(opts []Options) Options {
	if len(opts) == 0 {
		return Options{}
	}
	return opts[0]
}

// withTimeout is opts with a WriteTimeout of testTimeout unless it has one.
func withTimeout(opts []Options) Options {
	o := optionsOf(opts)
	if o.WriteTimeout == 0 {
		o.WriteTimeout = testTimeout
	}
	return o
}

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") }

const testSubprotocol = "v12.stomp"

// serverPair connects a gorilla client dialed with d to a Server Conn that
// wraps the connection gorilla's Upgrader accepted. The Conn has opts, if
// given, and a WriteTimeout of testTimeout unless they set one.
func serverPair(t *testing.T, d websocket.Dialer, opts ...Options) (*Conn, *websocket.Conn) {
	t.Helper()
	conns := make(chan *Conn, 1)
	up := websocket.Upgrader{Subprotocols: []string{testSubprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gc, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // the dial fails
		}
		conns <- New(gc.NetConn(), Server, gc.Subprotocol(), nil, withTimeout(opts))
	}))
	t.Cleanup(srv.Close)
	d.Subprotocols = []string{testSubprotocol}
	d.HandshakeTimeout = testTimeout
	gc, _, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	var c *Conn
	select {
	case c = <-conns:
	case <-time.After(testTimeout):
		t.Fatal("the server did not get its connection")
	}
	t.Cleanup(func() { c.Close(); c.Release() })
	if c.Subprotocol() != testSubprotocol {
		t.Fatalf("Subprotocol() = %q", c.Subprotocol())
	}
	c.SetReadDeadline(soon())
	gc.SetReadDeadline(soon())
	gc.SetWriteDeadline(soon())
	return c, gc
}

// clientPair dials a gorilla server running serve with gorilla's Dialer
// and wraps the connection in a Client Conn. serve must not send before it
// has read a message from the client, so that gorilla's client buffers
// nothing past the handshake. wait returns serve's result. The Conn has
// opts, if given, and a WriteTimeout of testTimeout unless they set one.
func clientPair(t *testing.T, serve func(gc *websocket.Conn) error, opts ...Options) (c *Conn, wait func() error) {
	t.Helper()
	errc := make(chan error, 1)
	up := websocket.Upgrader{Subprotocols: []string{testSubprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gc, err := up.Upgrade(w, r, nil)
		if err != nil {
			errc <- err
			return
		}
		gc.SetReadDeadline(soon())
		gc.SetWriteDeadline(soon())
		err = serve(gc)
		gc.Close()
		errc <- err
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{Subprotocols: []string{testSubprotocol}, HandshakeTimeout: testTimeout}
	gc, _, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	c = New(gc.NetConn(), Client, gc.Subprotocol(), nil, withTimeout(opts))
	if c.Subprotocol() != testSubprotocol {
		t.Fatalf("Subprotocol() = %q", c.Subprotocol())
	}
	c.SetReadDeadline(soon())
	wait = resultWithin(errc, func() error { return errors.New("the gorilla server is still running") })
	t.Cleanup(func() { c.Close(); wait(); c.Release() })
	return c, wait
}

// scriptConn is a net.Conn whose reads return the queued chunks: each read
// returns as much of the current chunk as fits, never more than one chunk,
// then io.EOF when the script is over. Writes are kept in out.
type scriptConn struct {
	chunks [][]byte
	reads  int
	onRead func()
	out    bytes.Buffer
}

func (s *scriptConn) feed(chunks ...[]byte) { s.chunks = append(s.chunks, chunks...) }

func (s *scriptConn) Read(p []byte) (int, error) {
	s.reads++
	if s.onRead != nil {
		s.onRead()
	}
	for len(s.chunks) > 0 && len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	return n, nil
}

func (s *scriptConn) Write(p []byte) (int, error)        { return s.out.Write(p) }
func (s *scriptConn) Close() error                       { return nil }
func (s *scriptConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (s *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// countConn counts the write system calls made on a net.Conn.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countedSocket is a socket whose syscall.RawConn counts the writes a Conn
// makes through it (writes: each one write system call unless the socket
// is full) and the times a write found it full and waited (waits). It
// allocates nothing per write, so allocation tests can use it.
type countedSocket struct {
	net.Conn
	writes, waits atomic.Int64
	f             func(fd uintptr) bool // the write function of the write under way
	wrapped       func(fd uintptr) bool // s.write, made once
}

func countSocket(nc net.Conn) *countedSocket {
	s := &countedSocket{Conn: nc}
	s.wrapped = s.write
	return s
}

func (s *countedSocket) SyscallConn() (syscall.RawConn, error) {
	rc, err := s.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, err
	}
	return countingRawConn{rc, s}, nil
}

// CloseWrite is the socket's own, for Linger.
func (s *countedSocket) CloseWrite() error {
	return s.Conn.(interface{ CloseWrite() error }).CloseWrite()
}

// write runs the Conn's write function; returning false is a wait.
func (s *countedSocket) write(fd uintptr) bool {
	if s.f(fd) {
		return true
	}
	s.waits.Add(1)
	return false
}

type countingRawConn struct {
	syscall.RawConn
	s *countedSocket
}

// Write is called under the Conn's write lock, so s.f has one writer.
func (rc countingRawConn) Write(f func(fd uintptr) bool) error {
	rc.s.writes.Add(1)
	rc.s.f = f
	return rc.RawConn.Write(rc.s.wrapped)
}

// counted returns the countedSocket of a Conn made by rawPair or testConn.
func counted(c *Conn) *countedSocket { return c.nc.(*countedSocket) }

// tcpOf returns the TCP connection of a Conn made by rawPair.
func tcpOf(c *Conn) *net.TCPConn { return counted(c).Conn.(*net.TCPConn) }

// ---- 1. round trips ----------------------------------------------------

var roundTripSizes = []int{0, 1, 125, 126, 65535, 65536, 200 << 10, 1 << 20}

func TestRoundTripServer(t *testing.T) {
	// A write buffer larger than any message: gorilla sends each as one
	// frame, so the first piece must carry the whole Size.
	c, gc := serverPair(t, websocket.Dialer{WriteBufferSize: 2 << 20})
	way := 0
	for i, size := range roundTripSizes {
		for _, mt := range []int{TextMessage, BinaryMessage} {
			want := payload(mt, size, uint64(i))
			errc := make(chan error, 1)
			go func() { errc <- gc.WriteMessage(mt, want) }()
			gotType, got, gotSize, err := readMsg(c)
			if werr := <-errc; werr != nil {
				t.Fatalf("gorilla write of %d bytes: %v", size, werr)
			}
			if err != nil {
				t.Fatalf("reading %d bytes: %v", size, err)
			}
			if gotType != mt || !bytes.Equal(got, want) {
				t.Fatalf("read type %d, %d bytes; want type %d, %d bytes (equal: %v)", gotType, len(got), mt, size, bytes.Equal(got, want))
			}
			if gotSize != int64(size) {
				t.Fatalf("first piece Size = %d, want %d", gotSize, size)
			}

			go func(way int) { errc <- writeMsg(c, mt, got, way) }(way)
			way++
			backType, back, err := gc.ReadMessage()
			if werr := <-errc; werr != nil {
				t.Fatalf("wsconn write of %d bytes: %v", size, werr)
			}
			if err != nil {
				t.Fatalf("gorilla read of %d bytes: %v", size, err)
			}
			if backType != mt || !bytes.Equal(back, want) {
				t.Fatalf("gorilla read type %d, %d bytes; want type %d, %d bytes", backType, len(back), mt, size)
			}
		}
	}
	if c.Buffered() {
		t.Error("Buffered() after the last flush")
	}
}

func TestRoundTripClient(t *testing.T) {
	n := 2 * len(roundTripSizes)
	c, wait := clientPair(t, func(gc *websocket.Conn) error {
		for range n { // an echo; gorilla's server WriteMessage sends one frame
			mt, p, err := gc.ReadMessage()
			if err != nil {
				return err
			}
			if err := gc.WriteMessage(mt, p); err != nil {
				return err
			}
		}
		return nil
	})
	way := 0
	for i, size := range roundTripSizes {
		for _, mt := range []int{TextMessage, BinaryMessage} {
			want := payload(mt, size, uint64(i))
			errc := make(chan error, 1)
			go func(way int) { errc <- writeMsg(c, mt, want, way) }(way)
			way++
			gotType, got, gotSize, err := readMsg(c)
			if werr := <-errc; werr != nil {
				t.Fatalf("wsconn write of %d bytes: %v", size, werr)
			}
			if err != nil {
				t.Fatalf("reading the echo of %d bytes: %v (server: %v)", size, err, wait())
			}
			if gotType != mt || !bytes.Equal(got, want) {
				t.Fatalf("echo type %d, %d bytes; want type %d, %d bytes", gotType, len(got), mt, size)
			}
			if gotSize != int64(size) {
				t.Fatalf("first piece Size = %d, want %d", gotSize, size)
			}
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// ---- 2. fragmented messages with pings between the fragments ------------

// sendFragmented writes msg with gorilla's NextWriter (whose 4 KiB buffer
// makes fragments) in three writes, with a ping after each of the first two.
func sendFragmented(gc *websocket.Conn, msg []byte) error {
	w, err := gc.NextWriter(BinaryMessage)
	if err != nil {
		return err
	}
	third := len(msg) / 3
	for i, part := range [][]byte{msg[:third], msg[third : 2*third], msg[2*third:]} {
		if _, err := w.Write(part); err != nil {
			return err
		}
		if i < 2 {
			if err := gc.WriteControl(PingMessage, []byte("p"+strconv.Itoa(i)), soon()); err != nil {
				return err
			}
		}
	}
	return w.Close()
}

// pingRecorder records the pings a Conn gets and whether each came in the
// middle of a message.
type pingRecorder struct {
	c     *Conn
	pings []string
	mid   []bool
}

func (r *pingRecorder) onPing(p []byte) {
	r.pings = append(r.pings, string(p))
	r.mid = append(r.mid, r.c.msgStarted)
}

func checkFragmented(t *testing.T, c *Conn, r *pingRecorder, want []byte) {
	t.Helper()
	mt, got, size, err := readMsg(c)
	if err != nil {
		t.Fatal(err)
	}
	if mt != BinaryMessage || !bytes.Equal(got, want) {
		t.Fatalf("got type %d, %d bytes (equal: %v); want %d bytes", mt, len(got), bytes.Equal(got, want), len(want))
	}
	if size != -1 {
		t.Errorf("first piece of a fragmented message: Size = %d, want -1", size)
	}
	if strings.Join(r.pings, ",") != "p0,p1" {
		t.Errorf("pings %q, want p0, p1", r.pings)
	}
	for i, m := range r.mid {
		if !m {
			t.Errorf("ping %d did not arrive between fragments", i)
		}
	}
}

func TestFragmentedFromGorillaClient(t *testing.T) {
	rec := &pingRecorder{}
	c, gc := serverPair(t, websocket.Dialer{}, Options{OnPing: rec.onPing})
	rec.c = c
	msg := payload(BinaryMessage, 30000, 7)
	errc := make(chan error, 1)
	go func() { errc <- sendFragmented(gc, msg) }()
	checkFragmented(t, c, rec, msg)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestFragmentedFromGorillaServer(t *testing.T) {
	msg := payload(BinaryMessage, 30000, 8)
	rec := &pingRecorder{}
	c, wait := clientPair(t, func(gc *websocket.Conn) error {
		if _, _, err := gc.ReadMessage(); err != nil {
			return err
		}
		return sendFragmented(gc, msg)
	}, Options{OnPing: rec.onPing})
	rec.c = c
	if err := c.WriteMessage(TextMessage, []byte("go")); err != nil {
		t.Fatal(err)
	}
	checkFragmented(t, c, rec, msg)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestPieces checks the exact pieces and control-frame callbacks for
// hand-written frames that all arrive at once.
func TestPieces(t *testing.T) {
	big := payload(BinaryMessage, 70000, 9)
	sc := &scriptConn{}
	sc.feed(cat(
		frame(TextMessage, true, []byte("hel")),
		frame(fin(PingMessage), true, []byte("p1")),
		frame(opContinuation, true, nil),
		frame(fin(PongMessage), true, []byte("q")),
		frame(opContinuation, true, []byte("lo ")),
		frame(fin(PingMessage), true, nil),
		frame(fin(opContinuation), true, []byte("world")),
		frame(fin(BinaryMessage), true, big),
		frame(fin(TextMessage), true, nil),
		frame(BinaryMessage, true, nil),
		frame(fin(opContinuation), true, []byte("z")),
	))
	var log []string
	c := New(sc, Server, "", nil, Options{
		OnPing: func(p []byte) { log = append(log, "ping "+string(p)) },
		OnPong: func(p []byte) { log = append(log, "pong "+string(p)) },
	})
	defer c.Release()
	piece := func() Piece {
		t.Helper()
		p, err := c.nextPiece()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, w := range []Piece{
		{Type: TextMessage, Data: []byte("hel"), Size: -1, flags: pieceFirst},
		{Type: TextMessage, Data: nil, Size: -1},
		{Type: TextMessage, Data: []byte("lo "), Size: -1},
		{Type: TextMessage, Data: []byte("world"), Size: -1, flags: pieceLast},
	} {
		p := piece()
		log = append(log, "piece "+string(p.Data))
		if p.Type != w.Type || !bytes.Equal(p.Data, w.Data) || p.First() != w.First() || p.Last() != w.Last() || p.Size != w.Size {
			t.Fatalf("piece %+v, want %+v", p, w)
		}
	}
	if got, want := strings.Join(log, "|"), "piece hel|ping p1|piece |pong q|piece lo |ping |piece world"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}

	// One frame larger than any read buffer: several pieces, the first one
	// with the whole Size.
	var got []byte
	for i := 0; ; i++ {
		p := piece()
		if p.Type != BinaryMessage || p.First() != (i == 0) {
			t.Fatalf("piece %d: %+v", i, p)
		}
		if want := map[bool]int64{true: int64(len(big)), false: -1}[i == 0]; p.Size != want {
			t.Fatalf("piece %d: Size %d, want %d", i, p.Size, want)
		}
		got = append(got, p.Data...)
		if p.Last() {
			if i == 0 {
				t.Error("a 70000-byte frame came in one piece")
			}
			break
		}
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the large message was corrupted")
	}

	// An empty message: one piece, First and Last, Size 0.
	if p := piece(); !p.First() || !p.Last() || p.Size != 0 || len(p.Data) != 0 || p.Type != TextMessage {
		t.Fatalf("empty message: %+v", p)
	}
	// An empty first fragment.
	if p := piece(); !p.First() || p.Last() || p.Size != -1 || len(p.Data) != 0 || p.Type != BinaryMessage {
		t.Fatalf("empty first fragment: %+v", p)
	}
	if p := piece(); p.First() || !p.Last() || p.Size != -1 || string(p.Data) != "z" || p.Type != BinaryMessage {
		t.Fatalf("last fragment: %+v", p)
	}
}

// TestHeaderStraddlesReads feeds a stream one byte per read.
func TestHeaderStraddlesReads(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		masked := role == Server
		msgs := [][]byte{nil, []byte("x"), payload(TextMessage, 125, 1), payload(TextMessage, 126, 2), payload(BinaryMessage, 70000, 3)}
		var stream []byte
		for i, m := range msgs {
			stream = append(stream, frame(fin(PingMessage), masked, []byte("ping"+strconv.Itoa(i)))...)
			stream = append(stream, frame(fin(BinaryMessage), masked, m)...)
		}
		stream = append(stream, frame(fin(CloseMessage), masked, closePayload(1000, "done"))...)
		sc := &scriptConn{}
		for i := range stream {
			sc.feed(stream[i : i+1])
		}
		var pings []string
		c := New(sc, role, "", nil, Options{OnPing: func(p []byte) { pings = append(pings, string(p)) }})
		for i, want := range msgs {
			_, got, size, err := readMsg(c)
			if err != nil {
				t.Fatalf("%s: message %d: %v", roleName(role), i, err)
			}
			if !bytes.Equal(got, want) || size != int64(len(want)) {
				t.Fatalf("%s: message %d: %d bytes (Size %d), want %d", roleName(role), i, len(got), size, len(want))
			}
		}
		var ce *websocket.CloseError
		if _, err := c.nextPiece(); !errors.As(err, &ce) || ce.Code != 1000 || ce.Text != "done" {
			t.Fatalf("%s: after the messages: %v", roleName(role), err)
		}
		if len(pings) != len(msgs) || pings[len(msgs)-1] != "ping4" {
			t.Errorf("%s: pings %q", roleName(role), pings)
		}
		c.Release()
	}
}

// ---- 3. coalescing -----------------------------------------------------

func dataFrame(op int, fin bool, p string) rawFrame {
	return rawFrame{fin: fin, op: op, data: []byte(p)}
}

func TestCoalescing(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			a, peer := tcpPair(t)
			cc := &countConn{Conn: a}
			c := New(cc, role, "", nil, Options{})
			defer c.Release()
			writes := func(want int64) {
				t.Helper()
				if got := cc.writes.Load(); got != want {
					t.Fatalf("%d write calls, want %d", got, want)
				}
			}

			// Three messages, no Flush: nothing is sent.
			for i := range 3 {
				c.BeginMessage(TextMessage)
				for _, part := range []string{"msg-", strconv.Itoa(i), strings.Repeat("!", 200*i)} {
					if err := c.Write([]byte(part)); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.EndMessage(); err != nil {
					t.Fatal(err)
				}
			}
			if !c.Buffered() {
				t.Fatal("Buffered() = false with three messages waiting")
			}
			writes(0)
			peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			var buf [1]byte
			if n, err := peer.Read(buf[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the peer read %d bytes (%v) before Flush", n, err)
			}
			peer.SetReadDeadline(soon())

			// Flush: all three in one write, in order.
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			writes(1)
			if c.Buffered() || c.wbp != nil {
				t.Fatal("a write buffer is held after Flush")
			}
			expectFrames(t, peer, role,
				dataFrame(TextMessage, true, "msg-0"),
				dataFrame(TextMessage, true, "msg-1"+strings.Repeat("!", 200)),
				dataFrame(TextMessage, true, "msg-2"+strings.Repeat("!", 400)))
			if err := c.Flush(); err != nil { // nothing to send
				t.Fatal(err)
			}
			writes(1)

			// WriteMessage flushes at once, with what was buffered before.
			c.BeginMessage(BinaryMessage)
			c.Write([]byte("queued"))
			c.EndMessage()
			if err := c.WriteMessage(TextMessage, []byte("now")); err != nil {
				t.Fatal(err)
			}
			writes(2)
			expectFrames(t, peer, role, dataFrame(BinaryMessage, true, "queued"), dataFrame(TextMessage, true, "now"))

			// A ping follows the complete frames buffered, in one write.
			c.BeginMessage(TextMessage)
			c.Write([]byte("a"))
			c.EndMessage()
			c.BeginMessage(TextMessage)
			c.EndMessage() // an empty message
			if err := c.WriteControl(PingMessage, []byte("ping"), soon()); err != nil {
				t.Fatal(err)
			}
			writes(3)
			expectFrames(t, peer, role,
				dataFrame(TextMessage, true, "a"),
				dataFrame(TextMessage, true, ""),
				rawFrame{fin: true, op: PingMessage, data: []byte("ping")})

			// A ping while a message is half written: the complete frames
			// before it go first, the open message stays buffered.
			c.BeginMessage(TextMessage)
			c.Write([]byte("done"))
			c.EndMessage()
			c.BeginMessage(BinaryMessage)
			c.Write([]byte("part1-"))
			if err := c.WriteControl(PongMessage, []byte("pong"), soon()); err != nil {
				t.Fatal(err)
			}
			writes(5)
			if err := c.Flush(); err != nil { // the open message is not sent
				t.Fatal(err)
			}
			writes(5)
			c.Write([]byte("part2"))
			c.EndMessage()
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			writes(6)
			expectFrames(t, peer, role,
				dataFrame(TextMessage, true, "done"),
				rawFrame{fin: true, op: PongMessage, data: []byte("pong")},
				dataFrame(BinaryMessage, true, "part1-part2"))

			// A close frame while a message is half written: the complete
			// frames go, the unfinished message is dropped, nothing follows.
			c.BeginMessage(TextMessage)
			c.Write([]byte("complete"))
			c.EndMessage()
			c.BeginMessage(TextMessage)
			c.Write([]byte("unfinished"))
			if err := c.WriteControl(CloseMessage, closePayload(1000, "bye"), soon()); err != nil {
				t.Fatal(err)
			}
			if c.wbp != nil {
				t.Error("a write buffer is held after the close frame")
			}
			if err := c.Write([]byte("more")); err != ErrCloseSent {
				t.Errorf("Write after close: %v", err)
			}
			if err := c.EndMessage(); err != ErrCloseSent {
				t.Errorf("EndMessage after close: %v", err)
			}
			if err := c.WriteMessage(TextMessage, []byte("x")); !errors.Is(err, websocket.ErrCloseSent) {
				t.Errorf("WriteMessage after close: %v", err)
			}
			if err := c.WriteMessage(TextMessage, nil); err != ErrCloseSent {
				t.Errorf("empty WriteMessage after close: %v", err)
			}
			if err := c.WriteControl(CloseMessage, nil, soon()); err != ErrCloseSent {
				t.Errorf("second close frame: %v", err)
			}
			if err := c.Flush(); err != nil {
				t.Errorf("Flush after close: %v", err)
			}
			c.Close()
			expectFrames(t, peer, role,
				dataFrame(TextMessage, true, "complete"),
				rawFrame{fin: true, op: CloseMessage, data: closePayload(1000, "bye")})
			if n, err := peer.Read(buf[:]); n != 0 || err != io.EOF {
				t.Fatalf("after the close frame: %d bytes, %v", n, err)
			}
		})
	}
}

// TestBufferFull writes more than the write buffer holds without Flush:
// whole frames go out as the buffer fills, and nothing is reordered.
func TestBufferFull(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			c, peer := rawPair(t, role)
			var want []rawFrame
			for i := range 200 {
				want = append(want, dataFrame(TextMessage, true, strconv.Itoa(i)+strings.Repeat("x", 150+i*7%400)))
			}
			errc := make(chan error, 1)
			go func() {
				for _, f := range want {
					c.BeginMessage(TextMessage)
					if err := c.Write(f.data); err != nil {
						errc <- err
						return
					}
					if err := c.EndMessage(); err != nil {
						errc <- err
						return
					}
				}
				errc <- c.Flush()
			}()
			// A message that meets the end of the buffer goes out in two
			// fragments.
			fragmented := 0
			for i, w := range want {
				f, err := readMessage(peer, role)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if f.op != w.op || !bytes.Equal(f.data, w.data) {
					t.Fatalf("message %d = %v %q, want %v %q", i, f, trim(f.data), w, trim(w.data))
				}
				if !f.fin {
					fragmented++
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if fragmented == 0 || fragmented > 3 {
				t.Errorf("%d messages fragmented", fragmented)
			}
		})
	}
}

// readMessage reads the frames of one data message; fin in the result is
// false when it came in fragments.
func readMessage(r io.Reader, role Role) (rawFrame, error) {
	var m rawFrame
	for i := 0; ; i++ {
		f, err := readFrame(r)
		if err != nil {
			return m, err
		}
		if f.masked != (role == Client) {
			return m, fmt.Errorf("masked = %v from a %s", f.masked, roleName(role))
		}
		if (i == 0) != (f.op != opContinuation) || f.op > BinaryMessage {
			return m, fmt.Errorf("fragment %d: opcode %d", i, f.op)
		}
		if i == 0 {
			m = rawFrame{op: f.op, fin: f.fin, masked: f.masked}
		}
		m.data = append(m.data, f.data...)
		if f.fin {
			return m, nil
		}
	}
}

// TestBufferTail leaves r bytes free at the end of the write buffer, then
// writes a ping and a message: the ping must not overflow the buffer, and a
// message that does not fit starts as a fragment in the tail (with a short
// header when it is small) or goes to the next buffer.
func TestBufferTail(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			c, peer := rawPair(t, role)
			slot := 4
			if role == Client {
				slot = 8
			}
			ping := payload(TextMessage, maxControlPayload, 1)
			for _, r := range []int{0, 1, 4, 5, 8, 9, 10, 20, 130, 131, 132, 200} {
				first := payload(BinaryMessage, writeBufferSize-slot-r, uint64(r))
				next := payload(TextMessage, 300, uint64(r))
				errc := make(chan error, 1)
				go func() {
					c.BeginMessage(BinaryMessage)
					c.Write(first)
					c.EndMessage()
					if err := c.WriteControl(PingMessage, ping, soon()); err != nil {
						errc <- err
						return
					}
					c.BeginMessage(BinaryMessage)
					c.Write(first)
					c.EndMessage()
					c.BeginMessage(TextMessage)
					c.Write(next)
					c.EndMessage()
					errc <- c.Flush()
				}()
				expectFrames(t, peer, role, rawFrame{fin: true, op: BinaryMessage, data: first}, rawFrame{fin: true, op: PingMessage, data: ping})
				for i, want := range []rawFrame{{op: BinaryMessage, data: first}, {op: TextMessage, data: next}} {
					m, err := readMessage(peer, role)
					if err != nil {
						t.Fatalf("room %d, message %d: %v", r, i, err)
					}
					if m.op != want.op || !bytes.Equal(m.data, want.data) {
						t.Fatalf("room %d, message %d: %v, want op %d, %d bytes", r, i, m, want.op, len(want.data))
					}
					if wantFin := i == 0 || r <= slot; m.fin != wantFin {
						t.Errorf("room %d, message %d: fragmented: %v", r, i, !m.fin)
					}
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if c.wbp != nil {
					t.Fatalf("room %d: a write buffer is held", r)
				}
			}
		})
	}
}

// ---- 4. messages larger than the write buffer --------------------------

func TestLargeMessageFragments(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			c, peer := rawPair(t, role)
			msg := payload(BinaryMessage, 300000, 11)
			errc := make(chan error, 1)
			go func() {
				// A small message first, so that the large one starts
				// part-way into the buffer; then odd-sized writes.
				c.BeginMessage(TextMessage)
				c.Write([]byte("hi"))
				c.EndMessage()
				c.BeginMessage(BinaryMessage)
				chunks := []int{1, 3, 7, 16, 17, 4093, 33000, 65536}
				for p, i := msg, 0; len(p) > 0; i++ {
					n := min(len(p), chunks[i%len(chunks)])
					if err := c.Write(p[:n]); err != nil {
						errc <- err
						return
					}
					p = p[n:]
				}
				if err := c.EndMessage(); err != nil {
					errc <- err
					return
				}
				errc <- c.Flush()
			}()
			expectFrames(t, peer, role, dataFrame(TextMessage, true, "hi"))
			var got []byte
			for i := 0; ; i++ {
				f, err := readFrame(peer)
				if err != nil {
					t.Fatal(err)
				}
				wantOp := opContinuation
				if i == 0 {
					wantOp = BinaryMessage
				}
				if f.op != wantOp || f.masked != (role == Client) || len(f.data) > writeBufferSize {
					t.Fatalf("fragment %d: %v", i, f)
				}
				got = append(got, f.data...)
				if f.fin {
					if i < 9 {
						t.Errorf("300000 bytes in %d fragments", i+1)
					}
					break
				}
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("the fragments do not reassemble to the message")
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if c.wbp != nil {
				t.Error("a write buffer is held after the flush")
			}
		})
	}
}

// TestRandomTraffic sends random messages, random writes and random
// flushes, with pings from another goroutine, from one Conn to another.
func TestRandomTraffic(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run("writer "+roleName(role), func(t *testing.T) {
			a, b := tcpPair(t)
			var pings atomic.Int64
			w := New(a, role, "", nil, Options{})
			r := New(b, 1-role, "", nil, Options{OnPing: func([]byte) { pings.Add(1) }})
			defer w.Release()
			defer r.Release()
			const n = 300
			msg := func(i int) (int, []byte) {
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				size := rng.IntN(200)
				switch rng.IntN(10) {
				case 0:
					size = rng.IntN(70000)
				case 1, 2:
					size = rng.IntN(5000)
				}
				mt := TextMessage + rng.IntN(2)
				return mt, payload(mt, size, uint64(i))
			}
			werr := make(chan error, 2)
			var wg sync.WaitGroup
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(99, 0))
				for i := range n {
					mt, p := msg(i)
					w.BeginMessage(mt)
					for len(p) > 0 {
						k := min(len(p), 1+rng.IntN(1+len(p)))
						if err := w.Write(p[:k]); err != nil {
							werr <- err
							return
						}
						p = p[k:]
					}
					if err := w.EndMessage(); err != nil {
						werr <- err
						return
					}
					if rng.IntN(3) == 0 {
						if err := w.Flush(); err != nil {
							werr <- err
							return
						}
					}
				}
				werr <- w.Flush()
			})
			const npings = 50
			wg.Go(func() {
				for range npings {
					if err := w.WriteControl(PingMessage, []byte("ping"), soon()); err != nil {
						werr <- err
						return
					}
				}
				werr <- nil
			})
			for i := range n {
				wantType, want := msg(i)
				mt, got, _, err := readMsg(r)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if mt != wantType || !bytes.Equal(got, want) {
					t.Fatalf("message %d: type %d, %d bytes; want type %d, %d bytes", i, mt, len(got), wantType, len(want))
				}
			}
			wg.Wait()
			for range 2 {
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			}
			if err := w.WriteControl(CloseMessage, closePayload(1000, ""), soon()); err != nil {
				t.Fatal(err)
			}
			var ce *websocket.CloseError
			if _, err := r.nextPiece(); !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("after the messages: %v", err)
			}
			if pings.Load() != npings {
				t.Errorf("%d pings, want %d", pings.Load(), npings)
			}
		})
	}
}

// ---- 5. protocol errors ------------------------------------------------

func TestProtocolErrors(t *testing.T) {
	bigLen := []byte{fin(BinaryMessage), maskBit | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}
	bigLen = append(bigLen, testKey[:]...)
	cases := []struct {
		name string
		role Role
		in   []byte
	}{
		{"RSV1", Server, frame(fin(TextMessage)|0x40, true, []byte("x"))},
		{"RSV2", Client, frame(fin(BinaryMessage)|0x20, false, []byte("x"))},
		{"RSV3 on a ping", Server, frame(fin(PingMessage)|0x10, true, nil)},
		{"unmasked frame to a server", Server, frame(fin(TextMessage), false, []byte("x"))},
		{"unmasked ping to a server", Server, frame(fin(PingMessage), false, nil)},
		{"masked frame to a client", Client, frame(fin(TextMessage), true, []byte("x"))},
		{"masked close to a client", Client, frame(fin(CloseMessage), true, nil)},
		{"fragmented ping", Server, frame(PingMessage, true, []byte("p"))},
		{"fragmented close", Client, frame(CloseMessage, false, nil)},
		{"ping over 125 bytes", Server, frame(fin(PingMessage), true, make([]byte, 126))},
		{"pong over 125 bytes", Client, frame(fin(PongMessage), false, make([]byte, 300))},
		{"close over 125 bytes", Server, frame(fin(CloseMessage), true, closePayload(1000, strings.Repeat("r", 124)))},
		{"opcode 3", Server, frame(fin(3), true, nil)},
		{"opcode 7", Client, frame(fin(7), false, []byte("x"))},
		{"opcode 11", Server, frame(fin(11), true, nil)},
		{"opcode 15", Client, frame(fin(15), false, nil)},
		{"continuation without a message", Server, frame(fin(opContinuation), true, []byte("x"))},
		{"continuation after the message ended", Client, cat(frame(fin(TextMessage), false, []byte("a")), frame(fin(opContinuation), false, []byte("b")))},
		{"new message before the previous ended", Server, cat(frame(TextMessage, true, []byte("a")), frame(fin(TextMessage), true, []byte("b")))},
		{"new message after a ping inside a message", Client, cat(frame(BinaryMessage, false, []byte("a")), frame(fin(PingMessage), false, nil), frame(BinaryMessage, false, nil))},
		{"64-bit length with the MSB set", Server, bigLen},
		{"close code 1005", Server, frame(fin(CloseMessage), true, closePayload(1005, ""))},
		{"close code 1006", Client, frame(fin(CloseMessage), false, closePayload(1006, ""))},
		{"close code 999", Server, frame(fin(CloseMessage), true, closePayload(999, ""))},
		{"close code 2000", Server, frame(fin(CloseMessage), true, closePayload(2000, "x"))},
		{"close code 0", Server, frame(fin(CloseMessage), true, closePayload(0, ""))},
		{"close code 1004", Server, frame(fin(CloseMessage), true, closePayload(1004, ""))},
		{"close code 1015", Server, frame(fin(CloseMessage), true, closePayload(1015, ""))},
		{"close code 2999", Server, frame(fin(CloseMessage), true, closePayload(2999, ""))},
		{"close code 5000", Client, frame(fin(CloseMessage), false, closePayload(5000, ""))},
		{"one-byte close payload", Server, frame(fin(CloseMessage), true, []byte{3})},
		{"close reason not UTF-8", Server, frame(fin(CloseMessage), true, closePayload(1000, "ok\xff\xfe"))},
		{"close reason with a lone surrogate", Client, frame(fin(CloseMessage), false, closePayload(1000, "\xed\xa0\x80"))},
	}
	// onClose is a Conn's Options whose OnClose sets *closed.
	onClose := func(closed *bool) Options { return Options{OnClose: func(int, string) { *closed = true }} }
	check := func(t *testing.T, c *Conn, closed *bool) {
		t.Helper()
		var err error
		for range 10 {
			if _, err = c.nextPiece(); err != nil {
				break
			}
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("nextPiece: %v (%T), want a *ProtocolError", err, err)
		}
		if !strings.HasPrefix(pe.Error(), "websocket: ") {
			t.Errorf("Error() = %q", pe.Error())
		}
		if _, err2 := c.nextPiece(); err2 != err {
			t.Errorf("the error is not sticky: then %v", err2)
		}
		if *closed {
			t.Error("OnClose was called for a broken close frame")
		}
		if c.rpool != nil || c.rbuf != nil {
			t.Error("the read buffer was not given back")
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("tcp", func(t *testing.T) {
				closed := false
				c, peer := rawPair(t, tc.role, onClose(&closed))
				if _, err := peer.Write(tc.in); err != nil {
					t.Fatal(err)
				}
				check(t, c, &closed)
			})
			t.Run("bytewise", func(t *testing.T) {
				sc := &scriptConn{}
				for i := range tc.in {
					sc.feed(tc.in[i : i+1])
				}
				closed := false
				c := New(sc, tc.role, "", nil, onClose(&closed))
				defer c.Release()
				check(t, c, &closed)
			})
		})
	}
}

// ---- 6. close ----------------------------------------------------------

func TestCloseFrames(t *testing.T) {
	cases := []struct {
		payload []byte
		code    int
		text    string
	}{
		{nil, websocket.CloseNoStatusReceived, ""},
		{closePayload(1000, ""), 1000, ""},
		{closePayload(1001, "going away"), 1001, "going away"},
		{closePayload(1003, ""), 1003, ""},
		{closePayload(1007, "é"), 1007, "é"},
		{closePayload(1014, ""), 1014, ""},
		{closePayload(3000, "x"), 3000, "x"},
		{closePayload(4999, strings.Repeat("r", 123)), 4999, strings.Repeat("r", 123)},
	}
	for _, role := range []Role{Server, Client} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%d", roleName(role), tc.code), func(t *testing.T) {
				var calls []string
				c, peer := rawPair(t, role, Options{OnClose: func(code int, text string) { calls = append(calls, fmt.Sprint(code, " ", text)) }})
				masked := role == Server
				// A message, then the close frame in the middle of another.
				peer.Write(cat(frame(fin(TextMessage), masked, []byte("m")), frame(BinaryMessage, masked, []byte("half")), frame(fin(CloseMessage), masked, tc.payload)))
				if _, got, _, err := readMsg(c); err != nil || string(got) != "m" {
					t.Fatalf("first message %q, %v", got, err)
				}
				if p, err := c.nextPiece(); err != nil || string(p.Data) != "half" {
					t.Fatalf("fragment %q, %v", p.Data, err)
				}
				_, err := c.nextPiece()
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != tc.code || ce.Text != tc.text {
					t.Fatalf("nextPiece: %v, want close %d %q", err, tc.code, tc.text)
				}
				if want := fmt.Sprint(tc.code, " ", tc.text); len(calls) != 1 || calls[0] != want {
					t.Errorf("OnClose calls %q, want [%q]", calls, want)
				}
				if _, err2 := c.nextPiece(); err2 != err {
					t.Errorf("the error is not sticky: then %v", err2)
				}
				if len(calls) != 1 {
					t.Errorf("OnClose called %d times", len(calls))
				}
			})
		}
	}
}

func TestCloseFromGorilla(t *testing.T) {
	t.Run("gorilla client", func(t *testing.T) {
		var code int
		var text string
		c, gc := serverPair(t, websocket.Dialer{}, Options{OnClose: func(cd int, tx string) { code, text = cd, tx }})
		if err := gc.WriteControl(CloseMessage, websocket.FormatCloseMessage(4001, "bye now"), soon()); err != nil {
			t.Fatal(err)
		}
		_, err := c.nextPiece()
		if !websocket.IsCloseError(err, 4001) || code != 4001 || text != "bye now" {
			t.Fatalf("nextPiece: %v; OnClose(%d, %q)", err, code, text)
		}
	})
	t.Run("gorilla server", func(t *testing.T) {
		var code int
		c, wait := clientPair(t, func(gc *websocket.Conn) error {
			if _, _, err := gc.ReadMessage(); err != nil {
				return err
			}
			return gc.WriteControl(CloseMessage, websocket.FormatCloseMessage(1001, "restart"), soon())
		}, Options{OnClose: func(cd int, _ string) { code = cd }})
		if err := c.WriteMessage(TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		_, err := c.nextPiece()
		if !websocket.IsCloseError(err, 1001) || code != 1001 {
			t.Fatalf("nextPiece: %v; OnClose code %d", err, code)
		}
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEOF(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"between messages", frame(fin(TextMessage), true, []byte("m"))},
		{"in a header", frame(fin(BinaryMessage), true, make([]byte, 1000))[:3]},
		{"in a payload", frame(fin(BinaryMessage), true, make([]byte, 100000))[:5000]},
		{"in a control frame", frame(fin(PingMessage), true, []byte("ping"))[:8]},
		{"between fragments", frame(BinaryMessage, true, []byte("a"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			closed := false
			c, peer := rawPair(t, Server, Options{OnClose: func(int, string) { closed = true }})
			peer.Write(tc.in)
			peer.Close()
			var err error
			for range 100 {
				if _, err = c.nextPiece(); err != nil {
					break
				}
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
				t.Fatalf("nextPiece: %v (%T), want close 1006", err, err)
			}
			if !websocket.IsUnexpectedCloseError(err) {
				t.Errorf("gorilla does not see %v as unexpected", err)
			}
			if _, err2 := c.nextPiece(); err2 != err {
				t.Errorf("the error is not sticky: then %v", err2)
			}
			if closed {
				t.Error("OnClose called without a close frame")
			}
		})
	}
}

func TestReadErrorIsSticky(t *testing.T) {
	c, _ := rawPair(t, Server)
	c.SetReadDeadline(time.Now())
	_, err := c.nextPiece()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nextPiece: %v, want a timeout", err)
	}
	c.SetReadDeadline(soon())
	if _, err2 := c.nextPiece(); err2 != err {
		t.Fatalf("then %v", err2)
	}
}

// ---- 7. stamps and Parking -----------------------------------------------

func TestStamps(t *testing.T) {
	var rs, ws atomic.Int64
	c, peer := rawPair(t, Server, Options{ReadStamp: &rs, WriteStamp: &ws})
	within := func(what string, stamp, before int64) {
		t.Helper()
		if after := Now(); stamp < before || stamp > after {
			t.Errorf("%s = %d, want within [%d, %d]", what, stamp, before, after)
		}
	}

	before := Now()
	peer.Write(frame(fin(PingMessage), true, nil))
	peer.Write(frame(fin(TextMessage), true, []byte("x")))
	if _, _, _, err := readMsg(c); err != nil {
		t.Fatal(err)
	}
	within("ReadStamp", rs.Load(), before)

	// A control frame alone is a read too.
	rs.Store(0)
	before = Now()
	peer.Write(cat(frame(fin(PongMessage), true, nil), frame(fin(CloseMessage), true, nil)))
	if _, err := c.nextPiece(); !websocket.IsCloseError(err, websocket.CloseNoStatusReceived) {
		t.Fatal(err)
	}
	within("ReadStamp after a control frame", rs.Load(), before)

	// Control frames alone do not stamp writes.
	if err := c.WriteControl(PingMessage, []byte("p"), soon()); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteControl(PongMessage, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ws.Load() != 0 {
		t.Fatal("WriteStamp set by control frames")
	}
	// Buffering does not either; a flush does.
	c.BeginMessage(TextMessage)
	c.Write([]byte("x"))
	c.EndMessage()
	if ws.Load() != 0 {
		t.Fatal("WriteStamp set before a flush")
	}
	before = Now()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	within("WriteStamp after Flush", ws.Load(), before)

	ws.Store(0)
	if err := c.WriteControl(PingMessage, nil, soon()); err != nil {
		t.Fatal(err)
	}
	if ws.Load() != 0 {
		t.Fatal("WriteStamp set by a ping after the data was flushed")
	}
	// A ping that carries buffered data frames stamps.
	c.BeginMessage(TextMessage)
	c.EndMessage()
	before = Now()
	if err := c.WriteControl(PingMessage, nil, soon()); err != nil {
		t.Fatal(err)
	}
	within("WriteStamp after a ping carrying data", ws.Load(), before)

	// The fragments of a large message stamp as they go.
	ws.Store(0)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		_, err := io.ReadFull(peer, buf)
		errc <- err
	}()
	c.BeginMessage(BinaryMessage)
	before = Now()
	if err := c.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	within("WriteStamp after fragments", ws.Load(), before)
	c.AbandonMessage()
	c.Close()
	<-errc
}

// eventConn logs reads.
type eventConn struct {
	net.Conn
	log *[]string
}

func (e eventConn) Read(b []byte) (int, error) {
	*e.log = append(*e.log, "read")
	return e.Conn.Read(b)
}

// TestParking: on a connection that is not a socket, Parking comes before
// every read.
func TestParking(t *testing.T) {
	a, peer := tcpPair(t)
	var log []string
	c := New(eventConn{a, &log}, Server, "", nil, Options{})
	defer c.Release()
	parking := func() { log = append(log, "before") }
	want := []string{"a", "b", strings.Repeat("c", 20000)}
	for _, m := range want {
		peer.Write(frame(fin(TextMessage), true, []byte(m)))
		_, got, _, err := readMsgParking(c, parking)
		if err != nil || string(got) != m {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
	}
	if len(log) < 6 || len(log)%2 != 0 {
		t.Fatalf("events %q", log)
	}
	for i, e := range log {
		if want := []string{"before", "read"}[i%2]; e != want {
			t.Fatalf("event %d is %q, want %q: %q", i, e, want, log)
		}
	}

	// The proxy's use: Parking flushes what was forwarded.
	out, outPeer := rawPair(t, Client)
	parking = func() {
		if err := out.Flush(); err != nil {
			t.Error(err)
		}
	}
	peer.Write(cat(frame(fin(TextMessage), true, []byte("1")), frame(fin(TextMessage), true, []byte("2"))))
	for range 2 {
		_, got, _, err := readMsgParking(c, parking)
		if err != nil {
			t.Fatal(err)
		}
		if err := out.WriteMessage(TextMessage, got); err != nil {
			t.Fatal(err)
		}
	}
	expectFrames(t, outPeer, Client, dataFrame(TextMessage, true, "1"), dataFrame(TextMessage, true, "2"))
}

// ---- 8. read buffers -----------------------------------------------------

func TestReadBufferAdaptation(t *testing.T) {
	sc := &scriptConn{}
	var pings int
	c := New(sc, Server, "", nil, Options{OnPing: func([]byte) { pings++ }})
	defer c.Release()
	on := func(want int) {
		t.Helper()
		if len(c.rbuf) != want || (c.rpool == nil) != (want == 0) {
			t.Fatalf("read buffer of %d bytes (pooled: %v), want %d", len(c.rbuf), c.rpool != nil, want)
		}
	}
	read := func(want []byte) {
		t.Helper()
		_, got, _, err := readMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, want %d", len(got), len(want))
		}
	}
	on(0) // none until the first read

	small := []byte("small")
	sc.feed(frame(fin(TextMessage), true, small))
	read(small)
	on(midReadSize) // the least a socket read takes (see wantClass)

	// A large message arriving at once: the large pooled buffer.
	big := payload(BinaryMessage, 200<<10, 1)
	sc.feed(frame(fin(BinaryMessage), true, big))
	read(big)
	on(largeReadSize)

	// Small traffic again: back on the mid-size buffer within a few
	// messages, and staying there.
	for i := range 6 {
		sc.feed(frame(fin(TextMessage), true, small))
		read(small)
		if i >= 2 {
			on(midReadSize)
		}
	}

	// A 2000-byte payload whose header came alone: still the mid-size
	// buffer.
	mid := payload(BinaryMessage, 2000, 2)
	f := frame(fin(BinaryMessage), true, mid)
	sc.feed(f[:8], f[8:])
	read(mid)
	on(midReadSize)
	for range 3 {
		sc.feed(frame(fin(TextMessage), true, small))
		read(small)
	}
	on(midReadSize)

	// Control frames between large reads do not lose bytes.
	stream := cat(frame(fin(PingMessage), true, []byte("1")), frame(fin(BinaryMessage), true, big), frame(fin(PingMessage), true, []byte("2")), frame(fin(BinaryMessage), true, big))
	sc.feed(stream[:40000], stream[40000:])
	read(big)
	read(big)
	if pings != 2 {
		t.Errorf("%d pings", pings)
	}
	if sc.reads == 0 {
		t.Fatal("no reads")
	}
}

func TestBufferedAfterHandshake(t *testing.T) {
	masked := true
	one := frame(fin(TextMessage), masked, []byte("one"))
	two := frame(fin(BinaryMessage), masked, payload(BinaryMessage, 300, 1))
	three := frame(fin(TextMessage), masked, []byte("three"))

	t.Run("small", func(t *testing.T) {
		sc := &scriptConn{}
		buffered := cat(one, two, three[:3])
		c := New(sc, Server, "", buffered, Options{})
		defer c.Release()
		buffered[0] = 0 // copied, not kept
		sc.feed(three[3:])
		for _, want := range []string{"one", string(payload(BinaryMessage, 300, 1))} {
			if _, got, _, err := readMsg(c); err != nil || string(got) != want {
				t.Fatalf("read %q, %v", trim(got), err)
			}
		}
		if sc.reads != 0 {
			t.Fatalf("%d reads before the buffered bytes were used up", sc.reads)
		}
		if _, got, _, err := readMsg(c); err != nil || string(got) != "three" {
			t.Fatalf("read %q, %v", got, err)
		}
	})

	t.Run("over the small buffer", func(t *testing.T) {
		sc := &scriptConn{}
		big := payload(BinaryMessage, 3000, 2)
		c := New(sc, Server, "", cat(frame(fin(BinaryMessage), masked, big), one[:1]), Options{})
		defer c.Release()
		sc.feed(one[1:])
		if _, got, _, err := readMsg(c); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
		if sc.reads != 0 {
			t.Fatalf("%d reads for a buffered message", sc.reads)
		}
		for range 3 {
			if _, got, _, err := readMsg(c); err != nil || string(got) != "one" {
				t.Fatalf("read %q, %v", got, err)
			}
			sc.feed(one)
		}
		if len(c.rbuf) != midReadSize {
			t.Errorf("read buffer of %d bytes after small traffic, want the least a read takes", len(c.rbuf))
		}
	})

	t.Run("too many", func(t *testing.T) {
		c := New(&scriptConn{}, Server, "", make([]byte, largeReadSize+1), Options{})
		defer c.Release()
		var pe *ProtocolError
		if _, err := c.nextPiece(); !errors.As(err, &pe) {
			t.Fatalf("nextPiece: %v", err)
		}
	})

	t.Run("then a TCP peer", func(t *testing.T) {
		// A client that sends at once: its first frame may arrive with
		// the handshake, and the rest on the socket.
		a, peer := tcpPair(t)
		c := New(a, Server, "", one, Options{})
		defer c.Release()
		peer.Write(two)
		if _, got, _, err := readMsg(c); err != nil || string(got) != "one" {
			t.Fatalf("read %q, %v", got, err)
		}
		if _, got, _, err := readMsg(c); err != nil || len(got) != 300 {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
	})
}

// ---- write deadlines, failures, release -----------------------------------

// deadlineConn records the write deadline each write ran under.
type deadlineConn struct {
	net.Conn
	wd      time.Time
	atWrite []time.Time
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.wd = t
	return d.Conn.SetWriteDeadline(t)
}

func (d *deadlineConn) Write(b []byte) (int, error) {
	d.atWrite = append(d.atWrite, d.wd)
	return d.Conn.Write(b)
}

func TestWriteDeadlines(t *testing.T) {
	a, _ := tcpPair(t)
	dc := &deadlineConn{Conn: a}
	c := New(dc, Server, "", nil, Options{})
	defer func() { c.Release() }() // the second c's
	last := func() time.Time { return dc.atWrite[len(dc.atWrite)-1] }

	// No WriteTimeout: data writes have no deadline, even after a control
	// frame written with one.
	if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !last().IsZero() {
		t.Fatalf("deadline %v without a WriteTimeout", last())
	}
	ctl := time.Now().Add(time.Hour)
	if err := c.WriteControl(PingMessage, nil, ctl); err != nil {
		t.Fatal(err)
	}
	if !last().Equal(ctl) {
		t.Fatalf("ping deadline %v, want %v", last(), ctl)
	}
	if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !last().IsZero() {
		t.Fatalf("a data write ran under the ping's deadline %v", last())
	}

	// A WriteTimeout bounds every flush, whatever deadline a control frame
	// had. Not a socket: the deadline is set ahead, to between WriteTimeout
	// and 1.5 × WriteTimeout from now (a socket gets one only when a write
	// waits: TestProgressDeadlineArmedOnlyWhenBlocked).
	c.Release()
	c = New(dc, Server, "", nil, Options{WriteTimeout: time.Second})
	for _, ctl := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(10 * time.Millisecond), {}} {
		if !ctl.IsZero() {
			if err := c.WriteControl(PingMessage, nil, ctl); err != nil {
				t.Fatal(err)
			}
		}
		before := time.Now()
		if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if d := last(); d.Before(before.Add(c.opts.WriteTimeout)) || d.After(time.Now().Add(c.opts.WriteTimeout*3/2)) {
			t.Fatalf("after a ping with deadline %v: data written with deadline %v (now %v)", ctl, d, before)
		}
	}
	// The deadline is not reset on every flush of a busy connection.
	n := 0
	for range 10 {
		n = len(dc.atWrite)
		if err := c.WriteMessage(TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 || !dc.atWrite[n].Equal(dc.atWrite[n-1]) {
		t.Error("the write deadline was reset on a busy connection")
	}
	// A ping without a deadline gets the WriteTimeout.
	before := time.Now()
	c.wdeadline.Store(0)
	if err := c.WriteControl(PingMessage, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if d := last(); d.Before(before.Add(c.opts.WriteTimeout*3/2)) || d.After(time.Now().Add(c.opts.WriteTimeout*3/2)) {
		t.Fatalf("ping without a deadline written under %v", d)
	}
}

func TestWriteTimeout(t *testing.T) {
	a, b := net.Pipe() // no reader: every write blocks
	defer b.Close()
	c := New(a, Client, "", nil, Options{WriteTimeout: 30 * time.Millisecond})
	defer c.Close()
	defer c.Release()
	err := c.WriteMessage(TextMessage, []byte("stuck"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteMessage: %v, want a timeout", err)
	}
	if c.wbp != nil {
		t.Error("write buffer held after a failed write")
	}
	// Errors are sticky.
	if err2 := c.Flush(); err2 != err {
		t.Errorf("Flush: %v", err2)
	}
	if err2 := c.WriteMessage(TextMessage, nil); err2 != err {
		t.Errorf("WriteMessage: %v", err2)
	}
	if err2 := c.WriteControl(PingMessage, nil, time.Time{}); err2 != err {
		t.Errorf("WriteControl: %v", err2)
	}
	c.BeginMessage(TextMessage)
	if err2 := c.Write([]byte("x")); err2 != err {
		t.Errorf("Write: %v", err2)
	}
	if err2 := c.EndMessage(); err2 != err {
		t.Errorf("EndMessage: %v", err2)
	}
}

func TestWriteControlErrors(t *testing.T) {
	c, _ := rawPair(t, Client)
	var pe *ProtocolError
	if err := c.WriteControl(PingMessage, make([]byte, 126), soon()); !errors.As(err, &pe) {
		t.Fatalf("126-byte ping: %v", err)
	}
	if err := c.WriteControl(PingMessage, make([]byte, 125), soon()); err != nil {
		t.Fatalf("125-byte ping: %v", err)
	}
}

func TestAbandonMessage(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			c, peer := rawPair(t, role)
			c.BeginMessage(TextMessage)
			c.Write([]byte("kept"))
			c.EndMessage()
			c.BeginMessage(BinaryMessage)
			c.Write([]byte("dropped"))
			if err := c.Flush(); err != nil { // sends "kept" only
				t.Fatal(err)
			}
			c.AbandonMessage()
			if c.Buffered() {
				t.Error("Buffered() after AbandonMessage")
			}
			if c.wbp != nil {
				t.Error("a write buffer is held with nothing buffered")
			}
			// Nothing of the abandoned message was sent: a new one may
			// follow.
			if err := c.WriteMessage(TextMessage, []byte("next")); err != nil {
				t.Fatal(err)
			}
			c.BeginMessage(TextMessage)
			c.Write([]byte("dropped too"))
			c.AbandonMessage()
			if err := c.WriteControl(PingMessage, []byte("p"), soon()); err != nil {
				t.Fatal(err)
			}
			expectFrames(t, peer, role,
				dataFrame(TextMessage, true, "kept"),
				dataFrame(TextMessage, true, "next"),
				rawFrame{fin: true, op: PingMessage, data: []byte("p")})
			if c.wbp != nil {
				t.Error("a write buffer is held with nothing buffered")
			}
		})
	}
}

func TestRelease(t *testing.T) {
	c, peer := rawPair(t, Server)
	peer.Write(frame(fin(BinaryMessage), true, make([]byte, 100000)))
	if p, err := c.nextPiece(); err != nil || len(p.Data) == 0 {
		t.Fatal(err)
	}
	c.BeginMessage(TextMessage)
	c.Write([]byte("pending"))
	c.Release()
	if c.rpool != nil || c.wbp != nil {
		t.Fatal("buffers held after Release")
	}
	if err := c.WriteMessage(TextMessage, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteMessage after Release: %v", err)
	}
	if err := c.WriteControl(PingMessage, nil, soon()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteControl after Release: %v", err)
	}
	if c.NetConn() == nil {
		t.Fatal("NetConn() = nil")
	}
}

// ---- 9. allocations and the forwarding benchmark -------------------------

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// readWhole reads one message and returns its length, without allocating.
func readWhole(c *Conn) (int, error) {
	n := 0
	for {
		p, err := c.nextPiece()
		if err != nil {
			return n, err
		}
		n += len(p.Data)
		if p.Last() {
			return n, nil
		}
	}
}

func TestAllocs(t *testing.T) {
	rc, in := rawPair(t, Server)  // reads masked frames from in
	wc, out := rawPair(t, Client) // writes masked frames to out
	f64 := frame(fin(TextMessage), true, payload(TextMessage, 64, 1))
	f1k := frame(fin(TextMessage), true, payload(TextMessage, 1024, 2))
	p64 := payload(TextMessage, 64, 3)
	sink := make([]byte, 2048)
	var failed error
	step := func() {
		for i, f := range [][]byte{f64, f1k} {
			if _, err := in.Write(f); err != nil {
				failed = err
				return
			}
			if n, err := readWhole(rc); err != nil || n != []int{64, 1024}[i] {
				failed = fmt.Errorf("read %d bytes, %v", n, err)
				return
			}
		}
		wc.BeginMessage(TextMessage)
		if err := wc.Write(p64); err != nil {
			failed = err
			return
		}
		if err := wc.EndMessage(); err != nil {
			failed = err
			return
		}
		if err := wc.Flush(); err != nil {
			failed = err
			return
		}
		if _, err := io.ReadFull(out, sink[:2+4+64]); err != nil {
			failed = err
		}
	}
	for range 100 { // warm the pools
		step()
	}
	allocs := testing.AllocsPerRun(1000, step)
	if failed != nil {
		t.Fatal(failed)
	}
	if raceEnabled() {
		t.Skipf("%.1f allocations per step; not checked with the race detector (sync.Pool drops buffers)", allocs)
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per step (two reads and a write), want 0", allocs)
	}
}

// frameOverhead is the header length of a frame with an n-byte payload.
func frameOverhead(n int, masked bool) int {
	h := 2
	switch {
	case n > 0xffff:
		h += 8
	case n > 125:
		h += 2
	}
	if masked {
		h += 4
	}
	return h
}

// BenchmarkForward reads a masked frame on a Server Conn and forwards it,
// piece by piece, through a Client Conn, as the proxy does.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			src, in := rawPair(b, Server)
			dst, out := rawPair(b, Client)
			for _, c := range []net.Conn{src.NetConn(), in, dst.NetConn(), out} {
				c.SetDeadline(time.Time{})
			}
			f := frame(fin(BinaryMessage), true, payload(BinaryMessage, size, 1))
			sink := make([]byte, frameOverhead(size, true)+size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := in.Write(f); err != nil {
					b.Fatal(err)
				}
				for {
					p, err := src.nextPiece()
					if err != nil {
						b.Fatal(err)
					}
					if p.First() {
						dst.BeginMessage(p.Type)
					}
					if err := dst.Write(p.Data); err != nil {
						b.Fatal(err)
					}
					if p.Last() {
						break
					}
				}
				if err := dst.EndMessage(); err != nil {
					b.Fatal(err)
				}
				if err := dst.Flush(); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(out, sink); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ---- 10. concurrent data and control writes ------------------------------

// concurrentTraffic writes n messages (some larger than the write buffer)
// from one goroutine and n pings from another, then "end".
func concurrentTraffic(c *Conn, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for i := range n {
			p := payload(BinaryMessage, []int{10, 1000, 40000, 70000}[i%4], uint64(i))
			if err := writeMsg(c, BinaryMessage, p, i); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			if err := c.WriteControl(PingMessage, []byte(strconv.Itoa(i)), soon()); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return c.WriteMessage(TextMessage, []byte("end"))
}

// receiveConcurrent is the gorilla side of concurrentTraffic.
func receiveConcurrent(gc *websocket.Conn, n int) error {
	next := 0
	gc.SetPingHandler(func(s string) error {
		if s != strconv.Itoa(next) {
			return fmt.Errorf("ping %q, want %d", s, next)
		}
		next++
		return nil
	})
	for i := 0; ; i++ {
		mt, p, err := gc.ReadMessage()
		if err != nil {
			return err
		}
		if mt == TextMessage {
			if string(p) != "end" || i != n {
				return fmt.Errorf("text message %q after %d messages", p, i)
			}
			break
		}
		if want := payload(BinaryMessage, []int{10, 1000, 40000, 70000}[i%4], uint64(i)); !bytes.Equal(p, want) {
			return fmt.Errorf("message %d: %d bytes, corrupted or out of order", i, len(p))
		}
	}
	if next != n {
		return fmt.Errorf("%d pings, want %d", next, n)
	}
	return nil
}

func TestConcurrentWrites(t *testing.T) {
	const n = 100
	t.Run("Server", func(t *testing.T) {
		c, gc := serverPair(t, websocket.Dialer{})
		errc := make(chan error, 1)
		go func() { errc <- concurrentTraffic(c, n) }()
		if err := receiveConcurrent(gc, n); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Client", func(t *testing.T) {
		c, wait := clientPair(t, func(gc *websocket.Conn) error { return receiveConcurrent(gc, n) })
		if err := concurrentTraffic(c, n); err != nil {
			t.Fatal(err)
		}
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// ---- 11. Serve, TryPiece and fill ----------------------------------------

// handler is a Serve handler: it consumes every piece buffered with
// TryPiece and echoes and/or collects each message, and on Parking calls
// onPark (flush, for the proxy's coalescing flush). Its fields belong to the reading goroutine
// while Serve runs; read them after Serve returned.
type handler struct {
	c       *Conn
	echo    bool // write each message back
	collect bool // keep each message (got, types) and the messages per call (perCall)
	stopAt  int  // stop Serve once this many messages were read (0: never)
	stopNow bool // stop after each message, even with more buffered
	keepOn  bool // do not stop on TryPiece's error

	calls   int    // handle calls
	onPark  func() // called on Parking, if set
	parks   int    // Parking events
	msgs    int
	perCall []int
	types   []int
	got     [][]byte
	cur     []byte
	err     error // TryPiece's error, or a write's
}

func (h *handler) handle(ev ServeEvent) bool {
	if ev == Parking {
		h.parks++
		if h.onPark != nil {
			h.onPark()
		}
		return false
	}
	return h.arrived()
}

// arrived is handle on Arrived.
func (h *handler) arrived() bool {
	h.calls++
	n := 0
	stop := h.drain(&n)
	if h.collect {
		h.perCall = append(h.perCall, n)
	}
	return stop
}

func (h *handler) drain(n *int) bool {
	for {
		p, ok, err := h.c.TryPiece()
		if err != nil {
			if h.err == nil {
				h.err = err
			}
			return !h.keepOn
		}
		if !ok {
			return h.stopAt > 0 && h.msgs >= h.stopAt
		}
		if h.echo {
			if p.First() {
				h.c.BeginMessage(p.Type)
			}
			if err := h.c.Write(p.Data); err != nil {
				h.err = err
				return true
			}
		}
		if h.collect {
			if p.First() {
				h.cur = []byte{}
			}
			h.cur = append(h.cur, p.Data...)
		}
		if !p.Last() {
			continue
		}
		if h.echo {
			if err := h.c.EndMessage(); err != nil {
				h.err = err
				return true
			}
		}
		if h.collect {
			h.got = append(h.got, h.cur)
			h.types = append(h.types, p.Type)
		}
		h.msgs++
		*n++
		if h.stopNow {
			return true
		}
	}
}

// with is a Serve handler that gives Parking to h and Arrived to arrived.
func (h *handler) with(arrived func() bool) func(ServeEvent) bool {
	return func(ev ServeEvent) bool {
		if ev == Parking {
			return h.handle(ev)
		}
		return arrived()
	}
}

// flush is an onPark hook: the proxy's coalescing flush.
func (h *handler) flush() {
	if err := h.c.Flush(); err != nil && h.err == nil {
		h.err = err
	}
}

// startServe runs c.Serve(handle) in a goroutine; wait returns its result.
// The test's cleanup closes c and waits, so no Serve outlives its test
// (nor runs when the pair's cleanup releases c's buffers).
func startServe(t *testing.T, c *Conn, handle func(ServeEvent) bool) (wait func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Serve(handle) }()
	wait = resultWithin(errc, func() error {
		c.Close()
		return fmt.Errorf("Serve still running after %v (after Close: %v)", testTimeout, <-errc)
	})
	t.Cleanup(func() { c.Close(); wait() })
	return wait
}

// onArrival is a Serve handler that calls arrived on Arrived and ignores
// Parking.
func onArrival(arrived func() bool) func(ServeEvent) bool {
	return func(ev ServeEvent) bool { return ev == Arrived && arrived() }
}

// resultWithin returns a wait that receives errc's one result within
// testTimeout, or else returns late's; later calls return the same.
func resultWithin(errc <-chan error, late func() error) (wait func() error) {
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			select {
			case err = <-errc:
			case <-time.After(testTimeout):
				err = late()
			}
		})
		return err
	}
}

// recv receives from ch within testTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("no %s within %v", what, testTimeout)
		panic("unreachable")
	}
}

// parkState is the read buffer a Conn held when its reader parked.
type parkState struct {
	held   bool // a read buffer (rbuf or rpool)
	unread int
}

// parkWatch wraps c's Serve read function, before Serve runs, to record on
// the reading goroutine the read buffer held each time Serve parks (returns
// false to syscall.RawConn.Read, which then waits for the socket), and to
// send it to parked (while there is room).
type parkWatch struct {
	states []parkState
	parked chan parkState
}

func watchParks(c *Conn) *parkWatch {
	w := &parkWatch{parked: make(chan parkState, 64)}
	inner := c.serveFn
	c.serveFn = func(fd uintptr) bool {
		if inner(fd) {
			return true
		}
		s := parkState{held: c.rbuf != nil || c.rpool != nil, unread: c.rend - c.rpos}
		w.states = append(w.states, s)
		select {
		case w.parked <- s:
		default:
		}
		return false
	}
	return w
}

// TestServeEcho round-trips messages of every length encoding through a
// Serve echo on the socket gorilla's Upgrader accepted, then a fragmented
// message with pings between its fragments, then ends with a close frame.
func TestServeEcho(t *testing.T) {
	rec := &pingRecorder{}
	var closes []string
	c, gc := serverPair(t, websocket.Dialer{}, Options{
		OnPing:  rec.onPing,
		OnClose: func(code int, text string) { closes = append(closes, fmt.Sprint(code, " ", text)) },
	})
	rec.c = c
	if c.raw == nil {
		t.Fatalf("%T: no syscall.RawConn, Serve would not be tested on its socket path", c.NetConn())
	}
	h := &handler{c: c, echo: true}
	h.onPark = h.flush
	wait := startServe(t, c, h.handle)

	type message struct {
		mt int
		p  []byte
	}
	var msgs []message
	for i, size := range []int{0, 1, 125, 126, 64 << 10, 300 << 10} {
		for _, mt := range []int{TextMessage, BinaryMessage} {
			msgs = append(msgs, message{mt, payload(mt, size, uint64(i))})
		}
	}
	frag := payload(BinaryMessage, 30000, 7)
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := gc.WriteMessage(m.mt, m.p); err != nil {
				errc <- err
				return
			}
		}
		errc <- sendFragmented(gc, frag)
	}()
	for i, m := range msgs {
		mt, p, err := gc.ReadMessage()
		if err != nil {
			t.Fatalf("echo %d (%d bytes): %v", i, len(m.p), err)
		}
		if mt != m.mt || !bytes.Equal(p, m.p) {
			t.Fatalf("echo %d: type %d, %d bytes; want type %d, %d bytes", i, mt, len(p), m.mt, len(m.p))
		}
	}
	if mt, p, err := gc.ReadMessage(); err != nil || mt != BinaryMessage || !bytes.Equal(p, frag) {
		t.Fatalf("echo of the fragmented message: type %d, %d bytes, %v", mt, len(p), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// The close frame surfaces through TryPiece; the handler stops Serve.
	if err := gc.WriteControl(CloseMessage, websocket.FormatCloseMessage(1001, "bye"), soon()); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("Serve: %v, want nil (the handler stopped it)", err)
	}
	var ce *websocket.CloseError
	if !errors.As(h.err, &ce) || ce.Code != 1001 || ce.Text != "bye" {
		t.Fatalf("TryPiece: %v, want close 1001 \"bye\"", h.err)
	}
	if len(closes) != 1 || closes[0] != "1001 bye" {
		t.Errorf("OnClose calls %q", closes)
	}
	if h.msgs != len(msgs)+1 {
		t.Errorf("%d messages echoed, want %d", h.msgs, len(msgs)+1)
	}
	if strings.Join(rec.pings, ",") != "p0,p1" || len(rec.mid) != 2 || !rec.mid[0] || !rec.mid[1] {
		t.Errorf("pings %q (between fragments: %v), want p0, p1 between fragments", rec.pings, rec.mid)
	}
	if h.parks == 0 {
		t.Error("no Parking")
	}
	// The error is final: Serve returns it at once, without reading.
	if err := c.Serve(h.handle); err != h.err {
		t.Errorf("Serve after the close frame: %v, want %v", err, h.err)
	}
	if c.rbuf != nil || c.rpool != nil {
		t.Error("a read buffer is held after the close frame")
	}
}

// TestServeStopResume stops Serve from the handler and calls it again: what
// was buffered (a partial header, complete messages) is not lost.
func TestServeStopResume(t *testing.T) {
	c, peer := rawPair(t, Server)
	fa := frame(fin(TextMessage), true, []byte("first"))
	fb := frame(fin(BinaryMessage), true, payload(BinaryMessage, 300, 1)) // an 8-byte header
	fc := frame(fin(TextMessage), true, []byte("third"))
	h := &handler{c: c, collect: true, stopAt: 1}
	check := func(want ...string) {
		t.Helper()
		if len(h.got) != len(want) {
			t.Fatalf("%d messages, want %d", len(h.got), len(want))
		}
		for i, w := range want {
			if string(h.got[i]) != w {
				t.Fatalf("message %d = %q, want %q", i, trim(h.got[i]), trim([]byte(w)))
			}
		}
	}

	// A message and 5 bytes of the next header, in one write: the handler
	// stops after the message, the partial header stays buffered.
	if _, err := peer.Write(cat(fa, fb[:5])); err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(h.handle); err != nil {
		t.Fatalf("Serve: %v, want nil (stopped by the handler)", err)
	}
	check("first")
	if got := c.rend - c.rpos; got != 5 || c.rbuf == nil {
		t.Fatalf("%d bytes kept after the stop, want the 5 of the partial header", got)
	}
	// The rest of it: the second Serve completes the frame.
	if _, err := peer.Write(fb[5:]); err != nil {
		t.Fatal(err)
	}
	h.stopAt = 2
	if err := c.Serve(h.handle); err != nil {
		t.Fatal(err)
	}
	check("first", string(payload(BinaryMessage, 300, 1)))
	if h.types[1] != BinaryMessage {
		t.Errorf("type %d", h.types[1])
	}

	// Within one Serve: a read that ends in the first header byte, the rest
	// written once the handler has seen it.
	after := make(chan int, 16)
	h.stopAt = 3
	wait := startServe(t, c, onArrival(func() bool {
		stop := h.arrived()
		after <- c.rend - c.rpos
		return stop
	}))
	if _, err := peer.Write(fc[:1]); err != nil {
		t.Fatal(err)
	}
	if n := recv(t, after, "handler call"); n != 1 {
		t.Fatalf("%d bytes kept after a 1-byte read, want 1", n)
	}
	if _, err := peer.Write(fc[1:]); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	check("first", string(payload(BinaryMessage, 300, 1)), "third")

	// A handler that stops with complete messages still buffered: TryPiece
	// returns them without a read, then Serve goes on.
	h.stopAt, h.stopNow = 0, true
	if _, err := peer.Write(cat(frame(fin(TextMessage), true, []byte("d")), frame(fin(TextMessage), true, []byte("e")), fb[:1])); err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(h.handle); err != nil {
		t.Fatal(err)
	}
	check("first", string(payload(BinaryMessage, 300, 1)), "third", "d")
	if p, ok, err := c.TryPiece(); err != nil || !ok || string(p.Data) != "e" || !p.First() || !p.Last() {
		t.Fatalf("TryPiece after the stop: %+v, %v, %v", p, ok, err)
	}
	if _, ok, err := c.TryPiece(); ok || err != nil {
		t.Fatalf("TryPiece on a partial header: %v, %v", ok, err)
	}
	if _, err := peer.Write(fb[1:]); err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(h.handle); err != nil {
		t.Fatal(err)
	}
	if h.msgs != 5 || !bytes.Equal(h.got[4], payload(BinaryMessage, 300, 1)) {
		t.Fatalf("%d messages; last %d bytes", h.msgs, len(h.got[len(h.got)-1]))
	}
}

// TestServeAfterHandshakeBuffer starts reading (Serve or fill) on a Conn
// made with more bytes past the handshake than the small read buffer holds,
// before TryPiece consumed them.
func TestServeAfterHandshakeBuffer(t *testing.T) {
	big := payload(BinaryMessage, 1000, 1)
	tail := frame(fin(TextMessage), true, []byte("tail"))
	buffered := cat(frame(fin(BinaryMessage), true, big), tail[:3])
	t.Run("Serve", func(t *testing.T) {
		a, peer := tcpPair(t)
		c := New(a, Server, "", buffered, Options{})
		defer c.Release()
		if _, err := peer.Write(tail[3:]); err != nil {
			t.Fatal(err)
		}
		h := &handler{c: c, collect: true, stopAt: 2}
		if err := c.Serve(h.handle); err != nil {
			t.Fatal(err)
		}
		if h.msgs != 2 || !bytes.Equal(h.got[0], big) || string(h.got[1]) != "tail" {
			t.Fatalf("%d messages", h.msgs)
		}
	})
	t.Run("fill", func(t *testing.T) {
		a, peer := tcpPair(t)
		c := New(a, Server, "", buffered, Options{})
		defer c.Release()
		if _, err := peer.Write(tail[3:]); err != nil {
			t.Fatal(err)
		}
		if err := c.fill(); err != nil {
			t.Fatal(err)
		}
		for _, want := range [][]byte{big, []byte("tail")} {
			_, got, _, err := readMsg(c)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(want))
			}
		}
	})
}

// TestServeParksWithoutBuffer checks the read buffer Serve holds each time
// it parks: none with nothing unread, and the partial header otherwise.
// Buffers held while reading are pooled ones of the three sizes.
func TestServeParksWithoutBuffer(t *testing.T) {
	c, peer := rawPair(t, Server)
	pw := watchParks(c)
	h := &handler{c: c, echo: true}
	h.onPark = h.flush
	var badBuf []int
	wait := startServe(t, c, h.with(func() bool {
		if c.rpool == nil || &(*c.rpool)[0] != &c.rbuf[0] || (len(c.rbuf) != smallReadSize && len(c.rbuf) != midReadSize && len(c.rbuf) != largeReadSize) {
			badBuf = append(badBuf, len(c.rbuf))
		}
		return h.arrived()
	}))
	recv(t, pw.parked, "park before any input")

	echo := func(p []byte) {
		t.Helper()
		if _, err := peer.Write(frame(fin(BinaryMessage), true, p)); err != nil {
			t.Fatal(err)
		}
		expectFrames(t, peer, Server, rawFrame{fin: true, op: BinaryMessage, data: p})
	}
	echo([]byte("a"))
	echo(payload(BinaryMessage, 20000, 1))

	// A read that ends in a header: Serve parks holding those bytes.
	f := frame(fin(BinaryMessage), true, []byte("partial"))
	if _, err := peer.Write(f[:3]); err != nil {
		t.Fatal(err)
	}
	for recv(t, pw.parked, "park").unread != 3 {
	}
	if _, err := peer.Write(f[3:]); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, peer, Server, rawFrame{fin: true, op: BinaryMessage, data: []byte("partial")})
	echo([]byte("b"))

	if _, err := peer.Write(frame(fin(CloseMessage), true, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if !websocket.IsCloseError(h.err, websocket.CloseNoStatusReceived) {
		t.Fatalf("handler: %v", h.err)
	}
	if len(badBuf) > 0 {
		t.Errorf("read buffers not from the pools: lengths %v", badBuf)
	}
	empty, partial := 0, 0
	for i, s := range pw.states {
		switch {
		case s.unread == 0 && s.held:
			t.Errorf("park %d: a read buffer held with nothing unread (%+v)", i, pw.states)
		case s.unread > 0 && !s.held:
			t.Errorf("park %d: %d unread bytes without a buffer", i, s.unread)
		case s.unread == 3:
			partial++
		case s.unread == 0:
			empty++
		}
	}
	if empty < 5 || partial != 1 {
		t.Errorf("parks %+v: want at least 5 with nothing unread and one with the 3 bytes", pw.states)
	}
	if h.parks != len(pw.states) {
		t.Errorf("Parking came %d times for %d parks", h.parks, len(pw.states))
	}
	if c.rbuf != nil || c.rpool != nil {
		t.Error("a read buffer is held after the close frame")
	}
}

// TestFillParksWithoutBuffer is the same for a Serve that stops after
// each read that returned bytes (fill).
func TestFillParksWithoutBuffer(t *testing.T) {
	c, peer := rawPair(t, Server)
	var states []parkState
	parked := make(chan struct{}, 1)
	inner := c.serveFn
	c.serveFn = func(fd uintptr) bool {
		if inner(fd) {
			return true
		}
		states = append(states, parkState{held: c.rbuf != nil || c.rpool != nil, unread: c.rend - c.rpos})
		select {
		case parked <- struct{}{}:
		default:
		}
		return false
	}
	befores := 0
	parking := func() { befores++ }
	fillParked := func(rest []byte) {
		t.Helper()
		select { // a signal from an earlier fill, which has returned
		case <-parked:
		default:
		}
		errc := make(chan error, 1)
		go func() { errc <- c.fillParking(parking) }()
		recv(t, parked, "park")
		if _, err := peer.Write(rest); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, errc, "fill"); err != nil {
			t.Fatal(err)
		}
	}
	fa := frame(fin(TextMessage), true, []byte("a"))
	fillParked(fa)
	if _, got, _, err := readMsgParking(c, parking); err != nil || string(got) != "a" {
		t.Fatalf("%q, %v", got, err)
	}
	fb := frame(fin(TextMessage), true, []byte("b"))
	if _, err := peer.Write(fb[:3]); err != nil {
		t.Fatal(err)
	}
	for c.rend-c.rpos < 3 { // one read, or a park and then one
		if err := c.fillParking(parking); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := c.TryPiece(); ok || err != nil {
		t.Fatalf("TryPiece on 3 header bytes: %v, %v", ok, err)
	}
	fillParked(fb[3:])
	if _, got, _, err := readMsgParking(c, parking); err != nil || string(got) != "b" {
		t.Fatalf("%q, %v", got, err)
	}
	if n := len(states); n < 2 || states[0] != (parkState{}) || states[n-1] != (parkState{held: true, unread: 3}) {
		t.Fatalf("parks %+v: want none held first, the 3 header bytes last", states)
	}
	for i, s := range states {
		if s.held != (s.unread > 0) {
			t.Errorf("park %d: %+v", i, s)
		}
	}
	if befores != len(states) {
		t.Errorf("Parking came %d times for %d parks (one per fill that waits)", befores, len(states))
	}
}

// TestServeCoalescing: what a read brought is echoed without flushing, and
// Parking flushes it in one write when Serve is about to park — not
// after a read that filled the buffer.
func TestServeCoalescing(t *testing.T) {
	a, peer := tcpPair(t)
	cs := countSocket(a)
	c := New(cs, Server, "", nil, Options{})
	t.Cleanup(c.Release)
	h := &handler{c: c, echo: true, collect: true}
	h.onPark = h.flush
	wait := startServe(t, c, h.handle)

	var in []byte
	var want []rawFrame
	for i := range 4 {
		p := "msg-" + strconv.Itoa(i)
		in = append(in, frame(fin(TextMessage), true, []byte(p))...)
		want = append(want, dataFrame(TextMessage, true, p))
	}
	if _, err := peer.Write(in); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := peer.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4*(2+5) {
		t.Fatalf("the peer's first read got %d bytes, want the four replies (%d bytes) at once", n, 4*(2+5))
	}
	expectFrames(t, bytes.NewReader(buf[:n]), Server, want...)
	if w := cs.writes.Load(); w != 1 {
		t.Fatalf("%d writes for four replies, want 1", w)
	}

	// Small messages and a large one in one write: Serve reads it in
	// several reads, the first of which fills its buffer, and flushes once.
	big := payload(BinaryMessage, 6000, 1)
	in = nil
	want = want[:0]
	for i := range 3 {
		p := "small-" + strconv.Itoa(i)
		in = append(in, frame(fin(TextMessage), true, []byte(p))...)
		want = append(want, dataFrame(TextMessage, true, p))
	}
	in = append(in, frame(fin(BinaryMessage), true, big)...)
	want = append(want, rawFrame{fin: true, op: BinaryMessage, data: big})
	if _, err := peer.Write(in); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, peer, Server, want...)
	if w := cs.writes.Load(); w != 2 {
		t.Fatalf("%d writes, want 2: one per park", w)
	}

	if _, err := peer.Write(frame(fin(CloseMessage), true, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if len(h.perCall) < 3 || h.perCall[0] != 4 {
		t.Errorf("messages per handler call %v: want the first four in one call", h.perCall)
	}
	if h.calls < 4 {
		t.Errorf("%d handler calls: the 6000-byte message came in one read", h.calls)
	}
}

func TestServeCloseWhileParked(t *testing.T) {
	c, _ := rawPair(t, Server)
	pw := watchParks(c)
	h := &handler{c: c}
	wait := startServe(t, c, h.handle)
	recv(t, pw.parked, "park")
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	err := wait()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Serve returned %v after Close", d)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: %v, want net.ErrClosed", err)
	}
	if h.calls != 0 {
		t.Errorf("%d handler calls", h.calls)
	}
	if c.rbuf != nil || c.rpool != nil {
		t.Error("a read buffer is held")
	}
	if err2 := c.Serve(h.handle); err2 != err {
		t.Errorf("Serve again: %v", err2)
	}
}

func TestServeDeadlineWhileParked(t *testing.T) {
	c, _ := rawPair(t, Server)
	pw := watchParks(c)
	h := &handler{c: c}
	wait := startServe(t, c, h.handle)
	recv(t, pw.parked, "park")
	start := time.Now()
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	err := wait()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Serve returned %v after the deadline passed", d)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Serve: %v (%T), want a timeout", err, err)
	}
	c.SetReadDeadline(soon())
	if err2 := c.Serve(h.handle); err2 != err {
		t.Errorf("Serve after the timeout: %v (errors are final)", err2)
	}
}

// TestServeCloseInHandler: Close from the handler after a read that filled
// the buffer stops Serve at its next read, through the closed flag. (The
// handler runs inside syscall.RawConn.Read, whose read lock net.Conn.Close
// waits for: Close must not wait for it.)
func TestServeCloseInHandler(t *testing.T) {
	c, peer := rawPair(t, Server)
	if _, err := peer.Write(frame(fin(BinaryMessage), true, make([]byte, 1000))); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := c.Serve(onArrival(func() bool {
		calls++
		c.Close()
		return false
	}))
	if err != net.ErrClosed || calls != 1 {
		t.Fatalf("Serve: %v after %d handler calls; want net.ErrClosed after 1", err, calls)
	}
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the peer read %d bytes, %v after Close", n, err)
	}
}

// TestCloseFromHooks calls Close from each hook that runs inside
// syscall.RawConn.Read, and from another goroutine while the handler runs.
func TestCloseFromHooks(t *testing.T) {
	ping := frame(fin(PingMessage), true, []byte("p"))
	t.Run("Parking in Serve", func(t *testing.T) {
		c, peer := rawPair(t, Server)
		h := &handler{c: c, onPark: func() { c.Close() }}
		if err := c.Serve(h.handle); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
		if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("the peer read %d bytes, %v after Close", n, err)
		}
	})
	t.Run("Parking in fill", func(t *testing.T) {
		c, peer := rawPair(t, Server)
		if err := c.fillParking(func() { c.Close() }); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("fill: %v", err)
		}
		if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("the peer read %d bytes, %v after Close", n, err)
		}
	})
	t.Run("OnPing in Serve", func(t *testing.T) {
		var c *Conn
		c, peer := rawPair(t, Server, Options{OnPing: func([]byte) { c.Close() }})
		if _, err := peer.Write(ping); err != nil {
			t.Fatal(err)
		}
		h := &handler{c: c, keepOn: true}
		if err := c.Serve(h.handle); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
	})
	t.Run("another goroutine while the handler runs", func(t *testing.T) {
		c, peer := rawPair(t, Server)
		entered, release := make(chan struct{}), make(chan struct{})
		var enterOnce, releaseOnce sync.Once
		unblock := func() { releaseOnce.Do(func() { close(release) }) }
		defer unblock() // before the cleanup waits for Serve
		wait := startServe(t, c, onArrival(func() bool {
			enterOnce.Do(func() { close(entered); <-release })
			return false
		}))
		if _, err := peer.Write(ping); err != nil {
			t.Fatal(err)
		}
		recv(t, entered, "handler call")
		closed := make(chan error, 1)
		go func() { closed <- c.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(time.Second):
			unblock()
			t.Fatal("Close waited for the handler")
		}
		// The peer sees the end at once, while the handler still runs.
		if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("the peer read %d bytes, %v after Close", n, err)
		}
		unblock()
		if err := wait(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
	})
	t.Run("a blocked writer while Serve is parked", func(t *testing.T) {
		a, peer := tcpPair(t)
		if err := a.SetWriteBuffer(4096); err != nil {
			t.Fatal(err)
		}
		if err := peer.SetReadBuffer(4096); err != nil {
			t.Fatal(err)
		}
		c := New(a, Server, "", nil, Options{})
		t.Cleanup(c.Release)
		pw := watchParks(c)
		wait := startServe(t, c, (&handler{c: c}).handle)
		recv(t, pw.parked, "park")
		werr := make(chan error, 1)
		go func() { werr <- c.WriteMessage(BinaryMessage, make([]byte, 8<<20)) }()
		select {
		case err := <-werr:
			t.Fatalf("an 8 MiB write to a peer that does not read returned: %v", err)
		case <-time.After(20 * time.Millisecond): // let it block (not needed for the assertions)
		}
		start := time.Now()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, werr, "write error"); err == nil {
			t.Fatal("the blocked write succeeded")
		}
		if err := wait(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the writer and the reader took %v to stop", d)
		}
	})
}

func TestServeEnds(t *testing.T) {
	msg := frame(fin(TextMessage), true, []byte("m"))
	t.Run("EOF", func(t *testing.T) {
		for _, tail := range [][]byte{nil, frame(fin(TextMessage), true, []byte("x"))[:3], frame(fin(BinaryMessage), true, make([]byte, 3000))[:1500]} {
			closed := false
			c, peer := rawPair(t, Server, Options{OnClose: func(int, string) { closed = true }})
			if _, err := peer.Write(cat(msg, tail)); err != nil {
				t.Fatal(err)
			}
			peer.Close()
			h := &handler{c: c, collect: true}
			err := c.Serve(h.handle)
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
				t.Fatalf("Serve: %v (%T), want close 1006", err, err)
			}
			if h.msgs != 1 || h.err != nil || closed {
				t.Fatalf("%d messages, handler error %v, OnClose called: %v", h.msgs, h.err, closed)
			}
			if c.rbuf != nil || c.rpool != nil {
				t.Error("a read buffer is held")
			}
			if _, _, err2 := c.TryPiece(); err2 != err {
				t.Errorf("TryPiece after EOF: %v", err2)
			}
		}
	})
	t.Run("EOF while parked", func(t *testing.T) {
		// The last message and the FIN arrive together: the read that
		// returns the message consumes the FIN too, and no further
		// readiness event comes; only the next read reports the end.
		for range 20 {
			c, peer := rawPair(t, Server)
			pw := watchParks(c)
			h := &handler{c: c, collect: true}
			wait := startServe(t, c, h.handle)
			recv(t, pw.parked, "park")
			if _, err := peer.Write(msg); err != nil {
				t.Fatal(err)
			}
			peer.Close()
			if err := wait(); !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) || h.msgs != 1 {
				t.Fatalf("Serve: %v after %d messages, want close 1006 after 1", err, h.msgs)
			}
		}
	})
	t.Run("close frame", func(t *testing.T) {
		var calls []string
		c, peer := rawPair(t, Server, Options{OnClose: func(code int, text string) { calls = append(calls, fmt.Sprint(code, " ", text)) }})
		if _, err := peer.Write(cat(msg, frame(fin(CloseMessage), true, closePayload(4000, "done")))); err != nil {
			t.Fatal(err)
		}
		h := &handler{c: c, collect: true}
		if err := c.Serve(h.handle); err != nil {
			t.Fatalf("Serve: %v, want nil (the handler stops on TryPiece's error)", err)
		}
		if !websocket.IsCloseError(h.err, 4000) || len(calls) != 1 || calls[0] != "4000 done" || h.msgs != 1 {
			t.Fatalf("TryPiece: %v; OnClose %q; %d messages", h.err, calls, h.msgs)
		}
		if err := c.Serve(h.handle); err != h.err {
			t.Errorf("Serve again: %v", err)
		}
		if len(calls) != 1 {
			t.Errorf("OnClose called %d times", len(calls))
		}
	})
	bad := frame(fin(TextMessage), false, []byte("unmasked"))
	for _, keepOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("protocol error/handler stops %v", !keepOn), func(t *testing.T) {
			c, peer := rawPair(t, Server)
			if _, err := peer.Write(cat(msg, bad)); err != nil {
				t.Fatal(err)
			}
			h := &handler{c: c, collect: true, keepOn: keepOn}
			err := c.Serve(h.handle)
			var pe *ProtocolError
			if !errors.As(h.err, &pe) || h.msgs != 1 {
				t.Fatalf("TryPiece: %v after %d messages, want a *ProtocolError after 1", h.err, h.msgs)
			}
			if keepOn {
				// The handler went on, but the connection is over: Serve
				// stops and returns the error.
				if err != h.err {
					t.Fatalf("Serve: %v, want %v", err, h.err)
				}
			} else if err != nil {
				t.Fatalf("Serve: %v, want nil (the handler stopped it)", err)
			}
			if h.calls != 1 {
				t.Errorf("%d handler calls after the error", h.calls)
			}
			if err := c.Serve(h.handle); err != h.err {
				t.Errorf("Serve again: %v", err)
			}
			if c.rbuf != nil || c.rpool != nil {
				t.Error("a read buffer is held")
			}
		})
	}
	t.Run("protocol error on a pipe", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		c := New(a, Server, "", nil, Options{})
		defer c.Release()
		defer c.Close()
		a.SetDeadline(soon())
		go b.Write(cat(msg, bad))
		h := &handler{c: c, collect: true, keepOn: true}
		if err := c.Serve(h.handle); err == nil || err != h.err || h.msgs != 1 {
			t.Fatalf("Serve: %v; TryPiece: %v; %d messages", err, h.err, h.msgs)
		}
	})
}

// TestServePipe runs Serve on a connection without syscall.RawConn.
func TestServePipe(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	a.SetDeadline(soon())
	b.SetDeadline(soon())
	var pings []string
	c := New(a, Server, "", nil, Options{OnPing: func(p []byte) { pings = append(pings, string(p)) }})
	t.Cleanup(c.Release)
	if c.raw != nil {
		t.Fatal("a pipe with a RawConn")
	}
	h := &handler{c: c, echo: true}
	h.onPark = h.flush
	wait := startServe(t, c, h.handle)

	sizes := []int{0, 1, 125, 126, 5000, 70000}
	errc := make(chan error, 1)
	go func() {
		for i, n := range sizes {
			mt := TextMessage + i%2
			if _, err := b.Write(cat(frame(fin(PingMessage), true, []byte(strconv.Itoa(i))), frame(fin(mt), true, payload(mt, n, uint64(i))))); err != nil {
				errc <- err
				return
			}
		}
		_, err := b.Write(frame(fin(CloseMessage), true, closePayload(1000, "")))
		errc <- err
	}()
	for i, n := range sizes {
		m, err := readMessage(b, Server)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if mt := TextMessage + i%2; m.op != mt || !bytes.Equal(m.data, payload(mt, n, uint64(i))) {
			t.Fatalf("echo %d: %v, want op %d, %d bytes", i, m, mt, n)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("Serve: %v, want nil (the handler stopped it)", err)
	}
	if !websocket.IsCloseError(h.err, 1000) || h.msgs != len(sizes) || len(pings) != len(sizes) {
		t.Fatalf("TryPiece: %v after %d messages, %d pings", h.err, h.msgs, len(pings))
	}

	// EOF without a close frame.
	a2, b2 := net.Pipe()
	a2.SetDeadline(soon())
	c2 := New(a2, Client, "", nil, Options{})
	defer c2.Release()
	defer c2.Close()
	go func() { b2.Write(frame(fin(TextMessage), false, []byte("last"))); b2.Close() }()
	h2 := &handler{c: c2, collect: true}
	err := c2.Serve(h2.handle)
	if !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) || h2.msgs != 1 || string(h2.got[0]) != "last" {
		t.Fatalf("Serve: %v after %d messages", err, h2.msgs)
	}
}

func TestTryPieceNoIO(t *testing.T) {
	sc := &scriptConn{}
	c := New(sc, Server, "", nil, Options{})
	defer c.Release()
	if p, ok, err := c.TryPiece(); ok || err != nil || p.Data != nil {
		t.Fatalf("TryPiece on nothing: %+v, %v, %v", p, ok, err)
	}
	if sc.reads != 0 || c.rbuf != nil {
		t.Fatalf("TryPiece read (%d reads, buffer %d bytes)", sc.reads, len(c.rbuf))
	}
	sc.feed(cat(frame(fin(TextMessage), true, []byte("one")), frame(fin(TextMessage), true, []byte("two"))[:4]))
	if err := c.fill(); err != nil {
		t.Fatal(err)
	}
	if p, ok, err := c.TryPiece(); !ok || err != nil || string(p.Data) != "one" {
		t.Fatalf("TryPiece: %+v, %v, %v", p, ok, err)
	}
	for range 2 {
		if _, ok, err := c.TryPiece(); ok || err != nil {
			t.Fatalf("TryPiece on 4 bytes of a header: %v, %v", ok, err)
		}
	}
	if sc.reads != 1 {
		t.Fatalf("%d reads, want 1", sc.reads)
	}

	// On a socket, bytes waiting in the kernel are not read either.
	tc, peer := rawPair(t, Server)
	if _, err := peer.Write(frame(fin(TextMessage), true, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	var known bool // Unread can tell (Linux)
	tc.raw.Control(func(fd uintptr) { _, known = tcpinfo.ReceiveQueue(fd) })
	for deadline := time.Now().Add(testTimeout); known && !tc.Unread(); {
		if time.Now().After(deadline) {
			t.Fatal("the frame never reached the socket")
		}
		runtime.Gosched()
	}
	if _, ok, err := tc.TryPiece(); ok || err != nil || tc.Unread() != known {
		t.Fatalf("TryPiece with bytes in the socket: %v, %v (still unread: %v)", ok, err, tc.Unread())
	}
	if err := tc.fill(); err != nil {
		t.Fatal(err)
	}
	if p, ok, err := tc.TryPiece(); !ok || err != nil || string(p.Data) != "x" {
		t.Fatalf("TryPiece after fill: %+v, %v, %v", p, ok, err)
	}
}

func TestLastReadAtAndWait(t *testing.T) {
	var rs atomic.Int64
	c, peer := rawPair(t, Server, Options{ReadStamp: &rs})
	if c.LastReadAt() != 0 || c.LastWait() != 0 {
		t.Fatal("read times before any read")
	}
	type times struct {
		at, stamp int64
		wait      time.Duration
	}
	seen := make(chan times, 8)
	h := &handler{c: c, stopAt: 3}
	wait := startServe(t, c, onArrival(func() bool {
		stop := h.arrived()
		seen <- times{c.LastReadAt(), rs.Load(), c.LastWait()}
		return stop
	}))
	f := frame(fin(TextMessage), true, []byte("x"))
	before := Now()
	peer.Write(f)
	first := recv(t, seen, "handler call")
	if first.at < before || first.at > Now() || first.stamp != first.at || first.wait != 0 {
		t.Fatalf("first read: %+v (written at %d)", first, before)
	}
	for range 2 {
		written := Now()
		peer.Write(f)
		next := recv(t, seen, "handler call")
		if next.wait != time.Duration(next.at-first.at) || next.at < written || next.stamp != next.at {
			t.Fatalf("read after %+v: %+v (written at %d)", first, next, written)
		}
		if next.wait < time.Duration(written-first.at) {
			t.Fatalf("LastWait %v, less than the %v between the read and the next write", next.wait, time.Duration(written-first.at))
		}
		first = next
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

func TestFlushAt(t *testing.T) {
	var ws atomic.Int64
	c, peer := rawPair(t, Server, Options{WriteStamp: &ws, WriteTimeout: testTimeout})
	send := func(now int64) {
		t.Helper()
		c.BeginMessage(TextMessage)
		c.Write([]byte("x"))
		c.EndMessage()
		if err := c.FlushAt(now); err != nil {
			t.Fatal(err)
		}
		expectFrames(t, peer, Server, dataFrame(TextMessage, true, "x"))
	}
	send(42) // on a socket the time is only the stamp
	if got := ws.Load(); got != 42 {
		t.Fatalf("WriteStamp = %d, want 42", got)
	}
	now := Now() - 12345
	send(now)
	if got := ws.Load(); got != now {
		t.Fatalf("WriteStamp = %d, want %d", got, now)
	}
	// A socket's flush that did not wait sets no deadline (see
	// TestWriteDeadlines for other connections, where now is used).
	if d := c.wdeadline.Load(); d != 0 {
		t.Errorf("write deadline %d after a flush that did not wait, want none", d)
	}
	// Nothing buffered: no flush, no stamp.
	if err := c.FlushAt(7); err != nil || ws.Load() != now {
		t.Fatalf("empty FlushAt: %v, stamp %d", err, ws.Load())
	}
	// 0: the clock's time.
	before := Now()
	send(0)
	if got := ws.Load(); got < before || got > Now() {
		t.Fatalf("FlushAt(0) stamped %d", got)
	}
}

func TestWriteEnd(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			c, peer := rawPair(t, role)
			// frames writes one message, returning what the peer reads of it.
			frames := func(mt int, p []byte, split int, end bool) []rawFrame {
				t.Helper()
				errc := make(chan error, 1)
				go func() {
					c.BeginMessage(mt)
					if split > 0 {
						if err := c.Write(p[:split]); err != nil {
							errc <- err
							return
						}
					}
					var err error
					if end {
						err = c.WriteEnd(p[split:])
					} else if err = c.Write(p[split:]); err == nil {
						err = c.EndMessage()
					}
					if err == nil {
						err = c.Flush()
					}
					errc <- err
				}()
				var fs []rawFrame
				for {
					f, err := readFrame(peer)
					if err != nil {
						t.Fatal(err)
					}
					if f.masked != (role == Client) {
						t.Fatalf("masked = %v", f.masked)
					}
					f.masked = false
					fs = append(fs, f)
					if f.fin {
						break
					}
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				return fs
			}
			for i, n := range []int{0, 1, 125, 126, 5000, writeBufferSize - 4, 40000, 70000} {
				mt := TextMessage + i%2
				p := payload(mt, n, uint64(i))
				for _, split := range []int{0, n / 3} {
					want := frames(mt, p, split, false)
					got := frames(mt, p, split, true)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("%d bytes (split at %d): WriteEnd sent %v, Write+EndMessage %v", n, split, got, want)
					}
					var data []byte
					for j := range got {
						if !bytes.Equal(got[j].data, want[j].data) {
							t.Fatalf("%d bytes (split at %d): frame %d differs", n, split, j)
						}
						data = append(data, got[j].data...)
					}
					if !bytes.Equal(data, p) {
						t.Fatalf("%d bytes: the frames do not make the message", n)
					}
				}
			}
			if c.wbp != nil {
				t.Error("a write buffer is held after the flushes")
			}
			if err := c.WriteControl(CloseMessage, nil, soon()); err != nil {
				t.Fatal(err)
			}
			c.BeginMessage(TextMessage)
			if err := c.WriteEnd([]byte("late")); err != ErrCloseSent {
				t.Errorf("WriteEnd after the close frame: %v", err)
			}
		})
	}
}

// TestServeAllocs measures the allocations of the whole process over round
// trips of a 64-byte message through a Serve echo: the peer writes pre-built
// frames and reads into one buffer, so anything counted is the Conn's.
func TestServeAllocs(t *testing.T) {
	c, peer := rawPair(t, Server)
	h := &handler{c: c, echo: true}
	h.onPark = h.flush
	wait := startServe(t, c, h.handle)
	f := frame(fin(BinaryMessage), true, payload(BinaryMessage, 64, 1))
	sink := make([]byte, 2+64)
	var failed error
	roundTrips := func(n int) {
		for range n {
			if _, err := peer.Write(f); err != nil {
				failed = err
				return
			}
			if _, err := io.ReadFull(peer, sink); err != nil {
				failed = err
				return
			}
		}
	}
	const n = 2000
	roundTrips(200) // warm the pools
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	roundTrips(n)
	runtime.ReadMemStats(&after)
	if failed != nil {
		t.Fatal(failed)
	}
	if _, err := peer.Write(frame(fin(CloseMessage), true, nil)); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if h.msgs != 200+n || !websocket.IsCloseError(h.err, websocket.CloseNoStatusReceived) {
		t.Fatalf("%d messages echoed, handler error %v", h.msgs, h.err)
	}
	mallocs := after.Mallocs - before.Mallocs
	per := float64(mallocs) / n
	gcs := after.NumGC - before.NumGC
	if raceEnabled() {
		t.Skipf("%d allocations in %d round trips (%.3f each); not checked with the race detector", mallocs, n, per)
	}
	t.Logf("%d allocations in %d round trips (%.3f each), %d GC cycles", mallocs, n, per, gcs)
	// A few are tolerated: a GC cycle empties the pools, which then
	// allocate a buffer again (two allocations each). One per message is
	// not.
	if per >= 0.01 {
		t.Fatalf("%.3f allocations per echoed message, want 0", per)
	}
}

// ---- socket writes (writeAll) ----------------------------------------------

// TestSocketWriteWaitsForRoom: a flush larger than the socket can take at
// once (sendto says EAGAIN part-way) waits for the peer to read and then
// sends the rest, in order. The peer starts reading only once the writer
// has found the socket full, so the wait is certain to happen.
func TestSocketWriteWaitsForRoom(t *testing.T) {
	c, peer := rawPair(t, Server)
	// Small enough to fill, not so small that the window drops below a
	// segment (then the kernel's persist timer paces the transfer).
	if err := peer.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	if err := tcpOf(c).SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	const msgs = 64                                     // 2 MB: more than the two buffers hold
	p := bytes.Repeat([]byte("0123456789abcdef"), 2000) // 32,000 bytes a message
	done := make(chan error, 1)
	go func() {
		for range msgs {
			if err := c.WriteMessage(BinaryMessage, p); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// Wait (bounded) for the writer to meet a full socket.
	for deadline := time.Now().Add(testTimeout); counted(c).waits.Load() == 0; {
		select {
		case err := <-done:
			t.Fatalf("the writer finished (%v) without finding the socket full", err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never found the socket full")
		}
	}
	r := bufio.NewReader(peer)
	for range msgs {
		expectFrames(t, r, Server, rawFrame{fin: true, op: BinaryMessage, data: p})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSocketWriteErrors: the raw write path's failures read like
// net.Conn.Write's: a *net.OpError "write" wrapping the deadline or the
// system call's error, and they are sticky.
func TestSocketWriteErrors(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		c, _ := rawPair(t, Server, Options{WriteTimeout: 200 * time.Millisecond}) // the peer never reads
		p := make([]byte, 32000)
		start := time.Now()
		var err error
		for i := 0; err == nil && time.Since(start) < testTimeout; i++ {
			err = c.WriteMessage(BinaryMessage, p)
		}
		var oe *net.OpError
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "write" {
			t.Fatalf("err %v (%T), want a write timeout", err, err)
		}
		if err2 := c.WriteMessage(BinaryMessage, p[:1]); err2 != err {
			t.Errorf("not sticky: then %v", err2)
		}
	})
	t.Run("reset", func(t *testing.T) {
		c, peer := rawPair(t, Server)
		peer.SetLinger(0)
		peer.Close() // RST
		var err error
		for i := 0; err == nil && i < 100; i++ {
			err = c.WriteMessage(BinaryMessage, []byte("x"))
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			t.Fatalf("err %v (%T), want write: connection reset or broken pipe", err, err)
		}
		if got := err.Error(); !strings.HasPrefix(got, "write tcp 127.0.0.1:") {
			t.Errorf("error %q does not read like net.Conn.Write's", got)
		}
	})
}

// ---- masking ---------------------------------------------------------------

// TestMaskCopy compares maskCopy and maskBytes with the byte-by-byte
// definition (RFC 6455 §5.3) for every length up to 100 and every key
// position, in place and into another buffer.
func TestMaskCopy(t *testing.T) {
	key := [4]byte{0x12, 0x9a, 0xf0, 0x3c}
	for n := range 101 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i*7 + 1)
		}
		for pos := range 4 {
			want := make([]byte, n)
			for i := range src {
				want[i] = src[i] ^ key[(pos+i)&3]
			}
			dst := make([]byte, n+3)
			if end := maskCopy(key, pos, dst, src); end != (pos+n)&3 || !bytes.Equal(dst[:n], want) || !bytes.Equal(dst[n:], []byte{0, 0, 0}) {
				t.Fatalf("maskCopy n=%d pos=%d: %x (end %d), want %x", n, pos, dst, end, want)
			}
			in := bytes.Clone(src)
			if end := maskBytes(key, pos, in); end != (pos+n)&3 || !bytes.Equal(in, want) {
				t.Fatalf("maskBytes n=%d pos=%d: %x, want %x", n, pos, in, want)
			}
		}
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	key := [4]byte{1, 2, 3, 4}
	for _, n := range []int{64, 1024, 16 << 10} {
		src, dst := make([]byte, n), make([]byte, n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				maskCopy(key, 1, dst, src)
			}
		})
	}
}

// KernelSilence counts from the last bytes the kernel received, read or
// not: a deadline check can then tell a silent peer from a late reader.
func TestKernelSilence(t *testing.T) {
	tc, peer := rawPair(t, Server)
	if _, ok := tc.KernelSilence(); !ok {
		if runtime.GOOS == "linux" {
			t.Fatal("KernelSilence unknown on a Linux TCP socket")
		}
		t.Skip("TCP_INFO is Linux only")
	}
	if _, err := peer.Write(frame(fin(TextMessage), true, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testTimeout); !tc.Unread(); {
		if time.Now().After(deadline) {
			t.Fatal("the frame never reached the socket")
		}
		runtime.Gosched()
	}
	arrived := time.Now()
	if d, _ := tc.KernelSilence(); d > 100*time.Millisecond {
		t.Fatalf("KernelSilence %v just after the bytes arrived", d)
	}
	// Unread bytes age like read ones: wait 300 ms without reading.
	time.Sleep(300 * time.Millisecond)
	d, _ := tc.KernelSilence()
	if waited := time.Since(arrived); d < waited-50*time.Millisecond || d > waited+50*time.Millisecond {
		t.Fatalf("KernelSilence %v, %v after the bytes arrived (still unread: %v)", d, waited, tc.Unread())
	}
	var plain Conn // not a socket
	if _, ok := plain.KernelSilence(); ok {
		t.Fatal("KernelSilence known without a socket")
	}
}
