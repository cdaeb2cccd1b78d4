package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
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
// session down (pumpEnded). Every path that ends a pump goes through
// finish, which sends the close frames once and arms an abort timer, so no
// leg stays in CLOSING past CloseTimeout.
type Session struct {
	h        *Handler
	id       string
	log      *zap.Logger
	began    time.Time
	remote   string // client address, for /debug/sessions
	path     string
	client   *leg
	upstream *leg

	stomp *stompState // nil: not STOMP (or not decided to be)

	closing   atomic.Bool
	closeOnce sync.Once
	pumpsLeft atomic.Int32 // the last pump to end tears the session down
	done      func()       // called once the session is torn down
	abort     *time.Timer
	ending    string // why the session ended, set once in finish
	closedBy  string
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

func newSession(h *Handler, client, upstream *wsconn.Conn, log *zap.Logger, r *http.Request) *Session {
	s := &Session{
		h:        h,
		id:       strconv.FormatUint(rand.Uint64(), 36),
		began:    time.Now(),
		remote:   r.RemoteAddr,
		path:     r.URL.Path,
		client:   &leg{name: "client", conn: client, hop: metrics.HopClient, limit: h.opts.MaxClientMessageBytes, dir: metrics.ClientToUpstream},
		upstream: &leg{name: "upstream", conn: upstream, hop: metrics.HopUpstream, limit: h.opts.MaxUpstreamMessageBytes, dir: metrics.UpstreamToClient},
	}
	s.stomp = newStompStateFor(&h.opts, client.Subprotocol(), s.began)
	s.log = log.With(zap.String("session", s.id), zap.String("subprotocol", client.Subprotocol()))
	for _, l := range []*leg{s.client, s.upstream} {
		l.conn.OnClose = s.closeHandler(l)
		l.conn.OnPing = func(p []byte) { s.pong(l, p) }
		l.conn.WriteTimeout = h.opts.WriteTimeout
	}
	// Coalescing: what a pump forwards is flushed when the pump is about
	// to wait for more input, so the messages of one read leave in one
	// write.
	s.client.conn.BeforeRead = func() { s.flush(s.upstream, s.client.conn.LastReadAt()) }
	s.upstream.conn.BeforeRead = func() { s.flush(s.client, s.upstream.conn.LastReadAt()) }
	return s
}

// closeHandler records the peer's close frame and, when stompgate has not
// closed that leg yet, echoes the code as RFC 6455 §5.5.1 requires.
func (s *Session) closeHandler(l *leg) func(int, string) {
	return func(code int, text string) {
		l.mu.Lock()
		l.recvCode, l.recvText = code, text
		l.mu.Unlock()
		if l.closeSent.CompareAndSwap(false, true) {
			l.mu.Lock()
			l.sentCode = code
			l.mu.Unlock()
			payload := websocket.FormatCloseMessage(code, "")
			if code == websocket.CloseNoStatusReceived {
				payload = nil
			}
			_ = l.conn.WriteControl(websocket.CloseMessage, payload, time.Now().Add(s.h.opts.CloseTimeout))
		}
	}
}

func (s *Session) other(l *leg) *leg {
	if l == s.client {
		return s.upstream
	}
	return s.client
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

// pumpEnded finishes what one pump's end requires, and tears the session
// down when it was the last.
func (s *Session) pumpEnded(src *leg, e end) {
	if e.kind == endLost && src == s.client {
		// The broker gets a DISCONNECT first, so it drops the client's
		// subscriptions now rather than at its own timeout.
		s.clientGone(e)
	}
	s.finish(e)
	_ = src.conn.Close()
	if s.pumpsLeft.Add(-1) > 0 {
		return
	}
	s.stopTimer()
	if s.abort != nil {
		s.abort.Stop()
	}
	s.client.conn.Release()
	s.upstream.conn.Release()
	s.logEnd()
	s.done()
}

// end describes why a pump stopped.
type end struct {
	leg  *leg   // the leg the event happened on
	kind int    // endClosed, endLost, endTooBig
	code int    // close code received (endClosed)
	text string // close reason received (endClosed)
	err  error
	// websocket: an endProtocol broke RFC 6455 rather than STOMP.
	websocket bool
}

const (
	endClosed       = iota // the peer sent a close frame
	endLost                // the peer's TCP/TLS connection failed
	endTooBig              // the peer sent a message over MaxMessageBytes
	endDead                // the liveness engine declared the peer dead (text: verdict)
	endDisconnected        // the client's DISCONNECT was acknowledged
	endProtocol            // the peer sent STOMP stompgate cannot carry (code, text)
)

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
	handler    func() bool // ps.handle, made once
	respawn    func()      // pumpLoop on a fresh goroutine, made once: a go statement with arguments allocates
	end        end         // why the pump ended, when ended
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
// goroutine.
func (ps *pumpState) handle() bool {
	if e, ended := ps.s.pumpBuffered(ps); ended {
		ps.end, ps.ended = e, true
		return true
	}
	return ps.src.conn.LastWait() >= respawnAfterWait
}

// pumpBuffered forwards the message pieces already read from src, without
// reading more. Each piece is a slice of src's read buffer, copied once
// into dst's write buffer, which is flushed when src is about to wait for
// more input (see newSession). Text stays text and binary stays binary.
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
			ps.dropping = s.closing.Load()
			ps.out = msgWriter{s: s, dst: dst, mt: p.Type}
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
		if ps.dropping {
			continue
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
		if rerr == nil && ps.fromClient && d != nil && !s.stomp.disabled.Load() {
			rerr = s.endOfClientMessage(d, &ps.out)
		}
		ps.msgs++
		ps.bytes += ps.n
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
		if ps.n == 0 && (d == nil || s.stomp.disabled.Load() || s.stomp.mode != keepalive.Terminate) {
			ps.out.empty() // an empty message is forwarded as one
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

// writeFailed acts, once, on a failed write to l.
func (s *Session) writeFailed(l *leg, err error) {
	if !l.failed.CompareAndSwap(false, true) {
		return
	}
	e := end{leg: l, kind: endLost, err: err}
	if l == s.client && !s.closing.Load() {
		// A client that stopped reading is as gone as one whose TCP
		// died: the broker gets its DISCONNECT. In its own goroutine,
		// because the upstream pump must keep reading to see the RECEIPT;
		// it ends within CloseTimeout, by calling finish.
		go s.clientGone(e)
		return
	}
	s.finish(e)
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
	// pend is the bytes written but not yet handed to dst's connection:
	// the scanner reports a frame as several contiguous ranges of the
	// chunk, which are joined here into one Write. It aliases src's read
	// buffer, so it is handed over (flushPending) before the pump reads on.
	pend []byte
}

func (m *msgWriter) begin() bool {
	if m.err != nil {
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

// finish decides, once, how both legs are closed. The first event wins: a
// close frame is forwarded with its code and reason (reserved codes mapped),
// a lost connection becomes 1011 naming the lost side, an oversized message
// gets 1009 with a reason. Then every leg has CloseTimeout to finish its
// handshake before its TCP connection is aborted.
func (s *Session) finish(e end) {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		other := s.other(e.leg)
		limit := e.leg.limit
		switch e.kind {
		case endClosed:
			s.closedBy = e.leg.name
			s.ending = e.leg.name + " closed"
			code, text := mapCloseCode(e.code, e.text)
			if e.leg == s.upstream {
				// A STOMP client whose broker went away without an ERROR
				// is told why; the close code itself is kept.
				s.tellClient(describeClose(e.code, e.text))
			}
			s.sendClose(other, code, text)
		case endLost:
			s.closedBy = e.leg.name
			s.ending = e.leg.name + " connection lost"
			if e.err != nil {
				s.ending += ": " + e.err.Error()
			}
			e.leg.mu.Lock()
			e.leg.lost = true
			e.leg.mu.Unlock()
			e.leg.closeSent.Store(true) // nothing can be sent on a dead leg
			_ = e.leg.conn.Close()
			reason := lostReason(e.leg.name, e.err)
			if e.leg == s.upstream {
				s.tellClient(reason)
			}
			s.sendClose(other, websocket.CloseInternalServerErr, reason)
		case endTooBig:
			s.closedBy = "proxy"
			s.ending = fmt.Sprintf("%s sent a message over %d bytes", e.leg.name, limit)
			if e.leg == s.upstream {
				s.tellClient(s.ending)
			} else {
				s.tellClient(fmt.Sprintf("message exceeds %d bytes", limit))
			}
			s.sendClose(e.leg, websocket.CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", limit))
			code := websocket.CloseInternalServerErr
			if other == s.upstream {
				code = websocket.CloseGoingAway
			}
			s.sendClose(other, code, fmt.Sprintf("%s sent a message over %d bytes", e.leg.name, limit))
		case endDead:
			s.closedBy = "proxy"
			s.ending = e.text
			if e.leg == s.upstream {
				s.tellClient(e.text)
				s.sendClose(s.client, websocket.CloseInternalServerErr, e.text)
				s.sendClose(s.upstream, websocket.CloseInternalServerErr, e.text)
			} else {
				s.sendClose(s.client, websocket.CloseInternalServerErr, e.text)
				code := websocket.CloseGoingAway
				if s.stomp != nil && s.stomp.disconnectSent.Load() {
					code = websocket.CloseNormalClosure
				}
				s.sendClose(s.upstream, code, "client gone: "+e.text)
			}
		case endDisconnected:
			s.closedBy = "client"
			s.ending = "client disconnected"
			s.sendClose(s.client, websocket.CloseNormalClosure, "")
			s.sendClose(s.upstream, websocket.CloseNormalClosure, "")
		case endProtocol:
			s.closedBy = "proxy"
			what := "STOMP"
			if e.websocket {
				what = "WebSocket frames"
			}
			if e.leg == s.client {
				s.ending = "client sent invalid " + what + ": " + e.text
				if !e.websocket {
					s.writeFrame(s.client, nil, errorFrame(s.versionOr(), e.text), websocket.TextMessage)
				}
				s.sendClose(s.client, e.code, e.text)
				s.sendClose(s.upstream, websocket.CloseGoingAway, "client sent invalid "+what)
			} else {
				s.ending = "upstream sent invalid " + what + ": " + e.text
				msg := "upstream sent invalid " + what + " (" + e.text + ")"
				s.tellClient(msg)
				s.sendClose(s.client, websocket.CloseInternalServerErr, msg)
				s.sendClose(s.upstream, e.code, e.text)
			}
		}
		if e.kind != endClosed && e.kind != endLost {
			s.log.Info("closing session", zap.String("reason", s.ending))
		}
		s.armAbort()
	})
}

// versionOr is the negotiated STOMP version, for escaping stompgate's own
// ERROR frames.
func (s *Session) versionOr() inspect.Version {
	if s.stomp != nil {
		return s.stomp.negotiatedVersion()
	}
	return inspect.VersionUnknown
}

// sendClose sends one close frame on l unless one was already sent.
func (s *Session) sendClose(l *leg, code int, text string) {
	if !l.closeSent.CompareAndSwap(false, true) {
		return
	}
	if len(text) > 123 { // RFC 6455 §5.5: control payload ≤ 125 bytes
		text = text[:123]
	}
	l.mu.Lock()
	l.sentCode, l.sentText = code, text
	l.mu.Unlock()
	_ = l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(s.h.opts.CloseTimeout))
}

// mapCloseCode turns a close received from one leg into what the other leg
// gets: 1005 (the frame had no code) is sent as 1000, as a close frame may
// not carry 1005 (RFC 6455 §7.4.1). The other codes that may not travel,
// 1006 and 1015, never get here: wsconn rejects a close frame carrying
// them as a protocol error, and a connection gone without a close frame is
// lost (classify), not closed.
func mapCloseCode(code int, text string) (int, string) {
	if code == websocket.CloseNoStatusReceived {
		return websocket.CloseNormalClosure, ""
	}
	return code, text
}

func lostReason(name string, err error) string {
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	if errors.As(err, &rh) || errors.As(err, &ae) {
		return name + " TLS failure"
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return name + " write timed out"
	}
	return name + " connection lost"
}

func (s *Session) logEnd() {
	fields := []zap.Field{
		zap.Duration("duration", time.Since(s.began)),
		zap.Int64("client_messages", s.client.msgs.Load()),
		zap.Int64("client_bytes", s.client.bytes.Load()),
		zap.Int64("upstream_messages", s.upstream.msgs.Load()),
		zap.Int64("upstream_bytes", s.upstream.bytes.Load()),
		zap.String("closed_by", s.closedBy),
		zap.String("end", s.ending),
	}
	fields = append(fields, s.stompFields()...)
	s.h.metrics.SessionDuration.Observe(time.Since(s.began).Seconds())
	for _, l := range []*leg{s.client, s.upstream} {
		code, text := l.closeCode(l.name == s.closedBy)
		s.h.metrics.Close(l.hop, code)
		fields = append(fields, zap.Int(l.name+"_close_code", code), zap.String(l.name+"_close_reason", text))
	}
	s.log.Info("session ended", fields...)
}

// closeCode is the code that ended this leg: the peer's if it closed first
// (or the leg was lost: 1006), stompgate's otherwise.
func (l *leg) closeCode(initiator bool) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost:
		return websocket.CloseAbnormalClosure, "connection lost"
	case initiator && l.recvCode != 0:
		return l.recvCode, l.recvText
	case l.sentCode != 0:
		return l.sentCode, l.sentText
	}
	return l.recvCode, l.recvText
}

// closeConn closes a gorilla connection that never became a session,
// politely and within timeout.
func closeConn(c *websocket.Conn, code int, text string, timeout time.Duration) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(timeout))
	_ = c.Close()
}

// shutdown closes both legs with code and reason on stompgate's initiative.
func (s *Session) shutdown(code int, reason string) {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.closedBy = "proxy"
		s.ending = reason
		s.sendClose(s.client, code, reason)
		s.sendClose(s.upstream, code, reason)
		s.armAbort()
	})
}

// armAbort gives both legs CloseTimeout to complete their close handshakes,
// then aborts their TCP connections.
func (s *Session) armAbort() {
	deadline := time.Now().Add(s.h.opts.CloseTimeout)
	_ = s.client.conn.SetReadDeadline(deadline)
	_ = s.upstream.conn.SetReadDeadline(deadline)
	s.abort = time.AfterFunc(s.h.opts.CloseTimeout, func() {
		_ = s.client.conn.Close()
		_ = s.upstream.conn.Close()
	})
}
