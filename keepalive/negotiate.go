package keepalive

import (
	"fmt"
	"time"
)

// Version is a negotiated STOMP protocol version. The zero value means
// unknown and is treated like 1.0 (no heart-beats), the safe choice: 1.0 has
// no heart-beats and no EOLs between frames (§2.1, §2.4).
type Version uint8

// STOMP versions.
const (
	V10 Version = 10
	V11 Version = 11
	V12 Version = 12
)

// ParseVersion parses "1.0", "1.1" or "1.2" (the value of the version
// header of CONNECTED). Anything else, including "", yields 0 (treated as
// 1.0): the spec says a missing version means 1.0 (§2.6).
func ParseVersion(s string) Version {
	switch s {
	case "1.0":
		return V10
	case "1.1":
		return V11
	case "1.2":
		return V12
	}
	return 0
}

// String returns "1.0", "1.1", "1.2", or "unknown".
func (v Version) String() string {
	switch v {
	case V10, V11, V12:
		return fmt.Sprintf("1.%d", v-V10)
	}
	return "unknown"
}

// heartBeats reports whether v supports heart-beats (STOMP ≥ 1.1).
func (v Version) heartBeats() bool { return v >= V11 }

// HeartBeat is the value of one heart-beat header, "<Out>,<In>": Out is the
// smallest interval at which the sender of the frame can guarantee to send,
// In the interval at which it would like to receive (§2.2). 0 means "cannot"
// or "does not want"; a missing header is HeartBeat{} (§2.2).
type HeartBeat struct {
	Out, In time.Duration
}

// Periods are the heart-beat periods negotiated on one hop, seen from
// stompgate: Send is how often stompgate must put data on the hop, Recv how
// often it may expect data from the peer. 0 means off.
type Periods struct {
	Send, Recv time.Duration
}

// Period applies the spec's rule to one direction (§2.2): off (0) if either
// side is 0 (or negative), otherwise the larger of the two.
func Period(canSend, wantsToReceive time.Duration) time.Duration {
	if canSend <= 0 || wantsToReceive <= 0 {
		return 0
	}
	return max(canSend, wantsToReceive)
}

// Negotiate computes both hops' periods from the four heart-beat headers of
// a session:
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
// (CONNECT 4500,7500 → CONNECTED 7000,4000, §6, scenario 15). In Passthrough
// mode, p = c and d = s, so up == down.
func Negotiate(p, s, c, d HeartBeat) (up, down Periods) {
	up = Periods{Send: Period(p.Out, s.In), Recv: Period(s.Out, p.In)}
	down = Periods{Send: Period(d.Out, c.In), Recv: Period(c.Out, d.In)}
	return up, down
}
