package wsconn

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Read buffers, by size class (see wantClass).
var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallReadSize); return &b }}
	midPool   = sync.Pool{New: func() any { b := make([]byte, midReadSize); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, largeReadSize); return &b }}
)

// Piece is a part of a data message, as much as had arrived.
//
// Four fields, like inspect.Event and for the same reason: the compiler
// keeps a struct of at most four fields in registers; a fifth made every
// returned Piece a copy through memory that stalled store forwarding
// (docs/internals/hot-path.md#four-fields, guarded by a test).
type Piece struct {
	Type int    // TextMessage or BinaryMessage
	Data []byte // a slice of the read buffer, valid until the next TryPiece
	// Size is, on the first piece of a message sent as one frame, its
	// whole payload length (so a limit can be checked before anything is
	// forwarded); -1 otherwise.
	Size  int64
	flags uint8 // pieceFirst, pieceLast
}

const (
	pieceFirst uint8 = 1 << iota
	pieceLast
)

// First reports whether p is the first piece of its message.
func (p Piece) First() bool { return p.flags&pieceFirst != 0 }

// Last reports whether the message ends with p.
func (p Piece) Last() bool { return p.flags&pieceLast != 0 }

// ServeEvent is what Serve tells its handler.
type ServeEvent uint8

const (
	Arrived ServeEvent = iota // a read returned bytes: consume them with TryPiece
	Parking                   // Serve is about to wait for input: the moment to flush what was forwarded
)

// Serve reads and calls handle: with Arrived after every read that
// returned bytes, when handle consumes what it can with TryPiece and
// returns true to stop; with Parking before Serve waits for input, when
// handle flushes what it forwarded from the bytes already read (its
// result is ignored). Serve returns nil when handle stopped it, else the
// connection's final error: a *websocket.CloseError after a close frame
// (or when the connection ended without one), a *ProtocolError for a
// broken peer, or the connection's read error.
//
// On a TCP connection Serve stays in one syscall.RawConn.Read for as long
// as handle lets it, and parks (after Parking) when a read finds nothing
// (EAGAIN) or, once WatchHangups is on, when a read did not fill the
// buffer. Without the watch it does not park after such a short read:
// the peer's FIN (or RST) may have come with that read's bytes, and then
// only the next read reports it, as no further readiness event will come
// (nginx skips that read only when epoll's EPOLLRDHUP said no FIN is
// pending, which Go's poller does not tell; the hangup watcher does). On
// other connections (TLS, pipes) Parking comes before every read.
func (c *Conn) Serve(handle func(ev ServeEvent) (stop bool)) error {
	if c.raw == nil {
		for {
			if err := c.readOnce(handle); err != nil {
				return err
			}
			if handle(Arrived) {
				return nil
			}
		}
	}
	if c.readErr != nil {
		return c.readErr
	}
	if c.pendingErr != nil {
		return c.fail(c.pendingErr)
	}
	c.handle, c.rawErr, c.stopped = handle, nil, false
	err := c.readRaw(c.serveFn)
	c.handle = nil
	if err == nil {
		if c.stopped {
			return nil
		}
		if c.readErr != nil {
			// handle met the final error (TryPiece's) without stopping.
			return c.readErr
		}
		err = c.rawErr
	}
	return c.fail(readError(err))
}

// serveRead is Serve's loop inside syscall.RawConn.Read: returning false
// parks the goroutine until the socket is readable again.
func (c *Conn) serveRead(fd uintptr) bool {
	for {
		if c.closed.Load() {
			c.rawErr = net.ErrClosed
			return true
		}
		c.compact()
		if c.rbuf == nil {
			c.acquire(c.wantClass())
		}
		n, errno := recvRaw(fd, c.rbuf[c.rend:])
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			c.park()
			return false
		case errno != 0:
			c.rawErr = errno
			return true
		case n == 0:
			c.rawErr = io.EOF
			return true
		}
		c.got(n)
		if c.handle(Arrived) {
			c.stopped = true
			return true
		}
		if c.readErr != nil {
			return true // Serve returns it: handle did not stop
		}
		if n < c.lastRoom && c.hangupID != 0 {
			// A short read emptied the receive queue: park without the
			// read that would say EAGAIN (see Serve).
			c.park()
			return false
		}
	}
}

// park gets ready to wait for input: what was forwarded is flushed, and
// the read buffer goes back to its pool unless it holds the start of a
// frame.
func (c *Conn) park() {
	c.handle(Parking)
	c.compact()
	if c.rend == 0 {
		c.releaseRead()
	}
}

// readRaw runs f in syscall.RawConn.Read, with inRaw set. It closes the
// socket, and returns net.ErrClosed, when Close was called meanwhile: Close
// leaves that to the reader while it holds the read lock (see Close). inRaw
// and closed are set and read in opposite orders here and in Close, so at
// least one of the two sees the other's write and closes the socket.
func (c *Conn) readRaw(f func(uintptr) bool) error {
	c.inRaw.Store(true)
	err := c.raw.Read(f)
	c.inRaw.Store(false)
	if c.closed.Load() {
		_ = c.nc.Close()
		return net.ErrClosed
	}
	return err
}

// got accounts for n bytes just read into the buffer.
func (c *Conn) got(n int) {
	now := Now()
	c.lastWait = 0
	if c.lastReadAt != 0 {
		c.lastWait = now - c.lastReadAt
	}
	c.lastReadAt = now
	c.lastRead, c.lastRoom = n, len(c.rbuf)-c.rend
	c.rend += n
	if c.opts.ReadStamp != nil {
		c.opts.ReadStamp.Store(now)
	}
}

// readOnce is one turn of Serve on a connection that is not a socket: it
// reads once, waiting for input if there is none (after Parking), and
// keeps what TryPiece has not consumed (at most an incomplete header or
// control frame). Errors are final, as Serve's.
func (c *Conn) readOnce(handle func(ServeEvent) bool) error {
	if c.readErr != nil {
		return c.readErr
	}
	if c.pendingErr != nil {
		return c.fail(c.pendingErr)
	}
	c.compact()
	if c.rbuf == nil {
		c.acquire(c.wantClass())
	}
	handle(Parking)
	n, err := c.nc.Read(c.rbuf[c.rend:])
	if err == nil && n == 0 {
		err = io.ErrNoProgress
	}
	if n > 0 {
		c.got(n)
		if err != nil {
			c.pendingErr = readError(err)
		}
		return nil
	}
	return c.fail(readError(err))
}

// TryPiece returns the next piece of data-message payload from what was
// read, without reading: ok is false when what is buffered holds no
// further piece (Serve reads more). Control frames met on the way go to
// the Options' OnPing, OnPong and OnClose. Errors are final, as Serve's.
func (c *Conn) TryPiece() (p Piece, ok bool, err error) {
	if c.readErr != nil {
		return Piece{}, false, c.readErr
	}
	for {
		if c.inData {
			if c.frameLeft > 0 && c.rpos == c.rend {
				return Piece{}, false, nil
			}
			n := int(min(c.frameLeft, int64(c.rend-c.rpos)))
			data := c.rbuf[c.rpos : c.rpos+n]
			c.rpos += n
			c.frameLeft -= int64(n)
			if c.frameMasked {
				c.rkeyPos = maskBytes(c.rkey, c.rkeyPos, data)
			}
			p := Piece{Type: c.msgType, Data: data, Size: -1}
			if !c.msgStarted {
				p.flags = pieceFirst
				if c.frameFin {
					p.Size = int64(n) + c.frameLeft
				}
			}
			c.msgStarted = true
			if c.frameLeft == 0 {
				c.inData = false
				if c.frameFin {
					p.flags |= pieceLast
					c.msgType, c.msgStarted = 0, false
				}
			}
			return p, true, nil
		}
		got, err := c.readHeader()
		if err != nil {
			return Piece{}, false, c.fail(err)
		}
		if !got {
			return Piece{}, false, nil
		}
	}
}

// fail makes err final and gives back a borrowed read buffer.
func (c *Conn) fail(err error) error {
	c.readErr = err
	c.releaseRead()
	return err
}

func (c *Conn) releaseRead() {
	if c.rpool != nil {
		putRead(c.rpool)
		c.rpool = nil
	}
	c.rbuf = nil
	c.rpos, c.rend = 0, 0
}

// acquire takes a read buffer of the given class; the Conn holds none.
func (c *Conn) acquire(class int) {
	switch class {
	case 0:
		c.rpool = smallPool.Get().(*[]byte)
	case 1:
		c.rpool = midPool.Get().(*[]byte)
	default:
		c.rpool = largePool.Get().(*[]byte)
	}
	c.rbuf = *c.rpool
}

func putRead(p *[]byte) {
	switch len(*p) {
	case smallReadSize:
		smallPool.Put(p)
	case midReadSize:
		midPool.Put(p)
	default:
		largePool.Put(p)
	}
}

// readHeader consumes one frame header from the buffer, if it is all
// there. A control frame is consumed only whole, and handled; a data
// frame's payload is then returned by TryPiece.
func (c *Conn) readHeader() (bool, error) {
	if c.rend-c.rpos < 2 {
		return false, nil
	}
	b0, b1 := c.rbuf[c.rpos], c.rbuf[c.rpos+1]
	if b0&rsvBits != 0 {
		return false, &ProtocolError{Msg: "reserved bits set (no extension was negotiated)"}
	}
	fin := b0&finBit != 0
	op := int(b0 & 0x0f)
	masked := b1&maskBit != 0
	size := int64(b1 & 0x7f)
	hlen := 2
	switch size {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if masked {
		hlen += 4
	}
	if c.rend-c.rpos < hlen {
		return false, nil
	}
	h := c.rbuf[c.rpos : c.rpos+hlen]
	switch size {
	case 126:
		size = int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		u := binary.BigEndian.Uint64(h[2:])
		if u>>63 != 0 {
			return false, &ProtocolError{Msg: "frame length has its most significant bit set"}
		}
		size = int64(u)
	}
	var key [4]byte
	if masked {
		copy(key[:], h[hlen-4:])
	}
	if masked != (c.role == Server) {
		if masked {
			return false, &ProtocolError{Msg: "masked frame from a server"}
		}
		return false, &ProtocolError{Msg: "unmasked frame from a client"}
	}
	switch op {
	case opContinuation:
		if c.msgType == 0 {
			return false, &ProtocolError{Msg: "continuation frame without a message to continue"}
		}
	case TextMessage, BinaryMessage:
		if c.msgType != 0 {
			return false, &ProtocolError{Msg: "new message before the previous one ended"}
		}
		c.msgType = op
	case CloseMessage, PingMessage, PongMessage:
		if !fin {
			return false, &ProtocolError{Msg: "fragmented control frame"}
		}
		if size > maxControlPayload {
			return false, &ProtocolError{Msg: "control frame payload over 125 bytes"}
		}
		if c.rend-c.rpos < hlen+int(size) {
			return false, nil
		}
		c.rpos += hlen
		payload := c.rbuf[c.rpos : c.rpos+int(size)]
		c.rpos += int(size)
		if masked {
			maskBytes(key, 0, payload)
		}
		switch op {
		case PingMessage:
			if c.opts.OnPing != nil {
				c.opts.OnPing(payload)
			}
		case PongMessage:
			if c.opts.OnPong != nil {
				c.opts.OnPong(payload)
			}
		case CloseMessage:
			return false, c.closeReceived(payload)
		}
		return true, nil
	default:
		return false, &ProtocolError{Msg: "unknown opcode " + strconv.Itoa(op)}
	}
	c.rpos += hlen
	c.inData = true
	c.frameLeft = size
	c.frameFin = fin
	c.frameMasked = masked
	c.rkey = key
	c.rkeyPos = 0
	return true, nil
}

func (c *Conn) closeReceived(p []byte) error {
	code, text := websocket.CloseNoStatusReceived, ""
	switch {
	case len(p) == 1:
		return &ProtocolError{Msg: "close frame with a one-byte payload"}
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		if !validReceivedCloseCode(code) {
			return &ProtocolError{Msg: "invalid close code " + strconv.Itoa(code)}
		}
		if !utf8.Valid(p[2:]) {
			return &ProtocolError{Msg: "close reason is not UTF-8"}
		}
		text = string(p[2:])
	}
	if c.opts.OnClose != nil {
		c.opts.OnClose(code, text)
	}
	return &websocket.CloseError{Code: code, Text: text}
}

// validReceivedCloseCode follows RFC 6455 §7.4 and the IANA registry:
// 1005, 1006 and 1015 never travel in a close frame.
func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// compact moves unread bytes to the buffer's start and, when the traffic
// calls for another buffer size, switches (with no unread bytes, the next
// read takes the new size from the pool).
func (c *Conn) compact() {
	if c.rbuf == nil {
		return
	}
	keep := c.rend - c.rpos
	// Never a buffer smaller than what it keeps: more than a header is
	// kept when a read comes before TryPiece consumed what is buffered
	// (Serve right after New with bytes past the handshake).
	want := max(c.wantClass(), sizeClass(keep))
	switch {
	case want != classOf(len(c.rbuf)) && keep == 0:
		c.releaseRead()
		return
	case want != classOf(len(c.rbuf)):
		old := c.rpool
		unread := c.rbuf[c.rpos:c.rend]
		c.acquire(want)
		copy(c.rbuf, unread)
		putRead(old)
	case c.rpos > 0:
		copy(c.rbuf, c.rbuf[c.rpos:c.rend])
	}
	c.rpos, c.rend = 0, keep
}

// wantClass picks the read buffer's size class from the traffic: the size
// of the last read, one class up if that read filled its buffer (more was
// probably waiting), and at least what a large payload still due needs.
//
// Reads from the socket take 4 KiB at least: with a few small messages in
// flight, 512 B filled up and was read again (1 read per round trip at
// 64 B × 4 in flight against nginx's 0.5, and 1.65× its CPU; with 4 KiB
// 0.5 and 1.46×, stompbench 2026-11-22). The size costs an idle session
// nothing, since a parked connection returns its buffer to the pool; the
// small class serves only bytes buffered with the handshake.
func (c *Conn) wantClass() int {
	want := max(sizeClass(c.lastRead), 1)
	if c.lastRead > 0 && c.lastRead == c.lastRoom && want < 2 {
		want++
	}
	if c.inData {
		want = max(want, sizeClass(int(min(c.frameLeft, largeReadSize))))
	}
	return want
}

func readError(err error) error {
	if err == io.EOF {
		// TCP ended without a close frame: the peer is lost, as gorilla
		// reports it.
		return &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}
	}
	return err
}

// sizeClass maps a byte count to a read-buffer class: 0 small, 1 mid, 2 large.
func sizeClass(n int) int {
	switch {
	case n < smallReadSize:
		return 0
	case n < midReadSize:
		return 1
	}
	return 2
}

func classOf(size int) int {
	switch size {
	case smallReadSize:
		return 0
	case midReadSize:
		return 1
	}
	return 2
}
