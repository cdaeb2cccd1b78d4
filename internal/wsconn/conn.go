package wsconn

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Options configures a Conn; it is fixed at New.
type Options struct {
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

	// ReadStamp, if set, gets the time (a stamp: see Now) of every read
	// that returned bytes, control frames included.
	//
	// WriteStamp, if set, gets the time of every flush that carried data
	// frames (control frames do not count: a STOMP peer sees only data).
	//
	// WriteProgress, if set, gets the time whenever a write that had
	// found the socket full (EAGAIN) made progress afterwards: the socket
	// accepted more bytes, or a WriteTimeout checkpoint saw the peer take
	// some from the send queue (Linux). The peer's application is reading
	// the backlog: a proof of life while WriteStamp waits for the flush to
	// end. Only writes that wait pay for it; sockets only (not TLS, where
	// a full socket cannot be seen).
	ReadStamp, WriteStamp, WriteProgress *atomic.Int64

	// OnPing, OnPong and OnClose, if set, are called from the reading
	// goroutine (in TryPiece) with a control frame's payload, valid only
	// during the call. OnClose gets the code (1005 when the frame had
	// none) and reason; TryPiece then returns a *websocket.CloseError.
	OnPing, OnPong func(payload []byte)
	OnClose        func(code int, text string)
}

// Conn is one WebSocket connection after its handshake.
//
// Reading (Serve, TryPiece, Linger and the hooks they call) belongs to one
// goroutine.
// Writing is safe from any goroutine; a message written with BeginMessage,
// Write and EndMessage must not be interleaved with another data message by
// the caller (the proxy holds its own lock per message), while control
// frames (WriteControl) may be sent at any time.
type Conn struct {
	nc          net.Conn
	role        Role
	subprotocol string
	opts        Options

	// Read side, owned by the reading goroutine.
	raw         syscall.RawConn // nil: nc is not a plain socket
	rawErr      error
	serveFn     func(fd uintptr) bool
	handle      func(ServeEvent) bool // Serve's handler
	stopped     bool                  // handle asked Serve to stop
	closed      atomic.Bool
	inRaw       atomic.Bool
	hangupID    uint64 // registration with the hangup watcher; 0: none
	lastReadAt  int64  // when the last read returned bytes (a stamp)
	lastWait    int64  // the time between the last two reads that returned bytes
	rbuf        []byte // a pooled buffer (rpool) or nil
	rpool       *[]byte
	rpos, rend  int
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
	wmu       sync.Mutex
	wbp       *[]byte // pooled write buffer; nil when nothing is buffered
	wsent     int     // wb[:wsent] was written to the socket
	wdone     int     // wb[wsent:wdone] are complete frames
	wlen      int     // wb[wdone:wlen] is the open frame, if any
	wframe    int     // start of the open frame's header slot; -1: none
	wop       int     // opcode of the next frame of the open message; -1: no message
	wkey      [4]byte
	wkeyPos   int
	wdata     bool // complete data frames are buffered
	werr      error
	closeSent bool
	wpend     []byte        // writeAll: what writeRaw has still to send
	wsysErr   syscall.Errno // writeAll: writeRaw's failure
	wext      bool          // writeAll: under the WriteTimeout rule (progress moves the deadline)
	wwaited   bool          // writeAll: writeRaw found the socket full at least once
	wlast     int64         // writeAll, waiting: when progress was last seen (a stamp)
	woutq     int           // writeAll, waiting: the socket's SIOCOUTQ when last looked at
	wacks     bool          // writeAll, waiting: woutq is known (Linux), so checkpoints watch it
	writeFn   func(fd uintptr) bool

	// wdeadline is the write deadline wsconn wants on nc (a stamp; 0:
	// none), written under wmu; closeDeadline is SetCloseDeadline's (a
	// stamp; 0: none). nc's deadline is the earlier of the two (see
	// setWriteDeadline). Atomic, as SetCloseDeadline reads wdeadline
	// without wmu.
	wdeadline     atomic.Int64
	closeDeadline atomic.Int64
}

// New wraps nc, whose handshake is complete. buffered holds bytes already
// read past the handshake (the start of the first frames); it is copied.
func New(nc net.Conn, role Role, subprotocol string, buffered []byte, opts Options) *Conn {
	c := &Conn{nc: nc, role: role, subprotocol: subprotocol, opts: opts, wframe: -1, wop: -1}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.raw = rc
			// Method values made once for the connection's life: one
			// made per read would allocate (docs/internals/hot-path.md#made-once).
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
// A reader in syscall.RawConn.Read (Serve on a socket) holds the socket's
// read lock, which net.Conn.Close waits for, also while it runs Serve's
// handler or the On hooks: then Close only shuts the socket down, which
// wakes the reader, and the reader closes it on its way out. So Close may
// be called from those hooks too.
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

// LastWait is the time between the last two reads that returned bytes:
// about how long Serve last waited for input.
func (c *Conn) LastWait() time.Duration { return time.Duration(c.lastWait) }

// LastReadAt is when the last read returned bytes (a stamp; 0: never).
func (c *Conn) LastReadAt() int64 { return c.lastReadAt }

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
