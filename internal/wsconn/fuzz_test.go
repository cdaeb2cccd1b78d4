package wsconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The fuzz targets of the read path feed arbitrary bytes to a Conn and
// compare what it returns with refParse, a reference parser written from
// RFC 6455 §5 directly: whole input at once, no buffers, no state carried
// between calls. The write target round-trips scripted writes through a
// Conn of each role.

// fuzzRunLimit bounds one run: a reader that neither returns nor fails
// once its input is exhausted is a hang, which the fuzzer would otherwise
// not report.
const fuzzRunLimit = 10 * time.Second

// watchdog panics (from its own goroutine, so the fuzzer records the
// input as a crasher) unless stopped within fuzzRunLimit.
func watchdog(what string) *time.Timer {
	return time.AfterFunc(fuzzRunLimit, func() { panic("wsconn fuzz: " + what + " did not return within " + fuzzRunLimit.String()) })
}

// fuzzChunks cuts data according to cuts, as inspect's: each byte is the
// length of the next chunk (modulo 64, so empty chunks occur), the rest is
// the last chunk. A cut of 255 makes a long chunk (4097 bytes), so that
// buffers of every size class fill up.
func fuzzChunks(data, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := int(c % 64)
		if c == 255 {
			n = 4097
		}
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return append(out, data)
}

// chunkConn is an in-memory net.Conn (not a syscall.Conn, so Conn takes
// the readOnce path): reads return the chunks in order, at most one chunk per
// read, then io.EOF; writes are collected.
type chunkConn struct {
	chunks   [][]byte
	eofAlong bool // the last chunk comes with io.EOF (n > 0, err != nil)
	eofReads int
	w        bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		c.eofReads++
		if c.eofReads > 1 {
			// Read errors are final: nothing reads again after io.EOF.
			panic("wsconn fuzz: read again after io.EOF")
		}
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.eofAlong && len(c.chunks) == 1 && len(c.chunks[0]) == 0 {
		c.chunks = nil
		c.eofReads++
		return n, io.EOF
	}
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c *chunkConn) Close() error                       { return nil }
func (c *chunkConn) LocalAddr() net.Addr                { return fuzzAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr               { return fuzzAddr{} }
func (c *chunkConn) SetDeadline(t time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(t time.Time) error { return nil }

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "fuzz" }
func (fuzzAddr) String() string  { return "fuzz" }

// socketPair returns both ends of a Unix socket pair: a syscall.Conn, so
// Conn takes the raw read and write paths.
func socketPair(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// wsEvent is what a reader saw, or the reference parser expects: a data
// message that ended ('m') or was cut off ('p', last), a ping ('i') or a
// pong ('o'). size is the first frame's payload length when that frame
// was final, else -1 (Piece.Size of the first piece).
type wsEvent struct {
	kind byte
	typ  int
	data []byte
	size int64
}

func (e wsEvent) String() string {
	d := e.data
	if len(d) > 48 {
		return fmt.Sprintf("%c%d[%d %q...]s%d", e.kind, e.typ, len(d), d[:48], e.size)
	}
	return fmt.Sprintf("%c%d%qs%d", e.kind, e.typ, d, e.size)
}

// Ends of a read.
const (
	endEOF      = "eof"      // the input ended (1006)
	endClose    = "close"    // a valid close frame
	endProtocol = "protocol" // a violation of RFC 6455
)

type wsResult struct {
	events []wsEvent
	end    string
	code   int    // endClose
	text   string // endClose
}

func (r wsResult) String() string {
	var b strings.Builder
	for _, e := range r.events {
		b.WriteString(e.String())
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "| %s", r.end)
	if r.end == endClose {
		fmt.Fprintf(&b, " %d %q", r.code, r.text)
	}
	return b.String()
}

// refCloseCodes are the close codes a peer may send (RFC 6455 §7.4.1 and
// the IANA registry): 1004 is reserved, 1005, 1006 and 1015 must never be
// sent, 1016-2999 are reserved for the protocol, 3000-4999 for libraries
// and applications.
func refCloseCode(code int) bool {
	for _, ok := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} {
		if code == ok {
			return true
		}
	}
	return 3000 <= code && code <= 4999
}

// refParse is the reference parser: what a reader of the given role must
// return for input. Checks are made as soon as the bytes they need are
// there: reserved bits with the first two bytes, the rest of a header once
// it is whole, a close frame's payload once it is whole; a data frame's
// payload is delivered as far as it goes.
func refParse(in []byte, role Role) wsResult {
	var r wsResult
	open := false // a data message is open
	var msg wsEvent
	done := func(end string) wsResult {
		if open {
			r.events = append(r.events, msg)
		}
		r.end = end
		return r
	}
	for {
		if len(in) < 2 {
			break
		}
		fin, rsv, op := in[0]>>7 == 1, (in[0]>>4)&7, in[0]&15
		masked, n7 := in[1]>>7 == 1, uint64(in[1]&127)
		if rsv != 0 {
			return done(endProtocol)
		}
		hl := 2
		if n7 == 126 {
			hl = 4
		} else if n7 == 127 {
			hl = 10
		}
		if masked {
			hl += 4
		}
		if len(in) < hl {
			break
		}
		n := n7
		if n7 == 126 {
			n = uint64(in[2])<<8 | uint64(in[3])
		} else if n7 == 127 {
			n = 0
			for _, b := range in[2:10] {
				n = n<<8 | uint64(b)
			}
			if n >= 1<<63 {
				return done(endProtocol)
			}
		}
		if masked != (role == Server) {
			return done(endProtocol)
		}
		var key []byte
		if masked {
			key = in[hl-4 : hl]
		}
		in = in[hl:]
		avail := in
		if uint64(len(avail)) > n {
			avail = avail[:n]
		}
		payload := make([]byte, len(avail))
		for i := range avail {
			payload[i] = avail[i]
			if masked {
				payload[i] ^= key[i%4]
			}
		}
		switch op {
		case 8, 9, 10:
			if !fin || n > 125 {
				return done(endProtocol)
			}
			if uint64(len(payload)) < n {
				in = nil
				continue
			}
			in = in[n:]
			switch op {
			case 9:
				r.events = append(r.events, wsEvent{kind: 'i', data: payload, size: -1})
			case 10:
				r.events = append(r.events, wsEvent{kind: 'o', data: payload, size: -1})
			case 8:
				switch {
				case len(payload) == 0:
					r.code = 1005
				case len(payload) == 1 || !refCloseCode(int(payload[0])<<8|int(payload[1])) || !utf8.Valid(payload[2:]):
					return done(endProtocol)
				default:
					r.code, r.text = int(payload[0])<<8|int(payload[1]), string(payload[2:])
				}
				return done(endClose)
			}
		case 0, 1, 2:
			if (op == 0) == !open {
				return done(endProtocol)
			}
			if op != 0 {
				open = true
				msg = wsEvent{kind: 'p', typ: int(op), data: []byte{}, size: -1}
				if fin {
					msg.size = int64(n)
				}
			}
			msg.data = append(msg.data, payload...)
			if uint64(len(payload)) < n {
				in = nil
				continue
			}
			in = in[n:]
			if fin {
				msg.kind = 'm'
				r.events = append(r.events, msg)
				open = false
			}
		default:
			return done(endProtocol)
		}
	}
	return done(endEOF)
}

// readMode selects how a fuzzed read is made.
const (
	modeServe      = 1 << iota // Serve with a TryPiece loop, not nextPiece
	modeEOFAlong               // the last chunk comes with io.EOF
	modeSocket                 // through a Unix socket pair (the raw path)
	modeServeFirst             // with modeServe: Serve before TryPiece took the bytes buffered with the handshake
)

// recorder records what a fuzzed read's control-frame hooks see.
type recorder struct {
	t      *testing.T
	r      wsResult
	closed bool // OnClose was called
}

// options are the hooks of the Conn that rec records.
func (rec *recorder) options() Options {
	return Options{
		OnPing: func(p []byte) {
			rec.r.events = append(rec.r.events, wsEvent{kind: 'i', data: bytes.Clone(p), size: -1})
		},
		OnPong: func(p []byte) {
			rec.r.events = append(rec.r.events, wsEvent{kind: 'o', data: bytes.Clone(p), size: -1})
		},
		OnClose: func(code int, text string) {
			if rec.closed {
				rec.t.Fatal("OnClose called twice")
			}
			rec.closed = true
			rec.r.code, rec.r.text = code, text
		},
	}
}

// readAll reads c, made with rec's options, until its final error,
// recording what it returns and checking, piece by piece, what can be
// checked locally.
func readAll(t *testing.T, c *Conn, rec *recorder, mode uint8, limit int) wsResult {
	t.Helper()
	r := &rec.r
	var cur *wsEvent // the message being read
	pieces := 0
	piece := func(p Piece) {
		t.Helper()
		if pieces++; pieces > limit {
			t.Fatalf("more than %d pieces", limit)
		}
		if len(p.Data) > largeReadSize {
			t.Fatalf("piece of %d bytes", len(p.Data))
		}
		if p.Type != TextMessage && p.Type != BinaryMessage {
			t.Fatalf("piece of type %d", p.Type)
		}
		if p.First() != (cur == nil) {
			t.Fatalf("piece First() = %v in a message of %d bytes so far", p.First(), curLen(cur))
		}
		if cur == nil {
			cur = &wsEvent{kind: 'p', typ: p.Type, data: []byte{}, size: p.Size}
		} else if p.Type != cur.typ || p.Size != -1 {
			t.Fatalf("piece type %d size %d in a message of type %d", p.Type, p.Size, cur.typ)
		}
		cur.data = append(cur.data, p.Data...)
		if p.Last() {
			cur.kind = 'm'
			r.events = append(r.events, *cur)
			cur = nil
		}
	}
	checkBuf := func() {
		t.Helper()
		switch len(c.rbuf) {
		case 0, smallReadSize, midReadSize, largeReadSize:
		default:
			t.Fatalf("read buffer of %d bytes", len(c.rbuf))
		}
		if c.rpos < 0 || c.rpos > c.rend || c.rend > len(c.rbuf) {
			t.Fatalf("read buffer positions %d %d of %d", c.rpos, c.rend, len(c.rbuf))
		}
	}
	var err error
	if mode&modeServe != 0 {
		handle := func(ev ServeEvent) bool {
			if ev == Parking {
				return false
			}
			checkBuf()
			for {
				p, ok, err := c.TryPiece()
				checkBuf()
				if err != nil || !ok {
					return false
				}
				piece(p)
			}
		}
		if mode&modeServeFirst == 0 {
			// As the proxy does: what came with the handshake first.
			handle(Arrived)
		}
		err = c.Serve(handle)
		if err == nil {
			t.Fatal("Serve returned nil: its handler never stops it")
		}
	} else {
		for {
			var p Piece
			p, err = c.nextPiece()
			checkBuf()
			if err != nil {
				if len(p.Data) != 0 || p.Type != 0 {
					t.Fatalf("piece %+v along with error %v", p, err)
				}
				break
			}
			piece(p)
		}
	}
	if cur != nil {
		r.events = append(r.events, *cur)
	}
	// Errors are final.
	if p, err2 := c.nextPiece(); err2 != err || len(p.Data) != 0 {
		t.Fatalf("nextPiece after %v: %v, %d bytes", err, err2, len(p.Data))
	}
	if _, ok, err2 := c.TryPiece(); err2 != err || ok {
		t.Fatalf("TryPiece after %v: %v %v", err, ok, err2)
	}
	if c.rbuf != nil {
		t.Fatalf("read buffer (%d bytes) kept after the final error", len(c.rbuf))
	}
	var pe *ProtocolError
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &pe):
		r.end = endProtocol
		if rec.closed {
			t.Fatalf("OnClose called, then %v", err)
		}
	case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure && !rec.closed:
		r.end = endEOF
	case errors.As(err, &ce) && rec.closed:
		r.end = endClose
		if ce.Code != r.code || ce.Text != r.text {
			t.Fatalf("OnClose(%d, %q) but error %v", r.code, r.text, err)
		}
	default:
		t.Fatalf("unexpected final error %T %v (OnClose called: %v)", err, err, rec.closed)
	}
	return *r
}

func curLen(e *wsEvent) int {
	if e == nil {
		return 0
	}
	return len(e.data)
}

// sameResult compares a reader's result with the reference's; an empty
// cut-off message counts as none (a reader returns no piece for a frame
// whose payload has not begun to arrive).
func sameResult(got, want wsResult) bool {
	trim := func(r wsResult) wsResult {
		if n := len(r.events); n > 0 && r.events[n-1].kind == 'p' && len(r.events[n-1].data) == 0 {
			r.events = r.events[:n-1]
		}
		return r
	}
	got, want = trim(got), trim(want)
	if len(got.events) != len(want.events) || got.end != want.end {
		return false
	}
	for i, e := range got.events {
		w := want.events[i]
		if e.kind != w.kind || e.typ != w.typ || e.size != w.size || !bytes.Equal(e.data, w.data) {
			return false
		}
	}
	return got.end != endClose || (got.code == want.code && got.text == want.text)
}

// fuzzRead reads data as a Conn of the given role would, with the first
// pre bytes handed over as buffered past the handshake and the rest in
// chunks cut by cuts, and compares with refParse.
func fuzzRead(t *testing.T, role Role, data, cuts []byte, pre uint16, mode uint8) {
	if len(cuts) > 4096 {
		cuts = cuts[:4096]
	}
	pre = uint16(min(int(pre), len(data)))
	buffered, rest := data[:pre], data[pre:]
	want := refParse(data, role)
	switch {
	case len(buffered) >= largeReadSize:
		// New refuses what would fill its largest buffer.
		want = wsResult{end: endProtocol}
	case mode&(modeServe|modeServeFirst) == modeServe|modeServeFirst && len(rest) == 0:
		// Serve calls its handler after a read that returned bytes:
		// what was buffered with the handshake is not looked at when
		// the first read finds the end of the input.
		want = wsResult{end: endEOF}
	}
	wd := watchdog("read")
	defer wd.Stop()
	var c *Conn
	rec := &recorder{t: t}
	if mode&modeSocket != 0 {
		a, b := socketPair(t)
		defer a.Close()
		defer b.Close()
		done := make(chan error, 1)
		go func() {
			var err error
			for _, ch := range fuzzChunks(rest, cuts) {
				if len(ch) > 0 && err == nil {
					_, err = a.Write(ch)
				}
			}
			if cerr := a.CloseWrite(); err == nil {
				err = cerr
			}
			done <- err
		}()
		defer func() {
			b.Close() // a writer blocked on a reader that failed
			<-done
		}()
		c = New(b, role, "", buffered, rec.options())
		if c.raw == nil {
			t.Fatal("a Unix socket did not give the raw path")
		}
	} else {
		nc := &chunkConn{chunks: fuzzChunks(rest, cuts), eofAlong: mode&modeEOFAlong != 0}
		c = New(nc, role, "", buffered, rec.options())
	}
	got := readAll(t, c, rec, mode, len(data)+2)
	c.Release()
	if !sameResult(got, want) {
		t.Fatalf("role %d mode %d pre %d input %x\ngot  %v\nwant %v", role, mode, pre, data, got, want)
	}
}

// seedFrame builds one frame for the seeds: b0 is FIN, RSV and opcode; a
// masked frame gets a fixed non-zero key.
func seedFrame(b0 byte, payload []byte, masked bool) []byte {
	var b1 byte
	if masked {
		b1 = maskBit
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, b1|byte(n))
	case n <= 0xffff:
		out = append(out, b1|126, byte(n>>8), byte(n))
	default:
		out = append(out, b1|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := []byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

func seedCat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// readSeeds are streams from a peer of the given masking: valid frames of
// each kind and each violation of RFC 6455 a reader must refuse.
func readSeeds(m bool) map[string][]byte {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4100) // 65600 bytes: 64-bit length
	mid := big[:300]                                      // 16-bit length
	return map[string][]byte{
		"text":             seedFrame(0x81, []byte("hello"), m),
		"binary":           seedFrame(0x82, []byte{0, 1, 2, 0xff}, m),
		"empty":            seedFrame(0x81, nil, m),
		"mid":              seedFrame(0x82, mid, m),
		"big":              seedFrame(0x82, big, m),
		"ping-pong":        seedCat(seedFrame(0x89, []byte("ping"), m), seedFrame(0x8a, nil, m), seedFrame(0x81, []byte("x"), m)),
		"close-empty":      seedFrame(0x88, nil, m),
		"close-normal":     seedFrame(0x88, []byte("\x03\xe8bye"), m),
		"close-4999":       seedFrame(0x88, []byte("\x13\x87"), m),
		"close-after-msgs": seedCat(seedFrame(0x82, []byte("a"), m), seedFrame(0x88, []byte("\x03\xe9going away"), m), seedFrame(0x81, []byte("late"), m)),
		"fragmented":       seedCat(seedFrame(0x01, []byte("hel"), m), seedFrame(0x89, []byte("p"), m), seedFrame(0x00, nil, m), seedFrame(0x80, []byte("lo"), m)),
		"fragmented-big":   seedCat(seedFrame(0x02, big[:33000], m), seedFrame(0x00, mid, m), seedFrame(0x80, big[:5000], m)),
		"truncated":        seedFrame(0x82, big, m)[:1000],
		"truncated-header": seedFrame(0x82, big, m)[:5],
		"truncated-ping":   seedFrame(0x89, []byte("ping"), m)[:4],
		"rsv1":             seedFrame(0xc1, []byte("x"), m),
		"rsv3":             seedCat(seedFrame(0x81, []byte("ok"), m), seedFrame(0x92, []byte("x"), m)),
		"rsv-1-byte":       {0xf1},
		"opcode-3":         seedFrame(0x83, []byte("x"), m),
		"opcode-11":        seedFrame(0x8b, nil, m),
		"ping-fragmented":  seedFrame(0x09, []byte("p"), m),
		"ping-126":         seedFrame(0x89, big[:126], m),
		"close-fragmented": seedFrame(0x08, nil, m),
		"close-1-byte":     seedFrame(0x88, []byte{3}, m),
		"close-1005":       seedFrame(0x88, []byte("\x03\xed"), m),
		"close-1006":       seedFrame(0x88, []byte("\x03\xee"), m),
		"close-1015":       seedFrame(0x88, []byte("\x03\xf7"), m),
		"close-1004":       seedFrame(0x88, []byte("\x03\xec"), m),
		"close-999":        seedFrame(0x88, []byte("\x03\xe7"), m),
		"close-2999":       seedFrame(0x88, []byte("\x0b\xb7"), m),
		"close-5000":       seedFrame(0x88, []byte("\x13\x88"), m),
		"close-bad-utf8":   seedFrame(0x88, []byte("\x03\xe8\xff\xfe"), m),
		"continuation":     seedFrame(0x80, []byte("x"), m),
		"new-before-end":   seedCat(seedFrame(0x01, []byte("a"), m), seedFrame(0x82, []byte("b"), m)),
		"len-msb":          {0x82, 0x7f | b2m(m), 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
		"len-2^62":         {0x82, 0x7f | b2m(m), 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5},
		"wrong-masking":    seedFrame(0x81, []byte("x"), !m),
	}
}

func b2m(masked bool) byte {
	if masked {
		return maskBit
	}
	return 0
}

func addReadSeeds(f *testing.F, role Role) {
	seeds := readSeeds(role == Server)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		s := seeds[name]
		f.Add(s, []byte{}, uint16(0), uint8(0))
		f.Add(s, []byte{1, 2, 3, 5, 7, 11, 255}, uint16(3), uint8(modeServe))
		f.Add(s, []byte{2, 1, 1, 1}, uint16(0), uint8(modeEOFAlong))
	}
	f.Add(seeds["fragmented"], []byte{1, 1, 1}, uint16(0), uint8(modeSocket))
	f.Add(seeds["close-after-msgs"], []byte{}, uint16(2), uint8(modeSocket|modeServe))
	f.Add(seeds["fragmented-big"], []byte{255, 255}, uint16(100), uint8(modeSocket))
	f.Add(seeds["rsv3"], []byte{}, uint16(0), uint8(modeSocket))
	f.Add(seeds["fragmented"], []byte{1}, uint16(7), uint8(modeServe|modeServeFirst))
	f.Add(seeds["fragmented-big"], []byte{1, 255}, uint16(33000), uint8(modeServe|modeServeFirst|modeSocket))
}

// FuzzReadServer reads arbitrary bytes as a server (from a client, whose
// frames must be masked). Properties: no panic, no hang, no read after
// io.EOF, the read buffer stays one of its size classes (at most 32 KiB)
// and no piece exceeds it, errors are final and nothing is returned after
// them, pieces are well formed (First, Last, Size, Type), and messages,
// control frames and the final error agree with refParse.
func FuzzReadServer(f *testing.F) {
	addReadSeeds(f, Server)
	f.Fuzz(func(t *testing.T, data, cuts []byte, pre uint16, mode uint8) {
		fuzzRead(t, Server, data, cuts, pre, mode)
	})
}

// FuzzReadClient is FuzzReadServer for a client (reading a server's
// frames, which must not be masked).
func FuzzReadClient(f *testing.F) {
	addReadSeeds(f, Client)
	f.Fuzz(func(t *testing.T, data, cuts []byte, pre uint16, mode uint8) {
		fuzzRead(t, Client, data, cuts, pre, mode)
	})
}

// fuzzScript decodes a script of writes from fuzz input; next returns 0
// once the input is exhausted.
type fuzzScript struct{ b []byte }

func (s *fuzzScript) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

// payload returns a payload of up to max bytes: short ones from the script,
// long ones (the byte's high bit) generated, up to 127 × 521 bytes so that
// messages span several 32 KiB write buffers.
func (s *fuzzScript) payload(max int) []byte {
	l := s.next()
	if l&0x80 != 0 && max > 125 {
		n := int(l&0x7f) * 521
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*7 + int(l))
		}
		return p
	}
	n := min(int(l&0x7f), max, len(s.b))
	p := bytes.Clone(s.b[:n])
	s.b = s.b[n:]
	return p
}

var fuzzCloseCodes = []int{1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999}

// runScript writes with c as the script says and returns what a reader
// must see: every message ended and every control frame, in the order
// written, and how the stream ends; partial is the payload of a message a
// close frame cut off (a reader may have received a prefix of it).
func runScript(c *Conn, script []byte) (want wsResult, partial *wsEvent, err error) {
	s := &fuzzScript{b: script}
	var cur *wsEvent
	check := func(what string, e error) {
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %w", what, e)
		}
	}
	msgType := func() int {
		if s.next()&1 == 0 {
			return TextMessage
		}
		return BinaryMessage
	}
	for ops := 0; len(s.b) > 0 && ops < 48 && err == nil; ops++ {
		switch o := s.next() % 9; o {
		case 0:
			if cur == nil {
				cur = &wsEvent{kind: 'm', typ: msgType(), data: []byte{}}
				c.BeginMessage(cur.typ)
			}
		case 1:
			if cur != nil {
				p := s.payload(1 << 20)
				cur.data = append(cur.data, p...)
				check("Write", c.Write(p))
			}
		case 2:
			if cur != nil {
				check("EndMessage", c.EndMessage())
				want.events = append(want.events, *cur)
				cur = nil
			}
		case 3, 4:
			op, kind := PingMessage, byte('i')
			if o == 4 {
				op, kind = PongMessage, 'o'
			}
			p := s.payload(maxControlPayload)
			check("WriteControl", c.WriteControl(op, p, time.Time{}))
			want.events = append(want.events, wsEvent{kind: kind, data: p, size: -1})
		case 5:
			check("Flush", c.Flush())
		case 6:
			if cur == nil {
				mt, p := msgType(), s.payload(1<<20)
				check("WriteMessage", c.WriteMessage(mt, p))
				want.events = append(want.events, wsEvent{kind: 'm', typ: mt, data: p})
			}
		case 7:
			if cur != nil {
				p := s.payload(1 << 20)
				cur.data = append(cur.data, p...)
				check("WriteEnd", c.WriteEnd(p))
				want.events = append(want.events, *cur)
				cur = nil
			}
		case 8:
			var p []byte
			if k := s.next(); k != 0 {
				code := fuzzCloseCodes[int(k)%len(fuzzCloseCodes)]
				reason := strings.ToValidUTF8(string(s.payload(maxControlPayload-2)), "?")
				if len(reason) > maxControlPayload-2 {
					reason = reason[:maxControlPayload-2]
					for !utf8.ValidString(reason) {
						reason = reason[:len(reason)-1]
					}
				}
				p = binary.BigEndian.AppendUint16(nil, uint16(code))
				p = append(p, reason...)
				want.code, want.text = code, reason
			} else {
				want.code = 1005
			}
			check("WriteControl(close)", c.WriteControl(CloseMessage, p, time.Time{}))
			want.end = endClose
			// Nothing follows a close frame.
			if e := c.WriteControl(PingMessage, nil, time.Time{}); e != ErrCloseSent && err == nil {
				err = fmt.Errorf("ping after close: %v", e)
			}
			if cur == nil {
				c.BeginMessage(BinaryMessage)
			}
			if e := c.WriteEnd([]byte("x")); e != ErrCloseSent && err == nil {
				err = fmt.Errorf("data after close: %v", e)
			}
			check("Flush after close", c.Flush())
			return want, cur, err
		}
	}
	if cur != nil {
		check("EndMessage", c.EndMessage())
		want.events = append(want.events, *cur)
	}
	check("Flush", c.Flush())
	want.end = endEOF
	return want, nil, err
}

// FuzzWriteRead writes a script of messages (payloads in several Writes,
// short and spanning several write buffers) and control frames with a
// Conn of one role, and reads them back with a Conn of the other role:
// the reader must see exactly what was written, in order. mode: bit 0 the
// writer is a client; bit 1 through a Unix socket pair (the raw write and
// read paths, writer and reader concurrent), else an in-memory connection
// read back in chunks cut by cuts; bit 2 the reader uses Serve.
func FuzzWriteRead(f *testing.F) {
	f.Add([]byte{0, 0, 1, 5, 'h', 'e', 'l', 'l', 'o', 2}, []byte{}, uint8(0))
	f.Add([]byte{0, 1, 1, 3, 'a', 'b', 'c', 3, 2, 'p', 'q', 1, 0x85, 4, 0, 7, 2, 'e', 'n'}, []byte{1, 2, 3}, uint8(1))
	f.Add([]byte{6, 0, 0xa0, 6, 1, 4, 'x', 'y', 'z', 'w', 3, 0, 5, 8, 1, 3, 'b', 'y', 'e'}, []byte{255, 255, 7}, uint8(2))
	f.Add([]byte{0, 1, 1, 0xff, 3, 1, '!', 1, 0xc0, 8, 2, 0}, []byte{}, uint8(3))
	f.Add([]byte{6, 1, 0, 6, 0, 0x81, 4, 125, 8, 0}, []byte{9, 9, 9}, uint8(5))
	f.Add([]byte{0, 0, 7, 0xfe, 5, 0, 1, 1, 2}, []byte{}, uint8(7))
	f.Fuzz(func(t *testing.T, script, cuts []byte, mode uint8) {
		if len(cuts) > 4096 {
			cuts = cuts[:4096]
		}
		wrole, rrole := Server, Client
		if mode&1 != 0 {
			wrole, rrole = Client, Server
		}
		rmode := uint8(0)
		if mode&4 != 0 {
			rmode = modeServe
		}
		wd := watchdog("write and read")
		defer wd.Stop()
		var got, want wsResult
		var partial *wsEvent
		if mode&2 != 0 {
			a, b := socketPair(t)
			defer a.Close()
			defer b.Close()
			type result struct {
				want    wsResult
				partial *wsEvent
				err     error
			}
			done := make(chan result, 1)
			go func() {
				w := New(a, wrole, "", nil, Options{})
				var r result
				r.want, r.partial, r.err = runScript(w, script)
				w.Release()
				if err := a.CloseWrite(); r.err == nil {
					r.err = err
				}
				done <- r
			}()
			var res result
			func() {
				defer func() {
					b.Close() // a writer blocked on a reader that failed
					res = <-done
				}()
				rec := &recorder{t: t}
				r := New(b, rrole, "", nil, rec.options())
				got = readAll(t, r, rec, rmode, 1<<30)
				r.Release()
			}()
			if res.err != nil {
				t.Fatal(res.err)
			}
			want, partial = res.want, res.partial
		} else {
			nc := &chunkConn{}
			w := New(nc, wrole, "", nil, Options{})
			var err error
			want, partial, err = runScript(w, script)
			if err != nil {
				t.Fatal(err)
			}
			w.Release()
			out := nc.w.Bytes()
			// The bytes written are valid for the reference parser too.
			if ref := refParse(out, rrole); !sameWritten(ref, want, partial) {
				t.Fatalf("reference parser on the written bytes:\ngot  %v\nwant %v", ref, want)
			}
			rec := &recorder{t: t}
			r := New(&chunkConn{chunks: fuzzChunks(out, cuts)}, rrole, "", nil, rec.options())
			got = readAll(t, r, rec, rmode, len(out)+2)
			r.Release()
		}
		if !sameWritten(got, want, partial) {
			t.Fatalf("mode %d script %x\ngot  %v\nwant %v (cut off: %v)", mode, script, got, want, partial)
		}
	})
}

// sameWritten compares what a reader got with what was written: Size is
// either -1 (the message came in fragments) or the message's length; a
// message cut off by a close frame may have arrived in part.
func sameWritten(got, want wsResult, partial *wsEvent) bool {
	if n := len(got.events); n > 0 && got.events[n-1].kind == 'p' {
		last := got.events[n-1]
		if partial == nil || last.typ != partial.typ || !bytes.HasPrefix(partial.data, last.data) || last.size != -1 {
			return false
		}
		got.events = got.events[:n-1]
	}
	if len(got.events) != len(want.events) || got.end != want.end {
		return false
	}
	for i, e := range got.events {
		w := want.events[i]
		if e.kind != w.kind || e.typ != w.typ || !bytes.Equal(e.data, w.data) {
			return false
		}
		if e.kind == 'm' && e.size != -1 && e.size != int64(len(e.data)) {
			return false
		}
	}
	return got.end != endClose || (got.code == want.code && got.text == want.text)
}
