package proxy

import (
	"errors"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/stompflow"
)

// respawnAfterWait: a pump that waited this long for its peer moves to a
// fresh goroutine before it waits again, so that an idle session does not
// keep the stacks a burst grew (Go does not shrink the stack of a
// goroutine parked in a read). Not less, because a move is not free
// (docs/internals/hot-path.md#respawn-after-wait).
const respawnAfterWait = 3 * time.Second

// pump forwards one direction: it reads src and writes what src sent to
// dst, through the STOMP flow of that direction. It owns its message
// writer and flushes dst itself when src is about to wait for input, so
// that the messages of one read leave in one write. Its state is carried
// across the goroutines it moves to (respawnAfterWait).
type pump struct {
	s        *Session
	src, dst *leg
	flow     *stompflow.Direction
	handler  func(wsconn.ServeEvent) bool // p.handle, made once (docs/internals/hot-path.md#made-once)
	respawn  func()                       // p.loop on a fresh goroutine, made once: a go statement with arguments allocates
	end      end                          // why the pump ended, when ended
	ended    bool
	out      msgWriter
	n        int64 // payload bytes of the current message so far
	typ      int   // its type
	dropping bool  // the session is closing: read and discard
	msgs     int64 // messages forwarded since the last publish
	bytes    int64 // their payload bytes
}

func newPump(s *Session, src, dst *leg, flow *stompflow.Direction) *pump {
	p := &pump{s: s, src: src, dst: dst, flow: flow}
	p.handler = p.handle
	p.respawn = func() { p.loop(true) }
	return p
}

// fromClient reports whether p reads the client.
func (p *pump) fromClient() bool { return p.src == p.s.client }

// loop forwards src to dst until src's read side ends. It waits for input
// in a shallow frame (src.conn.Serve) and forwards what arrived in
// forward (through handle), so that a goroutine that has just started can
// park without growing its stack. fill is false on the first call: bytes
// read with the handshake may already be buffered.
func (p *pump) loop(fill bool) {
	if !fill {
		if e, ended := p.forward(); ended {
			p.s.pumpEnded(p.src, e)
			return
		}
	}
	if err := p.src.conn.Serve(p.handler); err != nil {
		p.out.abandon()
		p.s.pumpEnded(p.src, classify(p.src, err))
		return
	}
	if p.ended {
		p.s.pumpEnded(p.src, p.end)
		return
	}
	go p.respawn()
}

// handle is the pump's Serve handler. When bytes arrived it forwards
// them, and stops Serve when src's read side ended or the pump should move
// to a fresh goroutine. When src is about to wait for input it flushes
// dst, so that the messages of one read leave in one write (coalescing).
func (p *pump) handle(ev wsconn.ServeEvent) bool {
	if ev == wsconn.Parking {
		p.park()
		return false
	}
	if e, ended := p.forward(); ended {
		p.end, p.ended = e, true
		return true
	}
	return p.src.conn.LastWait() >= respawnAfterWait
}

// park flushes what was forwarded to dst. The time of src's last read is
// close enough to now for a write deadline and a liveness stamp, and one
// clock read fewer per message.
func (p *pump) park() {
	if err := p.dst.conn.FlushAt(p.src.conn.LastReadAt()); err != nil {
		p.s.writeFailed(p.dst, err)
	}
}

// forward forwards the message pieces already read from src, without
// reading more, then publishes what it counted. ended is true when src's
// read side ended; a failed write to dst finishes the session but the pump
// keeps reading src, so that src's close handshake can complete.
func (p *pump) forward() (e end, ended bool) {
	e, ended = p.pieces()
	p.publish()
	return e, ended
}

// publish adds the messages and frames counted since the last call to the
// leg's counters and the metrics: once per read, not per message, as each
// is an atomic add (on counters all sessions share, for the metrics;
// docs/internals/hot-path.md#counters-per-read).
func (p *pump) publish() {
	if p.msgs > 0 {
		p.src.msgs.Add(p.msgs)
		p.src.bytes.Add(p.bytes)
		p.s.h.metrics.Messages(p.src.dir, p.msgs, p.bytes)
		p.msgs, p.bytes = 0, 0
	}
	p.flow.Publish()
}

// pieces is forward's loop. Each piece is a slice of src's read buffer,
// copied once into dst's write buffer. Text stays text and binary stays
// binary.
func (p *pump) pieces() (e end, ended bool) {
	s, src, flow := p.s, p.src, p.flow
	for {
		piece, ok, err := src.conn.TryPiece()
		if err != nil {
			p.out.abandon()
			return classify(src, err), true
		}
		if !ok {
			return end{}, false
		}
		if piece.First() {
			p.n, p.typ = 0, piece.Type
			p.out = msgWriter{s: s, dst: p.dst, typ: piece.Type, discard: p.dropping}
			// A message sent as one frame declares its size: one over the
			// limit is refused before any of it is forwarded, so the
			// client can still get a STOMP ERROR.
			if piece.Size > src.limit {
				return end{leg: src, kind: endTooBig}, true
			}
		}
		p.n += int64(len(piece.Data))
		if p.n > src.limit {
			p.out.abandon()
			return end{leg: src, kind: endTooBig}, true
		}
		if !p.dropping && s.closing.Load() {
			// The end is decided: nothing more is forwarded, a message
			// under way included (dst gets a close frame in its middle).
			p.out.abandon()
			p.dropping, p.out.discard = true, true
		}
		if p.dropping {
			if !p.fromClient() {
				// Read only what it takes to see the broker's RECEIPT or
				// close; a flood beyond that stays unread (maxDiscard).
				if n := s.upstreamDiscarded.Add(int64(len(piece.Data))); n > maxDiscard {
					return end{leg: src, kind: endLost, err: errDiscardLimit}, true
				}
			}
			if p.fromClient() || !flow.Scanning() || !s.conv.AwaitsReceipt() {
				continue
			}
			// Scanned, not forwarded: stompgate's RECEIPT ends its goodbye.
		}
		var ferr error
		if len(piece.Data) > 0 {
			if flow.Scanning() {
				ferr = flow.Feed(piece.Data, &p.out)
			} else {
				p.out.Chunk(piece.Data)
			}
		}
		if !piece.Last() && ferr == nil {
			p.out.handOver() // piece.Data is gone after the next TryPiece
			continue
		}
		forwardEmpty := false
		if ferr == nil {
			forwardEmpty, ferr = flow.EndMessage(p.typ, p.n == 0, &p.out)
		}
		if !p.dropping {
			p.msgs++
			p.bytes += p.n
		}
		if ferr != nil {
			// Never complete a truncated message: dst gets a close frame
			// in the middle of it instead (legal, RFC 6455 §5.4) and no
			// further data.
			p.out.abandon()
			return flowEnd(src, ferr), true
		}
		if forwardEmpty {
			p.out.empty()
		}
		if _, werr := p.out.complete(flow.InFrame()); werr != nil {
			s.writeFailed(p.dst, werr)
		}
	}
}

// flowEnd is the end for an error the STOMP flow returned.
func flowEnd(src *leg, err error) end {
	var ie *inspect.Error
	var fe *stompflow.Error
	switch {
	case errors.As(err, &ie):
		code := websocket.CloseProtocolError
		if !errors.Is(ie, inspect.ErrSyntax) && !errors.Is(ie, inspect.ErrInvalidHeader) {
			code = websocket.CloseMessageTooBig
		}
		return end{leg: src, kind: endProtocol, code: code, text: ie.Msg, err: ie}
	case errors.As(err, &fe):
		return end{leg: src, kind: endProtocol, code: websocket.CloseProtocolError, text: fe.Msg, err: fe}
	}
	return classify(src, err)
}

// classify turns the final error of a leg's reader into an end.
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
