package proxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/metrics"
	"github.com/stompgate/stompgate/stompflow"
)

// Session is one proxied client: two legs (client and upstream), a pump
// per direction, the STOMP conversation between them and its liveness.
//
// Ownership: the Handler owns the Session (h.sessions). Each pump runs on
// its own goroutine (pump.loop) and the last one to end tears the session
// down (pumpEnded). Everything that ends a session goes through finish
// (ending.go), which decides once what each peer gets and arms an abort
// timer, so no leg stays in CLOSING past CloseTimeout.
type Session struct {
	h      *Handler
	id     string
	log    *zap.Logger
	began  time.Time
	remote string // client address, for /debug/sessions
	path   string
	// transport is how the client came: "websocket", or "sockjs/<name>"
	// for a SockJS session (sockjs.go).
	transport string
	client    *leg
	upstream  *leg

	conv *stompflow.Conversation // the STOMP conversation; Disabled when not STOMP
	live liveness

	closing   atomic.Bool // the end is decided: forward nothing more
	endOnce   sync.Once
	pumpsLeft atomic.Int32 // the last pump to end tears the session down
	done      func()       // called once the session is torn down

	// Set once by decide, read after finish returned.
	cause         end
	closeDeadline time.Time   // no close handshake, write or linger lasts past it
	abort         *time.Timer // closes both connections at closeDeadline
	byeTimer      *time.Timer // closes the broker leg after stompgate's DISCONNECT; nil: none
	byeText       string      // the close reason after stompgate's DISCONNECT (goodbye)
	ending        string      // why the session ended, for the log line
	closedBy      string
	abnormal      bool // logged at warn

	// upstreamDiscarded: bytes read from the broker after the end was
	// decided (bounded by maxDiscard).
	upstreamDiscarded atomic.Int64
}

// newSession builds a session for a client that negotiated subprotocol:
// its legs, the STOMP conversation and the liveness engine. The legs get
// their connections from attach.
func newSession(h *Handler, subprotocol string, log *zap.Logger, r *http.Request) *Session {
	s := &Session{
		h:         h,
		id:        strconv.FormatUint(rand.Uint64(), 36),
		began:     time.Now(),
		remote:    r.RemoteAddr,
		path:      r.URL.Path,
		transport: "websocket",
		client:    newLeg("client", metrics.HopClient, metrics.ClientToUpstream, h.opts.MaxClientMessageBytes),
		upstream:  newLeg("upstream", metrics.HopUpstream, metrics.UpstreamToClient, h.opts.MaxUpstreamMessageBytes),
	}
	s.log = log.With(zap.String("session", s.id), zap.String("subprotocol", subprotocol))
	s.conv = stompflow.New(stompflow.Config{
		Mode:              h.opts.STOMP.Keepalive.Mode,
		Strict:            h.opts.STOMP.Strict,
		Limits:            h.opts.STOMP.Limits,
		UpstreamHeartBeat: h.opts.STOMP.UpstreamHeartBeat,
		ClientHeartBeat:   h.opts.STOMP.ClientHeartBeat,
		Metrics:           h.metrics,
	}, s.id, subprotocol, (*flowEvents)(s))
	s.live.init(s, h.opts.STOMP.Keepalive, s.began)
	if s.conv.Disabled() {
		s.live.ka.NotSTOMP()
	}
	return s
}

// attach gives the legs their connections, whose handshakes are done:
// the client's, and the broker's (which may have sent bytes right after
// its 101: leftover), each with the subprotocol it negotiated.
func (s *Session) attach(client net.Conn, clientProto string, upstream net.Conn, upstreamProto string, leftover []byte) {
	s.upstream.conn = wsconn.New(upstream, wsconn.Client, upstreamProto, leftover, s.options(s.upstream))
	s.client.conn = wsconn.New(client, wsconn.Server, clientProto, nil, s.options(s.client))
	// On TCP (not TLS) the pumps then park after a short read instead of
	// reading again to be told EAGAIN: a third fewer system calls per
	// small message. Each leg's Close ends its watch.
	s.upstream.conn.WatchHangups()
	s.client.conn.WatchHangups()
}

// options are l's connection's hooks, fixed for its life.
func (s *Session) options(l *leg) wsconn.Options {
	o := wsconn.Options{
		WriteTimeout: s.h.opts.WriteTimeout,
		// Every read stamps its leg (wsconn does it once per read system
		// call, not per message), so any byte counts as liveness: data,
		// heart-beats, pings and pongs alike. Data flushed to a leg is
		// what its STOMP peer sees as traffic.
		ReadStamp:  &l.readAt,
		WriteStamp: &l.writeAt,
		OnPing:     l.pong,
		OnClose:    s.closeHandler(l),
	}
	if l == s.upstream {
		// A write to the broker that moves on after finding its socket
		// full proves the broker reads (keepalive: UpstreamProgress).
		o.WriteProgress = &l.progressAt
	} else {
		o.OnPong = func([]byte) {
			l.pongAt.Store(wsconn.Now())
			l.pongsReceived.Add(1)
			s.h.metrics.PongsReceived.Inc()
		}
	}
	return o
}

// start runs the session: each pump on its own goroutine (see pump.loop),
// and the liveness timer. The last pump to end tears the session down and
// calls done; nothing waits for the pumps, so an idle session costs two
// goroutines.
func (s *Session) start(done func()) {
	s.done = done
	if s.conv.Disabled() {
		proto := s.client.conn.Subprotocol()
		if s.h.opts.STOMP.Strict {
			s.refuse("subprotocol " + strconv.Quote(proto) + " is not STOMP")
		} else {
			s.log.Debug("not a STOMP subprotocol: passing through unscanned", zap.String("subprotocol", proto))
		}
	}
	now := wsconn.Now()
	s.client.readAt.Store(now)
	s.upstream.readAt.Store(now)
	if !s.closing.Load() {
		s.live.start()
	}
	s.pumpsLeft.Store(2)
	toClient := newPump(s, s.upstream, s.client, &s.conv.UpstreamToClient)
	toUpstream := newPump(s, s.client, s.upstream, &s.conv.ClientToUpstream)
	go toClient.loop(false)
	go toUpstream.loop(false)
}
