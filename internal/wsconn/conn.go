// Package wsconn is stompgate's WebSocket data path: RFC 6455 framing on a
// connection whose opening handshake is already done (by gorilla/websocket's
// Upgrader and Dialer, which stompgate keeps for the handshake).
//
// It exists for the proxy's hot path, where gorilla's streaming API costs an
// allocation per message read and two per message written, holds a read
// buffer per connection for the connection's life, and writes every message
// with its own system call. Here:
//
//   - A reader returns message payload as slices of its read buffer
//     (NextPiece), unmasked in place: nothing is allocated per frame.
//   - Read buffers are pooled and sized by the traffic (4 KiB or 32 KiB,
//     chosen from the size of the last read; 512 B for bytes that came
//     with the handshake). On a TCP connection
//     the read goes through syscall.RawConn, so that a connection with
//     nothing to read parks holding no buffer at all: an idle connection
//     costs its Conn struct and nothing more.
//   - Writes are buffered in a pooled buffer and sent by Flush, so a proxy
//     can coalesce all the messages it forwards from what it read into one
//     write(2) by flushing when its reader is about to park (BeforeRead):
//     only then, not before every read, so that input which arrived while
//     it worked is forwarded in the same write. A connection with nothing
//     buffered holds no write buffer.
//   - Reading is split so that a goroutine can wait in a shallow frame:
//     Fill reads, TryPiece returns what was read without reading.
//
// No extension is negotiated (stompgate never offers permessage-deflate), so
// reserved bits are protocol errors. Text is not checked for UTF-8, as in
// gorilla/websocket: a proxy forwards what it is given.
package wsconn

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/tcpinfo"
)

// Message and frame types (RFC 6455 §5.2), the same values as
// gorilla/websocket's.
const (
	TextMessage   = websocket.TextMessage
	BinaryMessage = websocket.BinaryMessage
	CloseMessage  = websocket.CloseMessage
	PingMessage   = websocket.PingMessage
	PongMessage   = websocket.PongMessage

	opContinuation = 0
)

const (
	finBit  = 0x80
	rsvBits = 0x70
	maskBit = 0x80

	maxControlPayload = 125

	// smallReadSize is the read buffer for small traffic: a heart-beat, a
	// ping or a STOMP frame of a few hundred bytes arrives in one read. It
	// must hold the largest header plus a whole control frame (14 + 125
	// bytes).
	smallReadSize = 512
	midReadSize   = 4 << 10
	largeReadSize = 32 << 10

	// writeBufferSize bounds a buffered frame's payload below 64 KiB, so a
	// frame header is never longer than 4 bytes plus the mask key.
	writeBufferSize = 32 << 10
)

// ErrCloseSent is returned by writes after a close frame was sent; it is
// gorilla's, so callers can test for either.
var ErrCloseSent = websocket.ErrCloseSent

// ProtocolError is a violation of RFC 6455 by the peer. The connection
// cannot be read further; the peer should get close 1002.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "websocket: " + e.Msg }

// Role says which side of the handshake this end was: a Server reads
// masked frames and writes unmasked ones, a Client the opposite.
type Role uint8

const (
	Server Role = iota
	Client
)

// Piece is a part of a data message, as much as had arrived.
//
// Four fields, like inspect.Event and for the same reason: the compiler
// keeps a struct of at most four fields in registers; a fifth made every
// returned Piece a copy through memory that stalled store forwarding.
type Piece struct {
	Type int    // TextMessage or BinaryMessage
	Data []byte // a slice of the read buffer, valid until the next NextPiece
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

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallReadSize); return &b }}
	midPool   = sync.Pool{New: func() any { b := make([]byte, midReadSize); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, largeReadSize); return &b }}
	writePool = sync.Pool{New: func() any { b := make([]byte, writeBufferSize); return &b }}
)

// Conn is one WebSocket connection after its handshake.
//
// Reading (Fill, TryPiece, NextPiece and the hooks they call) belongs to
// one goroutine.
// Writing is safe from any goroutine; a message written with BeginMessage,
// Write and EndMessage must not be interleaved with another data message by
// the caller (the proxy holds its own lock per message), while control
// frames (WriteControl) may be sent at any time.
type Conn struct {
	nc          net.Conn
	role        Role
	subprotocol string

	// BeforeRead, if set, is called from the reading goroutine before it
	// waits for input: the moment to flush what was forwarded from the
	// bytes already read. On a TCP connection that is when a read found
	// nothing (EAGAIN); on others (TLS, pipes) before every read.
	BeforeRead func()
	// ReadStamp, if set, gets the time (a stamp: see Now) of every read that
	// returned bytes, control frames included.
	ReadStamp *atomic.Int64
	// OnPing, OnPong and OnClose are called from NextPiece with a control
	// frame's payload (valid only during the call). OnClose gets the code
	// (1005 when the frame had none) and reason; NextPiece then returns a
	// *websocket.CloseError.
	OnPing, OnPong func(payload []byte)
	OnClose        func(code int, text string)

	// Read side, owned by the reading goroutine.
	raw         syscall.RawConn // nil: nc is not a plain socket
	rawErr      error
	serveFn     func(fd uintptr) bool
	handle      func() bool // Serve's handler
	stopped     bool        // handle asked Serve to stop
	closed      atomic.Bool
	inRaw       atomic.Bool
	hangupID    uint64 // registration with the hangup watcher; 0: none
	lastReadAt  int64  // when the last read returned bytes (a stamp)
	lastWait    int64  // the time between the last two reads that returned bytes
	rbuf        []byte // a pooled buffer (rpool) or nil
	rpool       *[]byte
	rpos, rend  int
	emptyReads  int   // reads that found nothing (EAGAIN), for tests
	lingered    int64 // bytes Linger read and dropped, for tests
	lastRead    int   // bytes the last read returned
	lastRoom    int   // room the last read had: lastRead == lastRoom means it filled the buffer
	inData      bool  // a data frame's header has been read
	frameLeft   int64 // its payload bytes not yet returned
	frameFin    bool
	frameMasked bool
	rkey        [4]byte
	rkeyPos     int
	msgType     int  // type of the message being read; 0 between messages
	msgStarted  bool // a piece of it has been returned
	pendingErr  error
	readErr     error

	// Write side, guarded by wmu.
	wmu        sync.Mutex
	wbp        *[]byte // pooled write buffer; nil when nothing is buffered
	wsent      int     // wb[:wsent] was written to the socket
	wdone      int     // wb[wsent:wdone] are complete frames
	wlen       int     // wb[wdone:wlen] is the open frame, if any
	wframe     int     // start of the open frame's header slot; -1: none
	wop        int     // opcode of the next frame of the open message; -1: no message
	wkey       [4]byte
	wkeyPos    int
	wdata      bool // complete data frames are buffered
	werr       error
	closeSent  bool
	wpend      []byte        // writeAll: what writeRaw has still to send
	wsysErr    syscall.Errno // writeAll: writeRaw's failure
	wext       bool          // writeAll: under the WriteTimeout rule (progress moves the deadline)
	wwaited    bool          // writeAll: writeRaw found the socket full at least once
	wlast      int64         // writeAll, waiting: when progress was last seen (a stamp)
	woutq      int           // writeAll, waiting: the socket's SIOCOUTQ when last looked at
	wacks      bool          // writeAll, waiting: woutq is known (Linux), so checkpoints watch it
	writeFn    func(fd uintptr) bool
	rawWrites  int          // writeAll calls on a socket, for tests
	writeWaits atomic.Int64 // times writeRaw found the socket full, for tests (atomic: read while a write waits)

	// wdeadline is the write deadline wsconn wants on nc (a stamp; 0:
	// none), written under wmu; closeDeadline is SetCloseDeadline's (a
	// stamp; 0: none). nc's deadline is the earlier of the two (see
	// setWriteDeadline). Atomic, as SetCloseDeadline reads wdeadline
	// without wmu.
	wdeadline     atomic.Int64
	closeDeadline atomic.Int64

	// WriteTimeout bounds how long a write may wait without progress: a
	// flush fails with a timeout (a net.Error whose Timeout() is true) only
	// when, for WriteTimeout, the connection accepted no byte of it and
	// the peer took none of what was queued. A peer that keeps reading is
	// not cut while a long flush to it lasts. An explicit deadline
	// (WriteControl's) is not moved by progress; SetCloseDeadline caps
	// them all. 0: no bound.
	//
	// On a socket the deadline is armed only when a write finds the socket
	// full (EAGAIN), and moved to now+WriteTimeout each time the socket
	// accepts bytes again. That alone would be coarse: a waiting writer is
	// woken only when about a third of the send buffer has drained, and
	// loopback sockets autotune theirs to ~4 MiB (a peer reading 64 KiB/s
	// would wake it every 20 s). So on Linux the wait also has checkpoints,
	// every WriteTimeout/4 and at most every maxCheckpoint, where SIOCOUTQ
	// tells whether the peer acknowledged (TCP) or read (Unix) bytes since
	// the last look: then the write waits on, and fails WriteTimeout after
	// the last checkpoint that saw progress (at most one checkpoint interval
	// later than the progress itself).
	//
	// On other connections (TLS) progress is seen per chunk of at most
	// 16 KiB, and a flush fails after between WriteTimeout and 1.5 ×
	// WriteTimeout without a chunk completed: a TLS write cannot be
	// resumed after a timeout, so no checkpoints.
	WriteTimeout time.Duration
	// WriteStamp, if set, gets the time of every flush that carried data
	// frames (control frames do not count: a STOMP peer sees only data).
	WriteStamp *atomic.Int64
	// WriteProgress, if set, gets the time (a stamp) whenever a write that
	// had found the socket full (EAGAIN) made progress afterwards: the
	// socket accepted more bytes, or a WriteTimeout checkpoint saw the
	// peer take some from the send queue (Linux). The peer's application
	// is reading the backlog: a proof of life while WriteStamp waits for
	// the flush to end. Only writes that wait pay for it; sockets only
	// (not TLS, where a full socket cannot be seen).
	WriteProgress *atomic.Int64
}

// New wraps nc, whose handshake is complete. buffered holds bytes already
// read past the handshake (the start of the first frames); it is copied.
func New(nc net.Conn, role Role, subprotocol string, buffered []byte) *Conn {
	c := &Conn{nc: nc, role: role, subprotocol: subprotocol, wframe: -1, wop: -1}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.raw = rc
			// A method value made once for the connection's life.
			c.serveFn = c.serveRead
			c.writeFn = c.writeRaw
		}
	}
	if len(buffered) > 0 {
		if len(buffered) >= largeReadSize {
			// Never happens with gorilla's small handshake buffers;
			// refuse rather than truncate. A buffer filled to the last
			// byte is refused too: it would leave a read before TryPiece
			// no room, and a read of 0 bytes looks like the peer's EOF
			// (found by FuzzReadServer).
			c.readErr = &ProtocolError{Msg: "too many bytes buffered after the handshake"}
			return c
		}
		c.acquire(sizeClass(len(buffered) + 1))
		c.rend = copy(c.rbuf, buffered)
	}
	return c
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Subprotocol returns the negotiated subprotocol.
func (c *Conn) Subprotocol() string { return c.subprotocol }

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Close closes the underlying connection without a close frame. It does
// not wait for a writer: one blocked in write fails at once, and a reader
// in Serve stops at its next read.
//
// A reader in syscall.RawConn.Read (Serve, or Fill on a socket) holds the
// socket's read lock, which net.Conn.Close waits for, also while it runs
// handle, BeforeRead or the On hooks: then Close only shuts the socket down,
// which wakes the reader, and the reader closes it on its way out. So Close
// may be called from those hooks too.
func (c *Conn) Close() error {
	c.closed.Store(true)
	c.unwatchHangups()
	if c.inRaw.Load() {
		var err error
		if cerr := c.raw.Control(func(fd uintptr) { err = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) }); cerr != nil {
			return cerr
		}
		return err
	}
	return c.nc.Close()
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

// NextPiece returns the next piece of data-message payload, reading as
// needed. Control frames met on the way go to OnPing, OnPong and OnClose.
// Errors are final: a *websocket.CloseError after a close frame, a
// *ProtocolError for a broken peer, or the read error of the connection.
func (c *Conn) NextPiece() (Piece, error) {
	for {
		p, ok, err := c.TryPiece()
		if err != nil || ok {
			return p, err
		}
		if err := c.Fill(); err != nil {
			return Piece{}, err
		}
	}
}

// TryPiece is NextPiece without reading: ok is false when what is buffered
// holds no further piece (call Fill).
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
			if c.OnPing != nil {
				c.OnPing(payload)
			}
		case PongMessage:
			if c.OnPong != nil {
				c.OnPong(payload)
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
	if c.OnClose != nil {
		c.OnClose(code, text)
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

// Fill reads from the connection once, waiting for input if there is
// none, and keeps what TryPiece has not consumed (at most an incomplete
// header or control frame). Errors are final, as NextPiece's.
func (c *Conn) Fill() error {
	if c.raw != nil {
		// On a socket, Serve's read loop with a handler that stops after
		// the first read that returned bytes.
		return c.Serve(stopAfterRead)
	}
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
	if c.BeforeRead != nil {
		c.BeforeRead()
	}
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
	if c.ReadStamp != nil {
		c.ReadStamp.Store(now)
	}
}

// Serve reads and calls handle after every read that returned bytes;
// handle consumes what it can with TryPiece and returns true to stop.
// Serve returns nil when handle stopped it, else the connection's final
// error (as NextPiece's).
//
// On a TCP connection Serve stays in one syscall.RawConn.Read for as long
// as handle lets it, and flushes (BeforeRead) and parks when a read finds
// nothing (EAGAIN) or, once WatchHangups is on, when a read did not fill
// the buffer. Without the watch it does not park after such a short read:
// the peer's FIN (or RST) may have come with that read's bytes, and then
// only the next read reports it, as no further readiness event will come
// (nginx skips that read only when epoll's EPOLLRDHUP said no FIN is
// pending, which Go's poller does not tell; the hangup watcher does).
func (c *Conn) Serve(handle func() (stop bool)) error {
	if c.raw == nil {
		for {
			if err := c.Fill(); err != nil {
				return err
			}
			if handle() {
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
			c.emptyReads++
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
		if c.handle() {
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
	if c.BeforeRead != nil {
		c.BeforeRead()
	}
	c.compact()
	if c.rend == 0 {
		c.releaseRead()
	}
}

func stopAfterRead() bool { return true }

// LastWait is the time between the last two reads that returned bytes:
// about how long the last Fill waited for its input.
func (c *Conn) LastWait() time.Duration { return time.Duration(c.lastWait) }

// Unread reports whether bytes from the peer wait in the kernel's receive
// queue, not yet read (false when that cannot be known: not a socket, or
// not Linux). Safe from any goroutine; one system call.
func (c *Conn) Unread() bool {
	if c.raw == nil {
		return false
	}
	var n int
	var ok bool
	err := c.raw.Control(func(fd uintptr) { n, ok = tcpinfo.ReceiveQueue(fd) })
	return err == nil && ok && n > 0
}

// KernelSilence reports how long ago the kernel last received data from
// the peer on this TCP socket, whether stompgate has read it or not
// (TCP_INFO's tcpi_last_data_recv, in milliseconds); false when that
// cannot be known (not a TCP socket, or not Linux). Next to the silence a
// deadline measured, it tells a silent peer (the kernel got nothing
// either) from a proxy too busy to read in time. Safe from any goroutine;
// one system call.
func (c *Conn) KernelSilence() (time.Duration, bool) {
	if c.raw == nil {
		return 0, false
	}
	return tcpinfo.Silence(c.raw)
}

// LastReadAt is when the last read returned bytes (a stamp; 0: never).
func (c *Conn) LastReadAt() int64 { return c.lastReadAt }

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
	// (Serve or Fill right after New with bytes past the handshake).
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

// BeginMessage starts a data message of type mt (TextMessage or
// BinaryMessage). The caller writes its payload with Write and ends it with
// EndMessage, and does not start another data message meanwhile.
//
// The message's state (its opcode) belongs to that one writer, so no lock
// is taken here; the buffer's is taken by Write and EndMessage.
func (c *Conn) BeginMessage(mt int) {
	c.wop = mt
}

// Write appends payload to the open message. It sends what is buffered only
// when the buffer is full (the message then goes out in fragments).
func (c *Conn) Write(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.appendLocked(p)
}

// WriteEnd is Write(p) then EndMessage, under one lock.
func (c *Conn) WriteEnd(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.appendLocked(p); err != nil {
		return err
	}
	return c.endLocked()
}

func (c *Conn) appendLocked(p []byte) error {
	if err := c.writable(); err != nil {
		return err
	}
	for len(p) > 0 {
		if c.wframe < 0 {
			if err := c.openFrame(); err != nil {
				return err
			}
		}
		wb := *c.wbp
		if c.wlen == len(wb) {
			c.closeFrame(false)
			if err := c.flushLocked(time.Time{}, 0); err != nil {
				return err
			}
			continue
		}
		n := min(len(wb)-c.wlen, len(p))
		if c.role == Client {
			c.wkeyPos = maskCopy(c.wkey, c.wkeyPos, wb[c.wlen:], p[:n])
		} else {
			copy(wb[c.wlen:], p[:n])
		}
		c.wlen += n
		p = p[n:]
	}
	return nil
}

// EndMessage completes the open message. It is sent by the next Flush.
func (c *Conn) EndMessage() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.endLocked()
}

func (c *Conn) endLocked() error {
	if err := c.writable(); err != nil {
		return err
	}
	if c.wframe < 0 {
		if err := c.openFrame(); err != nil {
			return err
		}
	}
	c.closeFrame(true)
	c.wop = -1
	return nil
}

// AbandonMessage drops what is buffered of the open message; fragments of
// it already sent stay sent, so the caller must then send only control
// frames.
func (c *Conn) AbandonMessage() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wframe >= 0 {
		c.wlen = c.wframe
		c.wframe = -1
		if c.wsent == c.wlen {
			// What preceded it was sent: nothing is buffered.
			c.wsent, c.wdone, c.wlen = 0, 0, 0
		}
	}
	c.wop = -1
	c.releaseWriteIfEmpty()
}

// WriteMessage writes one whole data message and flushes it, with
// everything buffered before it.
func (c *Conn) WriteMessage(mt int, p []byte) error {
	c.BeginMessage(mt)
	if err := c.Write(p); err != nil {
		return err
	}
	if err := c.EndMessage(); err != nil {
		return err
	}
	return c.Flush()
}

// Flush sends the complete frames buffered. An open message stays buffered
// until it ends or fills the buffer.
func (c *Conn) Flush() error { return c.FlushAt(0) }

// FlushAt is Flush for a caller that knows the time (a stamp from Now or
// LastReadAt; 0: unknown).
func (c *Conn) FlushAt(now int64) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.wbp == nil || c.wdone == c.wsent {
		return nil
	}
	return c.flushLocked(time.Time{}, now)
}

// Buffered reports whether complete frames wait for a Flush.
func (c *Conn) Buffered() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.wbp != nil && c.wdone > c.wsent
}

// WriteControl sends a ping, pong or close frame now, after the complete
// frames already buffered, with deadline as the write deadline. A close
// frame is the last frame sent: later writes, control frames included,
// fail with ErrCloseSent.
func (c *Conn) WriteControl(op int, payload []byte, deadline time.Time) error {
	if len(payload) > maxControlPayload {
		return &ProtocolError{Msg: "control frame payload over 125 bytes"}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return ErrCloseSent
	}
	if op == CloseMessage {
		c.closeSent = true
		// Nothing may follow the close frame: drop an unfinished message.
		if c.wframe >= 0 {
			c.wlen = c.wframe
			c.wframe = -1
		}
	}
	if c.wframe >= 0 {
		// A data frame is half written in the buffer: send what precedes
		// it, then the control frame from its own small buffer (rare: only
		// while a large message is being streamed).
		if c.wdone > c.wsent {
			if err := c.flushLocked(deadline, 0); err != nil {
				return err
			}
		}
		frame := appendControl(make([]byte, 0, 14+len(payload)), c.role, op, payload)
		return c.writeLocked(frame, deadline, 0)
	}
	if c.wbp == nil {
		c.wbp = writePool.Get().(*[]byte)
	}
	wb := *c.wbp
	if len(wb)-c.wlen < 6+len(payload) {
		if err := c.flushLocked(deadline, 0); err != nil {
			return err
		}
		if c.wbp == nil {
			c.wbp = writePool.Get().(*[]byte)
			wb = *c.wbp
		}
	}
	c.wlen = len(appendControl(wb[:c.wlen], c.role, op, payload))
	c.wdone = c.wlen
	return c.flushLocked(deadline, 0)
}

func appendControl(b []byte, role Role, op int, payload []byte) []byte {
	if role == Client {
		key := newKey()
		b = append(b, byte(finBit|op), byte(maskBit|len(payload)), key[0], key[1], key[2], key[3])
		start := len(b)
		b = append(b, payload...)
		maskBytes(key, 0, b[start:])
		return b
	}
	b = append(b, byte(finBit|op), byte(len(payload)))
	return append(b, payload...)
}

func (c *Conn) writable() error {
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return ErrCloseSent
	}
	return nil
}

// headerSlot is the room reserved before a frame's payload: 2 bytes, a
// 2-byte extended length (payloads stay below 64 KiB) and, from a client,
// the mask key.
func (c *Conn) headerSlot() int {
	if c.role == Client {
		return 8
	}
	return 4
}

// openFrame reserves a header slot at the end of the buffer.
func (c *Conn) openFrame() error {
	if c.wbp == nil {
		c.wbp = writePool.Get().(*[]byte)
	}
	if len(*c.wbp)-c.wlen < c.headerSlot()+1 {
		if err := c.flushLocked(time.Time{}, 0); err != nil {
			return err
		}
		if c.wbp == nil {
			c.wbp = writePool.Get().(*[]byte)
		}
	}
	c.wframe = c.wlen
	c.wlen += c.headerSlot()
	if c.role == Client {
		c.wkey = newKey()
		c.wkeyPos = 0
	}
	return nil
}

// closeFrame writes the open frame's header; a short header moves the
// (then at most 125-byte) payload back over the unused slot bytes.
func (c *Conn) closeFrame(fin bool) {
	wb := *c.wbp
	slot := c.headerSlot()
	start := c.wframe + slot
	n := c.wlen - start
	op := c.wop
	if op < 0 {
		op = BinaryMessage // not reached: Write without BeginMessage
	}
	b0 := byte(op)
	if fin {
		b0 |= finBit
	}
	var b1 byte
	if c.role == Client {
		b1 = maskBit
	}
	h := wb[c.wframe:]
	if n <= 125 {
		h[0], h[1] = b0, b1|byte(n)
		hl := 2
		if c.role == Client {
			copy(h[2:6], c.wkey[:])
			hl = 6
		}
		copy(wb[c.wframe+hl:], wb[start:c.wlen])
		c.wlen -= slot - hl
	} else {
		h[0], h[1] = b0, b1|126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		if c.role == Client {
			copy(h[4:8], c.wkey[:])
		}
	}
	c.wdone = c.wlen
	c.wframe = -1
	c.wop = opContinuation
	c.wdata = true
}

// flushLocked writes the complete frames, then gives the buffer back if
// nothing else is in it. deadline zero means the WriteTimeout rule (see
// WriteTimeout and writeLocked); with no WriteTimeout, no deadline,
// whatever a control frame set before.
//
// now is the current time (a stamp) if the caller knows it, else 0: a
// proxy flushing what it forwarded knows when it read it, and one clock
// read per message is saved.
func (c *Conn) flushLocked(deadline time.Time, now int64) error {
	wb := *c.wbp
	if now == 0 && ((c.WriteTimeout > 0 && c.raw == nil) || (c.wdata && c.WriteStamp != nil)) {
		now = Now()
	}
	err := c.writeLocked(wb[c.wsent:c.wdone], deadline, now)
	if err != nil {
		return err
	}
	c.wsent = c.wdone
	if c.wdata {
		c.wdata = false
		if c.WriteStamp != nil {
			c.WriteStamp.Store(now)
		}
	}
	if c.wframe < 0 {
		c.wsent, c.wdone, c.wlen = 0, 0, 0
		c.releaseWriteIfEmpty()
	}
	return nil
}

// writeLocked writes b under deadline or, when it is zero, the
// WriteTimeout rule:
//
//   - On a socket, no deadline is set before the write: one that does not
//     block needs none. writeRaw arms one when the socket is full (blocked:
//     now+WriteTimeout, or the first checkpoint), again each time the
//     socket accepted bytes before filling up again, and writeAll at each
//     checkpoint (checkpoint); writeAll removes it once the write is done.
//     The common path makes no clock read and no deadline call.
//   - Elsewhere (TLS) the write cannot be watched from inside, so the
//     deadline is set ahead: to now+1.5×WriteTimeout whenever less than
//     WriteTimeout is left, so that every chunk (writeAll) starts with at
//     least WriteTimeout, while a busy connection resets it only once per
//     half WriteTimeout.
//
// An explicit deadline (a control frame's) is a hard one: progress does
// not move it. Every deadline is capped by SetCloseDeadline's.
func (c *Conn) writeLocked(b []byte, deadline time.Time, now int64) error {
	if len(b) == 0 {
		return nil
	}
	c.wext = deadline.IsZero() && c.WriteTimeout > 0
	var err error
	switch {
	case !deadline.IsZero():
		err = c.setWriteDeadline(stampOf(deadline))
	case c.wext && c.raw == nil:
		if now == 0 {
			now = Now()
		}
		wt := int64(c.WriteTimeout)
		if left := c.wdeadline.Load() - now; left < wt || left > wt+wt/2 {
			err = c.setWriteDeadline(now + wt + wt/2)
		}
	case c.wdeadline.Load() != 0:
		// A control frame's deadline: data on a socket waits under
		// none until it blocks, and without a WriteTimeout under none
		// at all.
		err = c.setWriteDeadline(0)
	}
	if err != nil {
		return c.writeFailed(err)
	}
	if err := c.writeAll(b); err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// stampOf converts a deadline to a stamp, Time's inverse: through the
// monotonic clock when t carries a reading (as time.Now's do), so that
// Time(stampOf(t)) is the same instant.
func stampOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	n := clockBaseUnix + int64(t.Sub(clockBase))
	if n == 0 {
		n = -1 // a time, not "none"
	}
	return n
}

// effectiveDeadline is the earlier of a write deadline and a close
// deadline (stamps; 0: none).
func effectiveDeadline(w, closing int64) int64 {
	if closing != 0 && (w == 0 || closing < w) {
		return closing
	}
	return w
}

// setWriteDeadline records d (a stamp; 0: none) as the deadline wsconn
// wants and sets nc's to the earlier of it and the close deadline. Called
// with wmu held (or from writeRaw, whose caller holds it).
//
// SetCloseDeadline sets nc's deadline without wmu. Each side stores its
// value, sets nc's deadline from both, and reads both again, repeating if
// they changed meanwhile: so the last deadline set, by either, is the
// earlier of the two as they stand at the end.
func (c *Conn) setWriteDeadline(d int64) error {
	c.wdeadline.Store(d)
	for {
		eff := effectiveDeadline(d, c.closeDeadline.Load())
		if err := c.nc.SetWriteDeadline(Time(eff)); err != nil {
			return err
		}
		if effectiveDeadline(d, c.closeDeadline.Load()) == eff {
			return nil
		}
	}
}

// SetCloseDeadline sets a deadline no write outlives: from now on every
// write, a flush blocked in progress included, fails at t at the latest,
// with a timeout; WriteTimeout's progress rule no longer extends past t,
// and WriteControl's deadline is capped at t. It does not take the write
// lock (a blocked flush holds it): it sets the connection's write deadline
// directly, which wakes a write waiting past t.
//
// Safe from any goroutine, any number of times: the earliest t wins. A
// zero t is ignored.
func (c *Conn) SetCloseDeadline(t time.Time) {
	n := stampOf(t)
	if n == 0 {
		return
	}
	for {
		old := c.closeDeadline.Load()
		if old != 0 && old <= n {
			break
		}
		if c.closeDeadline.CompareAndSwap(old, n) {
			break
		}
	}
	for {
		eff := effectiveDeadline(c.wdeadline.Load(), c.closeDeadline.Load())
		if err := c.nc.SetWriteDeadline(Time(eff)); err != nil {
			return // closed: no write can wait
		}
		if effectiveDeadline(c.wdeadline.Load(), c.closeDeadline.Load()) == eff {
			return
		}
	}
}

// progressChunk is how much a write on a connection that is not a socket
// (TLS) is given at a time when WriteTimeout applies, so that a slow
// reader's progress is seen between chunks: a TLS record's most
// plaintext, so no record is cut short.
const progressChunk = 16 << 10

// writeAll writes b to the connection. On a socket it is one
// syscall.RawConn.Write around sendRaw, which waits for room (under the
// write deadline) only when the socket's send buffer is full.
func (c *Conn) writeAll(b []byte) error {
	if c.raw == nil {
		return c.writeChunks(b)
	}
	c.wpend, c.wsysErr, c.wwaited = b, 0, false
	c.rawWrites++
	err := c.raw.Write(c.writeFn)
	for err != nil && c.wwaited && c.wext && errors.Is(err, os.ErrDeadlineExceeded) && c.checkpoint() {
		err = c.raw.Write(c.writeFn)
	}
	c.wpend = nil
	if c.wwaited {
		c.writeWaited(err)
	}
	if err == nil && c.wsysErr != 0 {
		err = os.NewSyscallError("write", c.wsysErr)
	}
	if err == nil {
		return nil
	}
	// Worded like net.Conn.Write's errors, which the logs have shown so far.
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = "write"
		return oe
	}
	return &net.OpError{Op: "write", Net: c.nc.LocalAddr().Network(), Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: err}
}

// writeChunks is writeAll on a connection that is not a socket: under the
// WriteTimeout rule, in chunks, moving the deadline (see writeLocked)
// after each one when less than WriteTimeout is left.
func (c *Conn) writeChunks(b []byte) error {
	for c.wext && len(b) > progressChunk {
		if _, err := c.nc.Write(b[:progressChunk]); err != nil {
			return err
		}
		b = b[progressChunk:]
		now, wt := Now(), int64(c.WriteTimeout)
		if c.wdeadline.Load()-now < wt {
			if err := c.setWriteDeadline(now + wt + wt/2); err != nil {
				return err
			}
		}
	}
	_, err := c.nc.Write(b)
	return err
}

// writeRaw is writeAll's loop inside syscall.RawConn.Write: returning false
// waits until the socket is writable again.
//
// The path where the socket is not full adds nothing but the sent flag;
// blocked and writeWaited, which move the deadline and stamp progress, run
// only when a write waits.
func (c *Conn) writeRaw(fd uintptr) bool {
	sent := false
	for len(c.wpend) > 0 {
		n, errno := sendRaw(fd, c.wpend)
		switch errno {
		case 0:
			c.wpend = c.wpend[n:]
			sent = true
		case syscall.EINTR:
		case syscall.EAGAIN:
			c.writeWaits.Add(1)
			if sent || !c.wwaited {
				c.blocked(fd, sent)
			}
			c.wwaited = true
			return false
		default:
			c.wsysErr = errno
			if sent && c.wwaited {
				c.progress(Now())
			}
			return true
		}
	}
	if sent && c.wwaited {
		c.progress(Now())
	}
	return true
}

// blocked runs when the write is about to wait for room: for the first
// time, or again after the socket accepted bytes (sent). Under the
// WriteTimeout rule progress is counted from now: the wait gets
// now+WriteTimeout, or its first checkpoint (see WriteTimeout), with the
// send queue's length to compare with there. A wait after one that made
// no progress (a wake-up that found no room) keeps its deadline.
//
// Setting the deadline here, inside syscall.RawConn.Write, is safe: the
// deadline calls take no lock that the write holds, and the wait that
// follows reads the new deadline.
func (c *Conn) blocked(fd uintptr, sent bool) {
	now := Now()
	if sent && c.wwaited {
		c.progress(now)
	}
	if c.wext {
		c.wlast = now
		c.woutq, c.wacks = tcpinfo.SendQueue(fd)
		c.armWait(now)
	}
}

// armWait sets the deadline of a write waiting under the WriteTimeout
// rule: WriteTimeout after the last progress, or the next checkpoint if
// sooner.
func (c *Conn) armWait(now int64) {
	d := c.wlast + int64(c.WriteTimeout)
	if c.wacks {
		d = min(d, now+int64(min(c.WriteTimeout/4, maxCheckpoint)))
	}
	// An error means the socket is closed: the wait reports it.
	_ = c.setWriteDeadline(d)
}

// maxCheckpoint bounds the interval between a waiting write's looks at
// its send queue, and so how late after the peer's last progress a write
// can fail: a quarter of the default 10 s WriteTimeout would be 2.5 s. A
// look is one ioctl, only while a write waits.
const maxCheckpoint = 250 * time.Millisecond

// checkpoint runs when a waiting write's deadline passed under the
// WriteTimeout rule, and reports whether the write should wait on: the
// peer took bytes from the send queue since the last look (progress, now)
// and the close deadline has not passed, or WriteTimeout since the last
// progress has not.
func (c *Conn) checkpoint() bool {
	now := Now()
	if cd := c.closeDeadline.Load(); cd != 0 && now >= cd {
		return false
	}
	if c.wacks {
		var q int
		var ok bool
		if c.raw.Control(func(fd uintptr) { q, ok = tcpinfo.SendQueue(fd) }) == nil && ok {
			if q < c.woutq {
				c.wlast = now
				c.progress(now)
			}
			c.woutq = q
		}
	}
	if now-c.wlast >= int64(c.WriteTimeout) {
		return false
	}
	c.armWait(now)
	return true
}

// progress records that a write which had waited made progress.
func (c *Conn) progress(now int64) {
	if c.WriteProgress != nil {
		c.WriteProgress.Store(now)
	}
}

// writeWaited ends a write that waited: the deadline blocked armed is
// removed (the close deadline stays), so that it neither fails a later
// write nor fires for nothing. After a failure it no longer matters.
func (c *Conn) writeWaited(err error) {
	if err == nil && c.wext && c.wdeadline.Load() != 0 {
		// An error means the socket was closed: the next write says so.
		_ = c.setWriteDeadline(0)
	}
}

func (c *Conn) writeFailed(err error) error {
	c.werr = err
	c.wsent, c.wdone, c.wlen, c.wframe = 0, 0, 0, -1
	c.releaseWriteIfEmpty()
	return err
}

func (c *Conn) releaseWriteIfEmpty() {
	if c.wbp != nil && c.wlen == 0 {
		writePool.Put(c.wbp)
		c.wbp = nil
		c.wsent, c.wdone = 0, 0
	}
}

// Release gives back the pooled buffers. Call it once reading has ended
// (the reading goroutine is done); later writes fail.
func (c *Conn) Release() {
	c.releaseRead()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.wsent, c.wdone, c.wlen, c.wframe = 0, 0, 0, -1
	c.releaseWriteIfEmpty()
}

// newKey returns a frame's mask key. RFC 6455 §5.3 asks for keys an
// intermediary cannot predict; math/rand/v2's global source is ChaCha8
// seeded from the OS, without the cost of a system call per frame.
func newKey() [4]byte {
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], rand.Uint32())
	return k
}

// maskBytes XORs b with key starting at key position pos, and returns the
// key position after b.
func maskBytes(key [4]byte, pos int, b []byte) int { return maskCopy(key, pos, b, b) }

// maskCopy writes src XOR key (from key position pos) to dst, which must be
// at least as long as src and may be src itself, and returns the key
// position after src. Masking while copying reads the payload once instead
// of twice (copy, then mask in place); words of 8 bytes, four at a time.
func maskCopy(key [4]byte, pos int, dst, src []byte) int {
	i := 0
	if len(src) >= 16 {
		var k8 [8]byte
		for j := range k8 {
			k8[j] = key[(pos+j)&3]
		}
		kw := binary.LittleEndian.Uint64(k8[:])
		dst = dst[:len(src)]
		for ; i+32 <= len(src); i += 32 {
			d, s := dst[i:i+32], src[i:i+32]
			binary.LittleEndian.PutUint64(d, binary.LittleEndian.Uint64(s)^kw)
			binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(s[8:])^kw)
			binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(s[16:])^kw)
			binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(s[24:])^kw)
		}
		for ; i+8 <= len(src); i += 8 {
			binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^kw)
		}
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[(pos+i)&3]
	}
	return (pos + len(src)) & 3
}
