package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/stompflow"
)

// How a session ends. Whatever ends a session calls finish with what
// happened (an end); the first end decided is the cause, and decide alone
// turns it into what each peer gets (a STOMP ERROR, a DISCONNECT, a close
// code), who is said to have closed, the log level and the metrics.
// docs/architecture.md, "How a session ends", gives the same table.

// endKind says what happened.
type endKind uint8

const (
	endClosed       endKind = iota // the peer sent a close frame (code, text)
	endLost                        // the peer's connection failed, or a write to it did
	endTooBig                      // the peer sent a message over its limit
	endDead                        // the liveness engine declared the peer dead (text: verdict)
	endDisconnected                // the client's DISCONNECT was acknowledged (ack: by what)
	endProtocol                    // the peer broke STOMP or RFC 6455 (code, text, websocket)
	endDrain                       // stompgate is draining
	endShutdown                    // Handler.CloseAll (code, text)
	endRefused                     // strict mode: the session is not STOMP (text)
)

// end describes one event that can end a session.
type end struct {
	leg  *leg // the leg it happened on; nil for stompgate's own decisions
	kind endKind
	code int    // close code received (endClosed) or to send (endProtocol, endShutdown)
	text string // its reason, or the verdict (endDead)
	err  error
	// websocket: an endProtocol broke RFC 6455 rather than STOMP.
	websocket bool
	// ack: for endDisconnected, the peer event that answered the client's
	// DISCONNECT, when it was not stompgate's RECEIPT.
	ack *end
}

// maxDiscard bounds what stompgate reads from the broker once it decided
// the session ends: enough to see its RECEIPT or close frame, without
// consuming (and so losing, with auto-ack subscriptions) a flood of
// messages nobody will receive.
const maxDiscard = 1 << 20

var errDiscardLimit = errors.New("read 1 MiB from the broker after the session's end was decided")

// finish ends the session for e, unless an earlier end was already
// decided. It never waits for a peer: what must wait (the broker's answer
// to stompgate's DISCONNECT, the close handshakes) is bounded by
// CloseTimeout and completed by the pumps, a timer and the abort timer.
func (s *Session) finish(e end) {
	s.endOnce.Do(func() { s.decide(s.attribute(e)) })
}

// attribute names the cause that came first. Once the client's DISCONNECT
// went to the broker, the broker closing or dropping the connection
// answers it (RabbitMQ closes with 1000 "STOMP died" and sends no
// RECEIPT), and so does the broker falling silent (Spring's broker stops
// its heart-beats there) or the client leaving, even without a close (a
// SockJS polling client stops polling): the session ended because the
// client disconnected.
func (s *Session) attribute(e end) end {
	if !s.conv.ClientDisconnected() || (e.kind != endClosed && e.kind != endLost && e.kind != endDead) {
		return e
	}
	ack := e
	return end{leg: s.client, kind: endDisconnected, ack: &ack}
}

// decide carries out the cause e, once. From here on the pumps forward
// nothing: each reads (and discards) until its peer's close frame, within
// CloseTimeout, after which both connections are aborted.
func (s *Session) decide(e end) {
	s.closing.Store(true)
	s.conv.End()
	s.cause = e
	deadline := time.Now().Add(s.h.opts.CloseTimeout)
	s.closeDeadline = deadline
	for _, l := range []*leg{s.client, s.upstream} {
		// No write, a blocked one included, outlives the close timeout.
		l.conn.SetCloseDeadline(deadline)
		_ = l.conn.SetReadDeadline(deadline)
	}
	s.abort = time.AfterFunc(s.h.opts.CloseTimeout, func() {
		_ = s.client.conn.Close()
		_ = s.upstream.conn.Close()
	})

	client, upstream := s.client, s.upstream
	s.closedBy, s.abnormal = "proxy", true
	switch e.kind {
	case endClosed:
		s.closedBy = e.leg.name
		s.ending = e.leg.name + " closed"
		s.abnormal = !normalClose(e.code)
		code, text := mapCloseCode(e.code, e.text)
		if e.leg == upstream {
			// A STOMP client whose broker went away without an ERROR is
			// told why; the close code itself is kept.
			s.tellClient(describeClose(e.code, e.text))
			s.sendClose(client, code, text)
		} else {
			s.sendClose(upstream, code, text)
		}
	case endLost:
		s.closedBy = e.leg.name
		s.ending = e.leg.name + " connection lost"
		if e.err != nil {
			s.ending += ": " + e.err.Error()
		}
		s.markLost(e.leg)
		reason := lostReason(e.leg.name, e.err)
		if e.leg == upstream {
			s.tellClient(reason)
			s.sendClose(client, websocket.CloseInternalServerErr, reason)
		} else {
			s.goodbye(websocket.CloseInternalServerErr, reason)
		}
	case endTooBig:
		limit := e.leg.limit
		s.ending = fmt.Sprintf("%s sent a message over %d bytes", e.leg.name, limit)
		if e.leg == upstream {
			s.tellClient(s.ending)
			s.sendClose(upstream, websocket.CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", limit))
			s.sendClose(client, websocket.CloseInternalServerErr, s.ending)
		} else {
			s.tellClient(fmt.Sprintf("message exceeds %d bytes", limit))
			s.sendClose(client, websocket.CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", limit))
			s.sendClose(upstream, websocket.CloseGoingAway, s.ending)
		}
	case endDead:
		s.ending = e.text
		if e.leg == upstream {
			s.tellClient(e.text)
			s.sendClose(client, websocket.CloseInternalServerErr, e.text)
			s.sendClose(upstream, websocket.CloseInternalServerErr, e.text)
		} else {
			s.sendClose(client, websocket.CloseInternalServerErr, e.text)
			s.goodbye(websocket.CloseGoingAway, "client gone: "+e.text)
		}
	case endDisconnected:
		s.closedBy, s.abnormal = "client", false
		s.ending = "client disconnected"
		if e.ack != nil && e.ack.kind == endLost {
			s.markLost(e.ack.leg)
		}
		s.sendClose(client, websocket.CloseNormalClosure, "")
		s.sendClose(upstream, websocket.CloseNormalClosure, "")
	case endProtocol:
		what := "STOMP"
		if e.websocket {
			what = "WebSocket frames"
		}
		if e.leg == client {
			s.ending = "client sent invalid " + what + ": " + e.text
			if !e.websocket {
				// Even before CONNECT went through: a bad first frame
				// deserves its ERROR too.
				s.client.writeFrame(stompflow.ErrorFrame(s.conv.Version(), e.text), s.h.opts.CloseTimeout)
			}
			s.sendClose(client, e.code, e.text)
			s.sendClose(upstream, websocket.CloseGoingAway, "client sent invalid "+what)
		} else {
			s.ending = "upstream sent invalid " + what + ": " + e.text
			msg := "upstream sent invalid " + what + " (" + e.text + ")"
			s.tellClient(msg)
			s.sendClose(client, websocket.CloseInternalServerErr, msg)
			s.sendClose(upstream, e.code, e.text)
		}
	case endDrain:
		s.abnormal = false
		s.ending = "drain: " + DrainMessage
		s.tellClient(DrainMessage)
		s.sendClose(client, CloseServiceRestart, DrainMessage)
		s.goodbye(websocket.CloseGoingAway, "stompgate draining")
	case endShutdown:
		s.abnormal = false
		s.ending = e.text
		s.sendClose(client, e.code, e.text)
		s.sendClose(upstream, e.code, e.text)
	case endRefused:
		s.ending = e.text
		s.sendClose(client, websocket.CloseProtocolError, e.text)
		s.sendClose(upstream, websocket.CloseGoingAway, "client refused by stompgate")
	}
	s.log.Debug("closing session", zap.String("reason", s.ending))
}

// normalClose: the close codes of a peer that meant to end the session.
func normalClose(code int) bool {
	return code == websocket.CloseNormalClosure || code == websocket.CloseGoingAway || code == websocket.CloseNoStatusReceived
}

// markLost records that nothing can be sent on l any more, and closes it.
func (s *Session) markLost(l *leg) {
	l.mu.Lock()
	l.lost = true
	l.mu.Unlock()
	l.closeSent.Store(true)
	_ = l.conn.Close()
}

// goodbye ends the broker leg for a client that is gone (or stompgate
// going away): a broker that sent CONNECTED gets a DISCONNECT with a
// receipt first, so it drops the client's subscriptions at once, and then
// a close 1000 when its RECEIPT arrives (flowEvents.OwnReceipt), or at half
// the close timeout without one, leaving the other half to the close
// handshake.
// The broker closing first ends the wait too (closeHandler echoes it).
// Without a DISCONNECT the broker gets code and text at once.
func (s *Session) goodbye(code int, text string) {
	receipt := "stompgate-gone-" + s.id
	if s.cause.kind == endDrain {
		receipt = "stompgate-drain-" + s.id
	}
	// byeText is set before the DISCONNECT can be answered, and read after.
	s.byeText = text
	frame, ok := s.conv.Goodbye(receipt)
	if !ok || !s.upstream.writeFrame(frame, s.h.opts.CloseTimeout) {
		s.sendClose(s.upstream, code, text)
		return
	}
	s.conv.GoodbyeSent()
	s.byeTimer = time.AfterFunc(s.h.opts.CloseTimeout/2, s.goodbyeDone)
}

// goodbyeDone closes the broker leg after stompgate's DISCONNECT.
func (s *Session) goodbyeDone() {
	s.sendClose(s.upstream, websocket.CloseNormalClosure, s.byeText)
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

// writeFailed acts, once, on a failed write to l: the peer is lost (a
// peer that stopped reading is as gone as one whose TCP died).
func (s *Session) writeFailed(l *leg, err error) {
	if !l.failed.CompareAndSwap(false, true) {
		return
	}
	s.finish(end{leg: l, kind: endLost, err: err})
}

// pumpEnded finishes what one pump's end requires, and tears the session
// down when it was the last.
func (s *Session) pumpEnded(src *leg, e end) {
	s.finish(e)
	if (e.kind == endTooBig || e.kind == endProtocol) && e.leg == src {
		// The peer is still sending: closing now, with its input unread,
		// would answer with a TCP reset, and its kernel would drop the
		// ERROR and close frame just sent before the peer read them.
		// Read and discard until it closes (a lingering close).
		var limit int64
		if src == s.upstream {
			limit = maxDiscard
		}
		_ = src.conn.Linger(s.closeDeadline, limit)
	} else {
		_ = src.conn.Close()
	}
	if s.pumpsLeft.Add(-1) > 0 {
		return
	}
	s.live.stop()
	s.abort.Stop()
	if s.byeTimer != nil {
		s.byeTimer.Stop()
	}
	s.client.conn.Release()
	s.upstream.conn.Release()
	s.logEnd()
	s.done()
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

func describeClose(code int, text string) string {
	if code == websocket.CloseNoStatusReceived {
		return "upstream closed the connection without a status code"
	}
	if text == "" {
		return fmt.Sprintf("upstream closed the connection with %d", code)
	}
	return fmt.Sprintf("upstream closed the connection with %d (%s)", code, text)
}

// logEnd writes the session's one line, at warn when it ended abnormally
// (a peer lost, a liveness verdict, a timeout, a protocol error, a limit,
// an unusual close code), and counts its closes.
func (s *Session) logEnd() {
	fields := []zap.Field{
		zap.Duration("duration", time.Since(s.began)),
		zap.String("transport", s.transport),
		zap.Int64("client_messages", s.client.msgs.Load()),
		zap.Int64("client_bytes", s.client.bytes.Load()),
		zap.Int64("upstream_messages", s.upstream.msgs.Load()),
		zap.Int64("upstream_bytes", s.upstream.bytes.Load()),
		zap.String("closed_by", s.closedBy),
		zap.String("end", s.ending),
	}
	if n := s.upstreamDiscarded.Load(); n > 0 {
		fields = append(fields, zap.Int64("upstream_discarded_bytes", n))
	}
	fields = append(fields, s.stompFields()...)
	s.h.metrics.SessionDuration.Observe(time.Since(s.began).Seconds())
	for _, l := range []*leg{s.client, s.upstream} {
		code, text := l.closeCode(l.name == s.closedBy)
		s.h.metrics.Close(l.hop, code)
		fields = append(fields, zap.Int(l.name+"_close_code", code), zap.String(l.name+"_close_reason", text))
	}
	level := zapcore.InfoLevel
	if s.abnormal {
		level = zapcore.WarnLevel
	}
	s.log.Log(level, "session ended", fields...)
}

// closeConn closes a gorilla connection that never became a session,
// politely and within timeout.
func closeConn(c *websocket.Conn, code int, text string, timeout time.Duration) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(timeout))
	_ = c.Close()
}

// shutdown closes both legs with code and reason on stompgate's initiative.
func (s *Session) shutdown(code int, reason string) {
	s.finish(end{kind: endShutdown, code: code, text: reason})
}

// drainClose ends a session because stompgate is going away: the STOMP
// client is told why and may reconnect at once (1012), the broker gets a
// DISCONNECT so it drops the subscriptions now. Nothing from either peer is
// forwarded after the decision, so the broker's answer to the DISCONNECT
// (Spring sends ERROR "Session closed." without a receipt) never reaches
// the client.
func (s *Session) drainClose() { s.finish(end{kind: endDrain}) }

// refuse closes a session stompgate will not carry (strict mode).
func (s *Session) refuse(reason string) { s.finish(end{kind: endRefused, text: reason}) }

// tellClient sends the client a STOMP ERROR before stompgate closes it, when
// the client is speaking STOMP and would otherwise see only a close code.
func (s *Session) tellClient(message string) {
	if !s.conv.ClaimError() {
		return
	}
	s.client.writeFrame(stompflow.ErrorFrame(s.conv.Version(), message), s.h.opts.CloseTimeout)
}
