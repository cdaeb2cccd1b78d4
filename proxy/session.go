package proxy

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// Session is one proxied client: two legs and two pumps.
//
// Ownership: the Handler owns the Session (h.sessions). Each pump runs on
// its own goroutine (start, pumpLoop) and the last one to end tears the
// session down (pumpEnded). Everything that ends a session goes through
// finish (ending.go), which decides once what each peer gets and arms an
// abort timer, so no leg stays in CLOSING past CloseTimeout.
type Session struct {
	h        *Handler
	id       string
	log      *zap.Logger
	began    time.Time
	remote   string // client address, for /debug/sessions
	path     string
	client   *leg
	upstream *leg

	stomp *stompState // the STOMP conversation and the liveness engine

	closing   atomic.Bool // the end is decided: forward nothing more
	endOnce   sync.Once
	pumpsLeft atomic.Int32 // the last pump to end tears the session down
	done      func()       // called once the session is torn down

	// Set once by decide, read after finish returned.
	cause         end
	closeDeadline time.Time   // no close handshake, write or linger lasts past it
	abort         *time.Timer // closes both connections at closeDeadline
	byeTimer      *time.Timer // closes the broker leg after stompgate's DISCONNECT; nil: none
	ending        string      // why the session ended, for the log line
	closedBy      string
	abnormal      bool // logged at warn

	// upstreamDiscarded: bytes read from the broker after the end was
	// decided (bounded by maxDiscard).
	upstreamDiscarded atomic.Int64
}

// leg is one WebSocket connection of a session and what happened on it.
type leg struct {
	name  string // "client" or "upstream"
	conn  *wsconn.Conn
	hop   metrics.Hop
	dir   metrics.Direction // the direction of messages read from this peer
	limit int64             // largest message accepted from this peer

	// wmu serialises data messages: pumps, timers and error paths all
	// write, and a message must not be interleaved with another. Control
	// frames (ping, pong, close) go through WriteControl, which wsconn
	// makes safe concurrently.
	wmu sync.Mutex

	// failed is set by the first failed write to this peer, so the failure
	// is acted on once.
	failed atomic.Bool

	msgs, bytes atomic.Int64 // messages and payload bytes read from this peer

	// truncated is set when a message to this peer was cut off mid-stream;
	// from then on only control frames may be written.
	truncated atomic.Bool

	closeSent atomic.Bool
	// Set by finish or the close handler; read after both pumps ended.
	mu                 sync.Mutex
	sentCode, recvCode int
	sentText, recvText string
	lost               bool
}

// newSession makes a session whose legs get their connections from the
// caller, made with the legs' options (see options).
func newSession(h *Handler, subprotocol string, log *zap.Logger, r *http.Request) *Session {
	s := &Session{
		h:        h,
		id:       strconv.FormatUint(rand.Uint64(), 36),
		began:    time.Now(),
		remote:   r.RemoteAddr,
		path:     r.URL.Path,
		client:   &leg{name: "client", hop: metrics.HopClient, limit: h.opts.MaxClientMessageBytes, dir: metrics.ClientToUpstream},
		upstream: &leg{name: "upstream", hop: metrics.HopUpstream, limit: h.opts.MaxUpstreamMessageBytes, dir: metrics.UpstreamToClient},
	}
	s.stomp = newStompStateFor(&h.opts, subprotocol, s.began)
	s.log = log.With(zap.String("session", s.id), zap.String("subprotocol", subprotocol))
	return s
}

// options are the wsconn options of leg l's connection: its write
// timeout, and hooks that answer pings, handle the close frame and keep
// the STOMP stamps (stompOptions).
func (s *Session) options(l *leg) wsconn.Options {
	o := wsconn.Options{
		WriteTimeout: s.h.opts.WriteTimeout,
		OnClose:      s.closeHandler(l),
		OnPing:       func(p []byte) { s.pong(l, p) },
	}
	s.stompOptions(l, &o)
	return o
}

// start runs the session: each pump on its own goroutine (see pumpLoop).
// The last pump to end tears the session down and calls done; nothing
// waits for the pumps, so an idle session costs two goroutines.
func (s *Session) start(done func()) {
	s.startStomp()
	s.done = done
	s.pumpsLeft.Store(2)
	go s.pumpLoop(s.upstream, s.client, s.newPumpState(s.upstream, s.client), false)
	go s.pumpLoop(s.client, s.upstream, s.newPumpState(s.client, s.upstream), false)
}

// respawnAfterWait: a pump that waited this long for its peer moves to a
// fresh goroutine before it waits again. Processing a burst grows a
// goroutine's stack to 4 KiB or more, and Go does not shrink the stack of
// a goroutine parked in a read, so without this every idle session would
// keep two grown stacks; a new goroutine parks in 2 KiB. A busy leg never
// pays for it, an idle one once per heart-beat at most.
//
// It is 3 s, not less, because a move is not free: a goroutine start, and
// a stack that Go frees at the next collection and allocates again. At 1 s
// with 1 s heart-beats nearly every beat moved a pump (9,900 sessions:
// about 10,000 moves a second), and the stacks in use swung by a third
// between collections (make soak, 2026-11-22 09:00). A leg that hears from
// its peer every few seconds is not idle enough to be worth it.
const respawnAfterWait = 3 * time.Second

// pumpState is one direction's forwarding state, carried across the
// goroutines the pump moves to.
type pumpState struct {
	s          *Session
	src, dst   *leg
	handler    func(wsconn.ServeEvent) bool // ps.handle, made once
	respawn    func()                       // pumpLoop on a fresh goroutine, made once: a go statement with arguments allocates
	end        end                          // why the pump ended, when ended
	ended      bool
	limit      int64
	fromClient bool
	d          *dirState // nil: not STOMP
	out        msgWriter
	n          int64 // payload bytes of the current message so far
	mt         int   // its type
	dropping   bool  // the session is closing: read and discard
	msgs       int64 // messages forwarded since the last publish
	bytes      int64 // their payload bytes
}

func (s *Session) newPumpState(src, dst *leg) *pumpState {
	ps := &pumpState{s: s, src: src, dst: dst, limit: src.limit, fromClient: src == s.client}
	ps.handler = ps.handle
	ps.respawn = func() { s.pumpLoop(src, dst, ps, true) }
	if st := s.stomp; st != nil {
		ps.d = &st.fromU
		if ps.fromClient {
			ps.d = &st.fromC
		}
	}
	return ps
}

// pumpLoop forwards src to dst until src's read side ends. It waits for
// input in a shallow frame (src.conn.Serve) and forwards what arrived in
// pumpBuffered (through ps.handle), so that a goroutine that has just
// started can park without growing its stack. fill is false on the first
// call: bytes read with the handshake may already be buffered.
func (s *Session) pumpLoop(src, dst *leg, ps *pumpState, fill bool) {
	if !fill {
		if e, ended := s.pumpBuffered(ps); ended {
			s.pumpEnded(src, e)
			return
		}
	}
	if err := src.conn.Serve(ps.handler); err != nil {
		ps.out.abandon()
		s.pumpEnded(src, classify(src, err))
		return
	}
	if ps.ended {
		s.pumpEnded(src, ps.end)
		return
	}
	go ps.respawn()
}

// handle is the pump's Serve handler: it forwards what was read, and stops
// Serve when src's read side ended or the pump should move to a fresh
// goroutine. Coalescing: what it forwarded is flushed when src's reader
// is about to wait for more input (Parking), so the messages of one read
// leave in one write.
func (ps *pumpState) handle(ev wsconn.ServeEvent) bool {
	if ev == wsconn.Parking {
		ps.s.flush(ps.dst, ps.src.conn.LastReadAt())
		return false
	}
	if e, ended := ps.s.pumpBuffered(ps); ended {
		ps.end, ps.ended = e, true
		return true
	}
	return ps.src.conn.LastWait() >= respawnAfterWait
}

// pumpBuffered forwards the message pieces already read from src, without
// reading more. Each piece is a slice of src's read buffer, copied once
// into dst's write buffer, which is flushed when src is about to wait for
// more input (see handle). Text stays text and binary stays binary.
// STOMP sessions are scanned on the way (see filter). ended is true when
// src's read side ended; a failed write to dst finishes the session but
// the pump keeps reading src, so that src's close handshake can complete.
func (s *Session) pumpBuffered(ps *pumpState) (e end, ended bool) {
	e, ended = s.pumpPieces(ps)
	ps.publish()
	return e, ended
}

// publish adds the messages and frames counted since the last call to the
// leg's counters and the metrics: once per read, not per message, as each
// is an atomic add (on counters all sessions share, for the metrics).
func (ps *pumpState) publish() {
	if ps.msgs > 0 {
		ps.src.msgs.Add(ps.msgs)
		ps.src.bytes.Add(ps.bytes)
		ps.s.h.metrics.Messages(ps.src.dir, ps.msgs, ps.bytes)
		ps.msgs, ps.bytes = 0, 0
	}
	if ps.d != nil {
		ps.s.publishFrames(ps.d)
	}
}

// pumpPieces is pumpBuffered's loop.
func (s *Session) pumpPieces(ps *pumpState) (e end, ended bool) {
	src, dst, d := ps.src, ps.dst, ps.d
	for {
		p, ok, err := src.conn.TryPiece()
		if err != nil {
			ps.out.abandon()
			return classify(src, err), true
		}
		if !ok {
			return end{}, false
		}
		if p.First() {
			ps.n, ps.mt = 0, p.Type
			ps.out = msgWriter{s: s, dst: dst, mt: p.Type, discard: ps.dropping}
			// A message sent as one frame declares its size: one over the
			// limit is refused before any of it is forwarded, so the
			// client can still get a STOMP ERROR.
			if p.Size > ps.limit {
				return end{leg: src, kind: endTooBig}, true
			}
		}
		ps.n += int64(len(p.Data))
		if ps.n > ps.limit {
			ps.out.abandon()
			return end{leg: src, kind: endTooBig}, true
		}
		if !ps.dropping && s.closing.Load() {
			// The end is decided: nothing more is forwarded, a message
			// under way included (dst gets a close frame in its middle).
			ps.out.abandon()
			ps.dropping, ps.out.discard = true, true
		}
		if ps.dropping {
			if !ps.fromClient {
				// Read only what it takes to see the broker's RECEIPT or
				// close; a flood beyond that stays unread (maxDiscard).
				if n := s.upstreamDiscarded.Add(int64(len(p.Data))); n > maxDiscard {
					return end{leg: src, kind: endLost, err: errDiscardLimit}, true
				}
			}
			if d == nil || s.stomp.disabled.Load() || ps.fromClient || s.stomp.ourReceipt.Load() == nil {
				continue
			}
			// Scanned, not forwarded: stompgate's RECEIPT ends its goodbye.
		}
		var rerr error
		if len(p.Data) > 0 {
			// The broker speaks only after CONNECT: before it, upstream
			// bytes are not STOMP's business.
			if d != nil && !s.stomp.disabled.Load() && (ps.fromClient || s.stomp.connectSeen.Load()) {
				rerr = s.filter(d, ps.fromClient, p.Data, &ps.out)
			} else {
				ps.out.writeChunk(p.Data)
			}
		}
		if !p.Last() && rerr == nil {
			ps.out.flushPending() // p.Data is gone after the next TryPiece
			continue
		}
		held := false
		if rerr == nil && ps.fromClient && d != nil && !s.stomp.disabled.Load() {
			held, rerr = s.endOfClientMessage(d, &ps.out)
		}
		if !ps.dropping {
			ps.msgs++
			ps.bytes += ps.n
		}
		if rerr != nil {
			// Never complete a truncated message: dst gets a close frame
			// in the middle of it instead (legal, RFC 6455 §5.4) and no
			// further data.
			ps.out.abandon()
			var ie *inspect.Error
			var pe *protocolError
			switch {
			case errors.As(rerr, &ie):
				code := websocket.CloseProtocolError
				if !errors.Is(ie, inspect.ErrSyntax) && !errors.Is(ie, inspect.ErrInvalidHeader) {
					code = websocket.CloseMessageTooBig
				}
				return end{leg: src, kind: endProtocol, code: code, text: ie.Msg, err: ie}, true
			case errors.As(rerr, &pe):
				return end{leg: src, kind: endProtocol, code: pe.code, text: pe.msg, err: pe}, true
			}
			return classify(src, rerr), true
		}
		// An empty message is forwarded as one, unless it is a STOMP
		// direction whose heart-beats stompgate consumes (terminate).
		if ps.n == 0 && !held && (d == nil || s.stomp.disabled.Load() || s.stomp.mode != keepalive.Terminate || (!ps.fromClient && !s.stomp.connectSeen.Load())) {
			ps.out.empty()
		}
		written, werr := ps.out.finish(d)
		if written && s.stomp != nil {
			last := &s.stomp.lastTypeToClient
			if ps.fromClient {
				last = &s.stomp.lastTypeToUp
			}
			if last.Load() != int32(ps.mt) { // as midFrame: store only a change
				last.Store(int32(ps.mt))
			}
		}
		if werr != nil {
			s.writeFailed(dst, werr)
		}
	}
}

// flush sends what the pumps buffered for l; called by the other leg's
// reader before it waits for input, with the time of that leg's last read
// (close enough to now for a write deadline and a liveness stamp, and one
// clock read fewer per message).
func (s *Session) flush(l *leg, now int64) {
	if err := l.conn.FlushAt(now); err != nil {
		s.writeFailed(l, err)
	}
}

// msgWriter writes one message to dst, opening it (and taking dst's write
// lock) only when there is something to write: a message made only of
// consumed heart-beats produces nothing, and dst's lock is not held while
// src is idle.
type msgWriter struct {
	s    *Session
	dst  *leg
	mt   int
	open bool
	err  error
	// discard: the session's end is decided; nothing is written.
	discard bool
	// pend is the bytes written but not yet handed to dst's connection:
	// the scanner reports a frame as several contiguous ranges of the
	// chunk, which are joined here into one Write. It aliases src's read
	// buffer, so it is handed over (flushPending) before the pump reads on.
	pend []byte
}

func (m *msgWriter) begin() bool {
	if m.err != nil || m.discard {
		return false
	}
	if m.open {
		return true
	}
	m.dst.wmu.Lock()
	if m.dst.truncated.Load() {
		m.dst.wmu.Unlock()
		m.err = errors.New("a message to this peer was cut off")
		return false
	}
	m.dst.conn.BeginMessage(m.mt)
	m.open = true
	return true
}

// writeChunk writes a range of the chunk being forwarded (src's read
// buffer, unchanged until the pump reads on): it may be kept in pend.
func (m *msgWriter) writeChunk(b []byte) {
	if len(b) == 0 || !m.begin() {
		return
	}
	if n := len(m.pend); n > 0 && cap(m.pend)-n >= len(b) && &m.pend[:n+1][n] == &b[0] {
		m.pend = m.pend[:n+len(b)] // b follows pend in the chunk
		return
	}
	m.flushPending()
	m.pend = b
}

// write writes bytes from any other buffer (held or rewritten frames,
// which are reused afterwards): they are handed over at once.
func (m *msgWriter) write(b []byte) {
	if len(b) == 0 || !m.begin() {
		return
	}
	m.flushPending()
	if m.open {
		if err := m.dst.conn.Write(b); err != nil {
			m.fail(err)
		}
	}
}

// flushPending hands pend to dst's connection.
func (m *msgWriter) flushPending() {
	if len(m.pend) == 0 {
		return
	}
	b := m.pend
	m.pend = nil
	if !m.open {
		return
	}
	if err := m.dst.conn.Write(b); err != nil {
		m.fail(err)
	}
}

func (m *msgWriter) fail(err error) {
	m.err = err
	m.pend = nil
	m.dst.conn.AbandonMessage()
	m.open = false
	m.dst.wmu.Unlock()
}

// empty forwards an empty message.
func (m *msgWriter) empty() { m.begin() }

// finish completes the message (it is sent with the next flush) and
// records whether dst's direction is in the middle of a STOMP frame,
// before releasing the lock, so heart-beat emitters never slip an EOL into
// a frame.
func (m *msgWriter) finish(d *dirState) (written bool, err error) {
	if d != nil {
		// Stored only when it changes: an atomic store is a locked
		// instruction, and this runs once per message.
		if mid := d.scan.InFrame(); d.midFrame.Load() != mid {
			d.midFrame.Store(mid)
		}
	}
	if !m.open {
		return false, m.err
	}
	b := m.pend
	m.pend = nil
	err = m.dst.conn.WriteEnd(b)
	m.open = false
	m.dst.wmu.Unlock()
	return err == nil, err
}

// abandon gives up a message half written: dst may only get control frames
// from now on.
func (m *msgWriter) abandon() {
	m.pend = nil
	if m.open {
		m.dst.conn.AbandonMessage()
		m.dst.truncated.Store(true)
		m.open = false
		m.dst.wmu.Unlock()
	}
}

func classify(l *leg, err error) end {
	var pe *wsconn.ProtocolError
	if errors.As(err, &pe) {
		return end{leg: l, kind: endProtocol, code: websocket.CloseProtocolError, text: pe.Msg, err: err, websocket: true}
	}
	var ce *websocket.CloseError
	// gorilla reports a TCP connection that ended without a close frame as
	// a CloseError 1006: that peer is lost, it did not close.
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		return end{leg: l, kind: endClosed, code: ce.Code, text: ce.Text, err: err}
	}
	return end{leg: l, kind: endLost, err: err}
}
