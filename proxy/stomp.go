package proxy

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/stompflow"
)

// flowEvents is the session as the STOMP conversation's observer
// (stompflow.Observer): what the flow reports, the session's liveness and
// ending act on. A conversion of *Session, so it costs nothing.
type flowEvents Session

var _ stompflow.Observer = (*flowEvents)(nil)

func (f *flowEvents) session() *Session { return (*Session)(f) }

// NotSTOMP turns the session into a plain WebSocket proxy, whose broker is
// still watched by pings.
func (f *flowEvents) NotSTOMP(why string) {
	s := f.session()
	s.live.notSTOMP()
	s.log.Debug("not STOMP: passing through unscanned", zap.String("why", why))
}

func (f *flowEvents) ConnectForwarded(offered inspect.Version) {
	f.session().live.connectForwarded(offered)
}

func (f *flowEvents) DisconnectForwarded() { f.session().live.disconnectForwarded() }

func (f *flowEvents) Connected(v inspect.Version, upstream, client keepalive.Periods) {
	f.session().live.connected(v, upstream, client)
}

// OwnReceipt: the broker answered the client's DISCONNECT (to which
// stompgate added the receipt), or stompgate's goodbye.
func (f *flowEvents) OwnReceipt() {
	s := f.session()
	if s.closing.Load() {
		s.goodbyeDone()
		return
	}
	s.finish(end{leg: s.client, kind: endDisconnected})
}

// stompFields adds the STOMP part of a session's log line.
func (s *Session) stompFields() []zap.Field {
	upstream, client := s.live.periods()
	verdict, kernelSilence := s.live.outcome()
	c, u := s.client, s.upstream
	var fields []zap.Field
	if s.conv.Disabled() {
		fields = append(fields, zap.Bool("stomp", false), zap.Int64("upstream_pings_sent", u.pingsSent.Load()))
	} else {
		neg := s.conv.Negotiated()
		fields = append(fields,
			zap.Bool("stomp", true),
			zap.String("stomp_version", neg.Version.String()),
			zap.String("client_heart_beat", neg.Client.String()),
			zap.String("upstream_heart_beat", neg.Upstream.String()),
			zap.Duration("up_send_period", upstream.Send),
			zap.Duration("up_recv_period", upstream.Recv),
			zap.Duration("down_send_period", client.Send),
			zap.Duration("down_recv_period", client.Recv),
			zap.Int64("heartbeats_from_client", s.conv.ClientToUpstream.HeartBeats()),
			zap.Int64("heartbeats_from_upstream", s.conv.UpstreamToClient.HeartBeats()),
			zap.Int64("heartbeats_to_upstream", u.heartBeatsSent.Load()),
			zap.Int64("heartbeats_to_client", c.heartBeatsSent.Load()),
			zap.Int64("pings_sent", c.pingsSent.Load()),
			zap.Int64("pongs_received", c.pongsReceived.Load()),
			zap.Int64("upstream_pings_sent", u.pingsSent.Load()),
			zap.Object("frames_from_client", commandCounts{&s.conv.ClientToUpstream}),
			zap.Object("frames_from_upstream", commandCounts{&s.conv.UpstreamToClient}),
		)
	}
	if verdict.Dead() {
		fields = append(fields, zap.String("liveness_verdict", verdict.String()))
		// The kernel's view beside stompgate's: as long as the verdict's
		// silence, the peer (or the path to it) was silent; shorter, its
		// bytes had reached this host and stompgate was late (a host short
		// of CPU: see go_sched_latencies_seconds).
		if kernelSilence >= 0 {
			fields = append(fields, zap.Duration("liveness_silence", verdict.Silence), zap.Duration("liveness_kernel_silence", kernelSilence))
		}
	}
	if m, ok := s.conv.ErrorMessage(); ok {
		fields = append(fields, zap.String("upstream_error", m))
	}
	return fields
}

// commandCounts logs a direction's frame counts by command.
type commandCounts struct{ d *stompflow.Direction }

func (c commandCounts) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	c.d.Frames(func(cmd inspect.Command, n int64) { enc.AddInt64(cmd.String(), n) })
	return nil
}
