package keepalive

import (
	"time"

	"github.com/stompgate/stompgate/inspect"
)

// heartBeats reports whether a session of version v can carry heart-beats:
// only STOMP 1.1 and 1.2 define them. This is where the engine decides what
// an unrecognised version means: inspect.VersionUnknown (no version stompgate
// knows was offered or answered) is treated exactly like inspect.V10, the
// safe choice, since 1.0 has neither heart-beats nor EOLs between frames
// (docs/heartbeats.md#versions). A peer of unknown version therefore never
// receives an EOL and has no heart-beat periods; it is kept alive and probed
// with WebSocket pings only.
func heartBeats(v inspect.Version) bool { return v >= inspect.V11 }

// Periods are the heart-beat periods negotiated on one hop, seen from
// stompgate: Send is how often stompgate must put data on the hop, Recv how
// often it may expect data from the peer. 0 means off.
type Periods struct {
	Send, Recv time.Duration
}

// Period applies the specification's rule to one direction
// (docs/heartbeats.md#negotiation): off (0) if either side is 0 (or
// negative), otherwise the larger of the two.
func Period(canSend, wantsToReceive time.Duration) time.Duration {
	if canSend <= 0 || wantsToReceive <= 0 {
		return 0
	}
	return max(canSend, wantsToReceive)
}

// Negotiate computes both hops' periods from the four heart-beat headers of
// a session, each seen from the sender of its frame (inspect.HeartBeat:
// Send = x, Receive = y; a missing header is the zero HeartBeat):
//
//	p = what stompgate sent upstream in CONNECT    (px,py)
//	s = the upstream's actual CONNECTED            (sx,sy)
//	c = the client's CONNECT                       (cx,cy)
//	d = what stompgate put in CONNECTED to client  (dx,dy)
//
// up.Send = Tcs_up = max(px,sy), up.Recv = Tsc_up = max(sx,py),
// down.Send = Tsc_down = max(dx,cy), down.Recv = Tcs_down = max(cx,dy), each
// 0 if either operand is 0.
//
// The upstream periods must come from the broker's actual CONNECTED, not
// from what was asked: RabbitMQ mirrors and rounds down to whole seconds
// (CONNECT 4500,7500 → CONNECTED 7000,4000; docs/heartbeats.md#rabbitmq,
// docs/scenarios.md S5). In Passthrough mode, p = c and d = s, so
// up == down.
func Negotiate(p, s, c, d inspect.HeartBeat) (up, down Periods) {
	up = Periods{Send: Period(p.Send, s.Receive), Recv: Period(s.Send, p.Receive)}
	down = Periods{Send: Period(d.Send, c.Receive), Recv: Period(c.Send, d.Receive)}
	return up, down
}
