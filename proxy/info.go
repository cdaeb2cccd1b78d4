package proxy

import (
	"sort"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/stompflow"
)

// SessionInfo is a snapshot of one session for the admin API
// (/debug/sessions). It carries no header values, credentials or bodies.
type SessionInfo struct {
	ID               string     `json:"id"`
	Remote           string     `json:"remote"`
	Path             string     `json:"path"`
	Subprotocol      string     `json:"subprotocol"`
	Transport        string     `json:"transport"` // "websocket", or "sockjs/<transport>"
	Started          time.Time  `json:"started"`
	ClientMessages   int64      `json:"client_messages"`
	UpstreamMessages int64      `json:"upstream_messages"`
	ClientBytes      int64      `json:"client_bytes"`
	UpstreamBytes    int64      `json:"upstream_bytes"`
	STOMP            *STOMPInfo `json:"stomp,omitempty"` // nil: not STOMP
}

// STOMPInfo is the STOMP side of a SessionInfo: each hop's negotiated
// heart-beat contract and when stompgate last heard from and wrote to each
// peer.
type STOMPInfo struct {
	Mode      string  `json:"mode"`
	Version   string  `json:"version"` // negotiated, "" before CONNECTED
	Connected bool    `json:"connected"`
	Client    HopInfo `json:"client"`
	Upstream  HopInfo `json:"upstream"`
}

// HopInfo describes one hop (client ↔ stompgate or stompgate ↔ broker).
type HopInfo struct {
	// HeartBeatOffered is what the peer put in its CONNECT (client) or
	// CONNECTED (broker); HeartBeatSent is what stompgate put in the frame
	// it sent that peer.
	HeartBeatOffered string `json:"heart_beat_offered"`
	HeartBeatSent    string `json:"heart_beat_sent"`
	// SendPeriodMS is how often stompgate must send on this hop; 0 none.
	// ReceivePeriodMS is how often the peer must send; 0 none.
	SendPeriodMS       int64            `json:"send_period_ms"`
	ReceivePeriodMS    int64            `json:"receive_period_ms"`
	HeartbeatsReceived int64            `json:"heartbeats_received"`
	HeartbeatsSent     int64            `json:"heartbeats_sent"`
	PingsSent          int64            `json:"pings_sent,omitempty"`
	PongsReceived      int64            `json:"pongs_received,omitempty"`
	LastRead           time.Time        `json:"last_read"`
	LastWrite          time.Time        `json:"last_write"`
	Frames             map[string]int64 `json:"frames_received"`
}

// Sessions returns a snapshot of every open session, oldest first.
func (h *Handler) Sessions() []SessionInfo {
	sessions := h.openSessions()
	out := make([]SessionInfo, 0, len(sessions))
	for _, s := range sessions {
		out = append(out, s.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

func (s *Session) info() SessionInfo {
	si := SessionInfo{
		ID:               s.id,
		Remote:           s.remote,
		Path:             s.path,
		Subprotocol:      s.client.conn.Subprotocol(),
		Transport:        s.transport,
		Started:          s.began,
		ClientMessages:   s.client.msgs.Load(),
		UpstreamMessages: s.upstream.msgs.Load(),
		ClientBytes:      s.client.bytes.Load(),
		UpstreamBytes:    s.upstream.bytes.Load(),
	}
	if s.conv.Disabled() {
		return si
	}
	upstream, client := s.live.periods()
	neg := s.conv.Negotiated()
	connected := s.conv.Connected()
	c, u := s.client, s.upstream
	si.STOMP = &STOMPInfo{
		Mode:      s.h.opts.STOMP.Keepalive.Mode.String(),
		Connected: connected,
		Client: HopInfo{
			SendPeriodMS:       client.Send.Milliseconds(),
			ReceivePeriodMS:    client.Recv.Milliseconds(),
			HeartbeatsReceived: s.conv.ClientToUpstream.HeartBeats(),
			HeartbeatsSent:     c.heartBeatsSent.Load(),
			PingsSent:          c.pingsSent.Load(),
			PongsReceived:      c.pongsReceived.Load(),
			LastRead:           wsconn.Time(c.readAt.Load()),
			LastWrite:          wsconn.Time(c.writeAt.Load()),
			Frames:             frameCounts(&s.conv.ClientToUpstream),
		},
		Upstream: HopInfo{
			SendPeriodMS:       upstream.Send.Milliseconds(),
			ReceivePeriodMS:    upstream.Recv.Milliseconds(),
			HeartbeatsReceived: s.conv.UpstreamToClient.HeartBeats(),
			HeartbeatsSent:     u.heartBeatsSent.Load(),
			LastRead:           wsconn.Time(u.readAt.Load()),
			LastWrite:          wsconn.Time(u.writeAt.Load()),
			Frames:             frameCounts(&s.conv.UpstreamToClient),
		},
	}
	if s.conv.ConnectSeen() {
		si.STOMP.Client.HeartBeatOffered = neg.Client.String()
		si.STOMP.Upstream.HeartBeatSent = neg.SentToUpstream.String()
	}
	if connected {
		si.STOMP.Version = neg.Version.String()
		si.STOMP.Upstream.HeartBeatOffered = neg.Upstream.String()
		si.STOMP.Client.HeartBeatSent = neg.SentToClient.String()
	}
	return si
}

func frameCounts(d *stompflow.Direction) map[string]int64 {
	m := make(map[string]int64)
	d.Frames(func(cmd inspect.Command, n int64) { m[cmd.String()] = n })
	return m
}
