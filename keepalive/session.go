package keepalive

import (
	"math"
	"time"

	"github.com/stompgate/stompgate/inspect"
)

// Activity is the snapshot of a session's hot-path timestamps that the proxy
// passes to Tick. A zero time means "never happened". The proxy records them
// with atomic stores when the bytes actually hit or leave the socket.
type Activity struct {
	// ClientRead is the last time anything was read from the client: STOMP
	// frames, EOLs, WebSocket pings and pongs. All of it is proof of life
	// (docs/heartbeats.md#any-data).
	ClientRead time.Time
	// ClientPong is the last WebSocket pong read from the client. It is
	// counted as a read even if the proxy did not fold it into ClientRead.
	ClientPong time.Time
	// ClientWrite is the last time data (a frame or an EOL, i.e. a
	// WebSocket data message) was written to the client. Pings are not
	// data: stomp.js cannot see them (docs/heartbeats.md#stompjs).
	ClientWrite time.Time
	// PingSent is the last time a WebSocket ping was written to the client.
	PingSent time.Time
	// UpstreamRead is the last time anything was read from the broker.
	UpstreamRead time.Time
	// UpstreamWrite is the last time data was written upstream (forwarded
	// client frames and EOLs alike: the broker counts any data,
	// docs/heartbeats.md#any-data).
	UpstreamWrite time.Time
	// UpstreamPingSent is the last time a WebSocket ping was written to
	// the broker.
	UpstreamPingSent time.Time
	// UpstreamProgress is the last time a write to the broker that had
	// found its socket full moved on: the broker is reading what it was
	// sent, so it is alive even if a pong queued behind that data cannot
	// come yet.
	UpstreamProgress time.Time

	// UpstreamHeard and ClientHeard, if set, report how long ago that
	// peer's latest bytes reached this host, as far as the proxy can tell
	// beyond the read stamps above: 0 when bytes were read after the stamp
	// was taken or wait unread in the receive buffer, else how long the
	// kernel has received nothing from it; false when the proxy cannot
	// tell. They are asked only when a read deadline has passed: a peer
	// whose bytes have arrived is alive, and a deadline missed because the
	// proxy itself was too busy to read them (a saturated host) must not
	// kill its session.
	UpstreamHeard, ClientHeard func() (ago time.Duration, ok bool)
}

// arrivalSlack: bytes that reached the host less than this after the
// stamp being judged may be the bytes that stamp recorded. The kernel's
// record of the last receipt (TCP_INFO) counts in jiffies, up to 10 ms
// apart, and in whole milliseconds.
const arrivalSlack = 10 * time.Millisecond

// never marks an event that has not happened; forever a deadline that does
// not exist. Session times are stored as offsets from the session start,
// which keeps a Session small and makes max() over "maybe never" values work.
const (
	never   = time.Duration(math.MinInt64)
	forever = time.Duration(math.MaxInt64)
)

// Session is the liveness engine of one proxied session. It is small (no
// pointers, about 200 bytes) and its zero value is not usable: create it with
// NewSession or Init. It is not safe for concurrent use.
type Session struct {
	start time.Time

	// Resolved configuration.
	tolerance   float64
	pongTimeout time.Duration
	pingEvery   time.Duration // ClientPingInterval
	upPingEvery time.Duration // UpstreamPingInterval; 0: never
	idleEvery   time.Duration // IdleFraction × IdleTimeout, or forever
	mode        Mode

	// Lifecycle.
	fwdV, upV, downV inspect.Version
	disconnecting    bool // client DISCONNECT forwarded upstream
	closed           bool
	opaque           bool // not STOMP: only the broker is watched, by pings
	up, down         Periods
	fwdAt            time.Duration // CONNECT forwarded upstream
	upAt             time.Duration // upstream CONNECTED received
	downAt           time.Duration // CONNECTED written to the client

	// Emissions requested by this engine, assumed done at the Tick's time.
	upEOL, clientEOL, pingReq time.Duration
	// pingPending is when the oldest ping not yet followed by any client
	// read was requested (or sent); never if none is outstanding. The pong
	// deadline runs from it, so later pings cannot push it back.
	pingPending time.Duration
	// The same for pings to the broker.
	upPingReq, upPingPending time.Duration

	// Verdict, once a peer is dead.
	hop                     Hop
	cause                   Cause
	deadAt, dline, silenced time.Duration
}

// NewSession returns a Session started at start (the WebSocket upgrade).
func NewSession(cfg Config, start time.Time) *Session {
	s := new(Session)
	s.Init(cfg, start)
	return s
}

// Init (re)initialises s for a session started at start (the WebSocket
// upgrade; it counts as the first client read and the first write to the
// client). cfg is completed with Config.WithDefaults.
func (s *Session) Init(cfg Config, start time.Time) {
	c := cfg.WithDefaults()
	*s = Session{
		start:         start,
		tolerance:     c.Tolerance,
		pongTimeout:   c.PongTimeout,
		pingEvery:     c.ClientPingInterval,
		upPingEvery:   c.UpstreamPingInterval,
		idleEvery:     c.idleInterval(),
		mode:          c.Mode,
		fwdAt:         never,
		upAt:          never,
		downAt:        never,
		upEOL:         never,
		clientEOL:     never,
		pingReq:       never,
		pingPending:   never,
		upPingReq:     never,
		upPingPending: never,
	}
}

// ConnectForwarded records that the client's CONNECT (or STOMP) frame was
// written upstream at now. offered is the highest version in that frame's
// accept-version header (inspect.V10 if absent, inspect.VersionUnknown if
// none is known, which counts as 1.0: see heartBeats). From now on upstream
// EOLs are allowed (never before: Spring answers them with ERROR,
// docs/heartbeats.md#spring-before-connect), unless only 1.0 was offered.
func (s *Session) ConnectForwarded(now time.Time, offered inspect.Version) {
	if s.fwdAt == never {
		s.fwdAt = s.off(now)
	}
	s.fwdV = offered
}

// UpstreamConnected records the broker's CONNECTED, read at now: its version
// and the upstream periods computed from its actual heart-beat header
// (Negotiate). With a version below 1.1, or inspect.VersionUnknown, the
// periods are ignored. The broker read deadline (Terminate mode) and the
// Tcs_up/2 emitter start here.
func (s *Session) UpstreamConnected(now time.Time, v inspect.Version, up Periods) {
	s.upAt = s.off(now)
	s.upV = v
	s.up = clean(v, up)
}

// ClientConnected records that CONNECTED was written to the client at now,
// with version v and the down-hop periods (Negotiate). With a version below
// 1.1, or inspect.VersionUnknown, the periods are ignored, so a 1.0 client
// never receives an EOL (docs/heartbeats.md#versions). Until this is called
// the client counts as having negotiated no heart-beats.
func (s *Session) ClientConnected(now time.Time, v inspect.Version, down Periods) {
	s.downAt = s.off(now)
	s.downV = v
	s.down = clean(v, down)
}

// DisconnectForwarded records that the client's DISCONNECT was written
// upstream: no upstream EOL follows it (docs/heartbeats.md#disconnect).
// Client probing and the broker deadline continue until Close.
func (s *Session) DisconnectForwarded() { s.disconnecting = true }

// NotSTOMP records that the session turned out not to carry STOMP: from
// now on the engine only pings the broker (when UpstreamPingInterval is
// set) and judges it by its answers; it no longer probes the client nor
// emits EOLs.
func (s *Session) NotSTOMP() { s.opaque, s.pingPending = true, never }

// Watching reports whether Tick can still ask for anything: false once the
// session is closed, a peer is dead, or it is not STOMP and the broker is
// not pinged.
func (s *Session) Watching() bool {
	return !s.closed && s.hop == HopNone && (!s.opaque || s.upPingEvery > 0)
}

// Close ends the session: every later Tick returns no action and no wake-up.
func (s *Session) Close() { s.closed = true }

// Verdict returns why the session ended, or the zero Verdict while both
// peers are alive.
func (s *Session) Verdict() Verdict {
	if s.hop == HopNone {
		return Verdict{}
	}
	return Verdict{Hop: s.hop, Cause: s.cause, Deadline: s.dline, Silence: s.silenced, At: s.start.Add(s.deadAt)}
}

// Periods returns the periods in force on the upstream and client hops.
func (s *Session) Periods() (up, down Periods) { return s.up, s.down }

// view is one Tick's picture of the session: offsets from start, with the
// engine's own requests folded in so that an action that the proxy has not
// executed yet is not requested twice.
type view struct {
	n      time.Duration // now
	cRead  time.Duration // last byte from the client (≥ start)
	cData  time.Duration // last data message to the client (≥ CONNECTED)
	cAny   time.Duration // last byte of any kind to the client (≥ start)
	uRead  time.Duration // last byte from the broker (≥ CONNECTED)
	uWrite time.Duration // last data written upstream (≥ CONNECT forwarded)
	uLife  time.Duration // last proof the broker lives: a read or write progress (≥ start)
}

// Tick evaluates the session at now, given the proxy's activity snapshot. It
// returns the actions to execute right away and the time at which Tick must
// be called again (the earliest deadline); the proxy may call it earlier at
// no harm. The zero time means "never again": the session is closed or a
// peer was declared dead (then exactly one of ClientDead and UpstreamDead is
// returned, once, and Verdict explains it). Tick does not allocate.
func (s *Session) Tick(now time.Time, a Activity) (Actions, time.Time) {
	if s.closed || s.hop != HopNone {
		return 0, time.Time{}
	}
	if s.pingEvery == 0 {
		panic("keepalive: Session used without NewSession or Init")
	}
	v := view{n: now.Sub(s.start)}
	v.cRead = max(s.off(a.ClientRead), s.off(a.ClientPong), 0)
	v.cData = max(s.off(a.ClientWrite), s.clientEOL, s.downAt)
	v.cAny = max(v.cData, s.off(a.PingSent), s.pingReq, 0)
	v.uRead = max(s.off(a.UpstreamRead), s.upAt)
	v.uWrite = max(s.off(a.UpstreamWrite), s.upEOL, s.fwdAt)
	v.uLife = max(s.off(a.UpstreamRead), s.off(a.UpstreamProgress), 0)
	if s.upPingPending != never && v.uLife > s.upPingPending {
		s.upPingPending = never
	}
	if ps := s.off(a.UpstreamPingSent); s.upPingPending == never && ps > v.uLife {
		s.upPingPending = ps
	}

	// Any client byte after the outstanding ping answers it
	// (docs/heartbeats.md#any-data). A ping
	// the proxy sent after the last read is outstanding too.
	if s.pingPending != never && v.cRead > s.pingPending {
		s.pingPending = never
	}
	if ps := s.off(a.PingSent); s.pingPending == never && ps > v.cRead {
		s.pingPending = ps
	}

	// Deadlines first: a dead peer gets no more keepalives. A passed
	// deadline is checked against what has arrived but is not read yet:
	// bytes that reached the host at v.n-ago count as a read then.
	var act Actions
	cd := s.clientDeadline()
	ud, udLen := s.upstreamDeadline(&v)
	if ud <= v.n && a.UpstreamHeard != nil {
		if ago, ok := a.UpstreamHeard(); ok && v.n-ago > v.uRead+arrivalSlack {
			v.uRead = v.n - ago
			if ud, udLen = s.upstreamDeadline(&v); ud > v.n {
				act |= UpstreamLateRead
			}
		}
	}
	pd := s.upstreamPongDeadline()
	if pd <= v.n && a.UpstreamHeard != nil {
		// Bytes that arrived after the ping answer it, read or not.
		if ago, ok := a.UpstreamHeard(); ok && v.n-ago > s.upPingPending+arrivalSlack {
			s.upPingPending, v.uLife = never, max(v.uLife, v.n-ago)
			pd = s.upstreamPongDeadline()
			act |= UpstreamLateRead
		}
	}
	if cd <= v.n && a.ClientHeard != nil {
		// Bytes after the outstanding ping answer it (as above).
		if ago, ok := a.ClientHeard(); ok && v.n-ago > s.pingPending+arrivalSlack {
			s.pingPending, v.cRead = never, max(v.cRead, v.n-ago)
			cd = s.clientDeadline()
			act |= ClientLateRead
		}
	}
	if cd <= v.n || ud <= v.n || pd <= v.n {
		s.deadAt = v.n
		switch {
		case cd <= ud && cd <= pd:
			s.hop, s.cause, s.dline, s.silenced = HopClient, CausePongTimeout, s.pongTimeout, v.n-v.cRead
			return act | ClientDead, time.Time{}
		case ud <= pd:
			s.hop, s.cause, s.dline, s.silenced = HopUpstream, CauseHeartbeatTimeout, udLen, v.n-v.uRead
		default:
			s.hop, s.cause, s.dline, s.silenced = HopUpstream, CausePongTimeout, s.pongTimeout, v.n-v.uLife
		}
		return act | UpstreamDead, time.Time{}
	}

	if s.upstreamProbeDue(&v) <= v.n {
		act |= PingUpstream
		s.upPingReq = v.n
		if s.upPingPending == never {
			s.upPingPending = v.n
		}
	}
	if s.opaque {
		next := min(s.upstreamPongDeadline(), s.upstreamProbeDue(&v))
		if next == forever {
			return act, time.Time{}
		}
		return act, s.start.Add(max(next, v.n+MinInterval/10))
	}

	if s.probeDue(&v) <= v.n {
		act |= PingClient
		s.ping(&v)
	}
	// One wake-up serves both hops. When the client's EOL is due, the
	// broker's is sent with it if it is due within a quarter of the
	// client's interval, or if it was sent within that quarter (the two
	// hops are nearly in phase, the broker's first: one extra EOL puts
	// them in phase). The broker needs an EOL at least every ½·Tcs_up
	// (docs/heartbeats.md#strict-brokers), so early is within its
	// contract, while the client's spacing stays within [T/2, T]
	// (docs/heartbeats.md#stompjs). With equal periods (the
	// defaults) an idle session then costs one timer firing per emission
	// instead of two.
	cDue, uDue := s.toClientDue(&v), s.upstreamEOLDue(&v)
	if cDue <= v.n && uDue > v.n {
		if cEvery, uEvery := s.emitEvery(); cEvery > 0 && uEvery >= cEvery {
			w := cEvery / 4
			if uDue <= v.n+w || (s.upEOL != never && v.n-s.upEOL <= w) {
				uDue = v.n
			}
		}
	}
	if cDue <= v.n {
		if s.down.Send > 0 {
			act |= SendClientEOL
			s.clientEOL, v.cData, v.cAny = v.n, v.n, v.n
		} else {
			act |= PingClient
			s.ping(&v)
		}
	}
	if uDue <= v.n {
		act |= SendUpstreamEOL
		s.upEOL, v.uWrite = v.n, v.n
	}

	next := min(s.clientDeadline(), ud, s.probeDue(&v), s.toClientDue(&v), s.upstreamEOLDue(&v), s.upstreamPongDeadline(), s.upstreamProbeDue(&v))
	if next == forever {
		return act, time.Time{}
	}
	// Every due time is in the future by construction; the guard only
	// protects the proxy from a busy loop if that ever stops being true.
	next = max(next, v.n+MinInterval/10)
	return act, s.start.Add(next)
}

// emitEvery returns the EOL emission intervals of the client and broker
// hops, or zeros when either hop emits no heart-beat EOLs.
func (s *Session) emitEvery() (client, upstream time.Duration) {
	if s.mode != Terminate || s.down.Send <= 0 || s.up.Send <= 0 || s.disconnecting || s.fwdAt == never {
		return 0, 0
	}
	return max(scale(s.down.Send, EmitFraction), MinInterval), max(scale(s.up.Send, EmitFraction), MinInterval)
}

// ping records a ping requested at v.n.
func (s *Session) ping(v *view) {
	s.pingReq, v.cAny = v.n, v.n
	if s.pingPending == never {
		s.pingPending = v.n
	}
}

// clientDeadline: an outstanding ping must be answered by any client byte
// within PongTimeout (docs/heartbeats.md#pings).
func (s *Session) clientDeadline() time.Duration {
	if s.pingPending == never {
		return forever
	}
	return add(s.pingPending, s.pongTimeout)
}

// upstreamDeadline: Terminate mode only, after CONNECTED with Tsc_up > 0, the
// broker must send something every Tsc_up × Tolerance
// (docs/heartbeats.md#any-data).
func (s *Session) upstreamDeadline(v *view) (due, length time.Duration) {
	if s.mode != Terminate || s.upAt == never || s.up.Recv <= 0 {
		return forever, 0
	}
	length = scale(s.up.Recv, s.tolerance)
	return add(v.uRead, length), length
}

// upstreamPongDeadline: an outstanding upstream ping must be answered
// within PongTimeout by any byte from the broker or progress of a blocked
// write to it.
func (s *Session) upstreamPongDeadline() time.Duration {
	if s.upPingPending == never {
		return forever
	}
	return add(s.upPingPending, s.pongTimeout)
}

// upstreamProbeDue: when the broker must be pinged. Only when no STOMP
// heart-beat deadline watches it (the broker sends none, passthrough
// mode, not yet CONNECTED, not STOMP) and after UpstreamPingInterval
// without a sign of life. No second ping while one is outstanding.
func (s *Session) upstreamProbeDue(v *view) time.Duration {
	if s.upPingEvery <= 0 || s.upPingPending != never {
		return forever
	}
	if !s.opaque {
		if ud, _ := s.upstreamDeadline(v); ud != forever {
			return forever
		}
	}
	return add(max(v.uLife, s.upPingReq), s.upPingEvery)
}

// probeDue: when the client must be probed with a ping. A client that
// negotiated heart-beats is late after ProbeFactor × Tcs_down without a
// read; one that did not (0,0, STOMP 1.0, not yet CONNECTED) after
// ClientPingInterval. No second probe while one is outstanding.
func (s *Session) probeDue(v *view) time.Duration {
	if s.pingPending != never {
		return forever
	}
	limit := s.pingEvery
	if s.down.Recv > 0 {
		limit = max(scale(s.down.Recv, ProbeFactor), MinInterval)
	}
	return add(v.cRead, limit)
}

// toClientDue: when stompgate must write to the client. Idle coverage: no
// byte for idleEvery (docs/heartbeats.md#intermediaries). Terminate mode
// with Tsc_down > 0 also: no data for Tsc_down × EmitFraction (stomp.js
// counts data only, docs/heartbeats.md#stompjs).
func (s *Session) toClientDue(v *view) time.Duration {
	due := add(v.cAny, s.idleEvery)
	if s.mode == Terminate && s.down.Send > 0 {
		due = min(due, add(v.cData, max(scale(s.down.Send, EmitFraction), MinInterval)))
	}
	return due
}

// upstreamEOLDue: when stompgate must write an EOL upstream. Only between
// CONNECT and DISCONNECT forwarded, never to a 1.0 broker (nor one of
// unknown version, see heartBeats), and only while the client is alive:
// Tick stops evaluating it once any peer is declared dead.
func (s *Session) upstreamEOLDue(v *view) time.Duration {
	if s.fwdAt == never || s.disconnecting || !heartBeats(s.fwdV) {
		return forever
	}
	connected := s.upAt != never
	if connected && !heartBeats(s.upV) {
		return forever
	}
	every := s.idleEvery
	switch s.mode {
	case Terminate:
		// Before CONNECTED, Tcs_up is unknown; EOLs after a complete
		// frame are grammatical (docs/heartbeats.md#eol), so idle
		// coverage applies.
		if connected && s.up.Send > 0 {
			every = min(every, max(scale(s.up.Send, EmitFraction), MinInterval))
		}
	case Passthrough:
		// Only where the broker agreed to receive heart-beats.
		if !connected || s.up.Send <= 0 {
			return forever
		}
	}
	return add(v.uWrite, every)
}

// off converts t to an offset from the session start; zero means never.
func (s *Session) off(t time.Time) time.Duration {
	if t.IsZero() {
		return never
	}
	return t.Sub(s.start)
}

// clean drops periods a version cannot have and negative values.
func clean(v inspect.Version, p Periods) Periods {
	if !heartBeats(v) {
		return Periods{}
	}
	return Periods{Send: max(p.Send, 0), Recv: max(p.Recv, 0)}
}

// add returns t+d, saturating at never/forever.
func add(t, d time.Duration) time.Duration {
	switch {
	case t == never || d == forever:
		return forever
	case d > 0 && t > forever-d:
		return forever
	}
	return t + d
}

// scale returns d×f, saturating at forever.
func scale(d time.Duration, f float64) time.Duration {
	x := float64(d) * f
	if x >= float64(forever) {
		return forever
	}
	return time.Duration(x)
}
