package keepalive

import (
	"fmt"
	"strings"
	"time"
)

// Actions is the set of things the proxy must do after a Tick.
type Actions uint8

// Actions returned by Tick. Several emission bits may be set at once; at most
// one of ClientDead and UpstreamDead is set, and then no emission bit is
// (a late-read bit may be).
const (
	// SendUpstreamEOL: write a single "\n" upstream, as its own WebSocket
	// message, between frames (never "\r" alone, never split CRLF:
	// docs/heartbeats.md#eol).
	SendUpstreamEOL Actions = 1 << iota
	// SendClientEOL: write a single "\n" to the client as its own WebSocket
	// message, between frames.
	SendClientEOL
	// PingClient: send a WebSocket Ping to the client.
	PingClient
	// ClientDead: the client missed its pong deadline; end the session
	// as docs/heartbeats.md#peer-gone describes. See Session.Verdict.
	ClientDead
	// UpstreamDead: the broker missed its heart-beat deadline (or, when
	// pinged, its pong deadline); send the client an ERROR built from
	// Session.Verdict and close (docs/heartbeats.md#peer-gone).
	UpstreamDead
	// UpstreamLateRead and ClientLateRead report, for counting only, that
	// a read deadline had passed but the peer's bytes had reached the host
	// (Activity.UpstreamHeard, ClientHeard): the proxy read them late,
	// and the peer lives on.
	UpstreamLateRead
	ClientLateRead
	// PingUpstream: send a WebSocket Ping to the broker (no STOMP
	// heart-beat deadline watches it; Config.UpstreamPingInterval).
	PingUpstream
)

// Has reports whether all of b are in a.
func (a Actions) Has(b Actions) bool { return a&b == b }

// String lists the set actions, e.g. "SendUpstreamEOL|PingClient".
func (a Actions) String() string {
	if a == 0 {
		return "none"
	}
	names := [...]string{"SendUpstreamEOL", "SendClientEOL", "PingClient", "ClientDead", "UpstreamDead", "UpstreamLateRead", "ClientLateRead", "PingUpstream"}
	var b strings.Builder
	for i, n := range names {
		if a&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	if rest := a &^ (1<<len(names) - 1); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "0x%x", uint8(rest))
	}
	return b.String()
}

// Hop names one side of the proxy.
type Hop uint8

// Hops.
const (
	HopNone     Hop = iota
	HopClient       // client ↔ stompgate ("down")
	HopUpstream     // stompgate ↔ broker ("up")
)

// String returns "client", "upstream" or "none".
func (h Hop) String() string {
	switch h {
	case HopClient:
		return "client"
	case HopUpstream:
		return "upstream"
	}
	return "none"
}

// Cause names the deadline that expired.
type Cause uint8

// Causes.
const (
	CauseNone Cause = iota
	// CausePongTimeout: the client showed no sign of life within
	// PongTimeout after a ping.
	CausePongTimeout
	// CauseHeartbeatTimeout: the broker sent no data for Tsc_up × Tolerance.
	CauseHeartbeatTimeout
)

// String returns "pong timeout", "heart-beat timeout" or "none".
func (c Cause) String() string {
	switch c {
	case CausePongTimeout:
		return "pong timeout"
	case CauseHeartbeatTimeout:
		return "heart-beat timeout"
	}
	return "none"
}

// Verdict says which hop ended the session and why. The zero Verdict means
// both peers are considered alive.
type Verdict struct {
	Hop   Hop
	Cause Cause
	// Deadline is the length of the deadline that expired: PongTimeout for
	// the client, Tsc_up × Tolerance for the broker.
	Deadline time.Duration
	// Silence is how long the peer had been silent (since its last byte, or
	// since CONNECTED/session start if it never sent one) at detection.
	Silence time.Duration
	// At is when the death was detected (the Tick's now).
	At time.Time
}

// Dead reports whether the verdict names a dead peer.
func (v Verdict) Dead() bool { return v.Hop != HopNone }

// String is meant for logs and for the message header of the STOMP ERROR
// sent to the client, e.g. "upstream heart-beat timeout after 30s" or
// "client pong timeout after 10s".
func (v Verdict) String() string {
	if !v.Dead() {
		return "alive"
	}
	return fmt.Sprintf("%s %s after %s", v.Hop, v.Cause, v.Deadline)
}
