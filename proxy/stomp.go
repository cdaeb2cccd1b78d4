package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// stompState is what a session knows about the STOMP conversation it
// carries, and its liveness engine. It exists for every session until the
// conversation turns out not to be STOMP.
//
// Concurrency: each dirState is written by the one pump that reads that
// direction; fields shared with the timer goroutine are atomics or guarded by
// kaMu.
type stompState struct {
	mode     keepalive.Mode
	fromC    dirState // client → upstream
	fromU    dirState // upstream → client
	disabled atomic.Bool

	// Set by the client→upstream pump.
	clientHB, sentUpHB inspect.HeartBeat
	offered            inspect.Version
	connectSeen        atomic.Bool
	disconnectSent     atomic.Bool            // a DISCONNECT went to the broker, the client's or stompgate's
	clientDisconnect   atomic.Bool            // the client's own DISCONNECT went to the broker
	ourReceipt         atomic.Pointer[string] // receipt stompgate added to a DISCONNECT
	byeText            atomic.Pointer[string] // the close reason after stompgate's DISCONNECT (goodbye)

	// Set by the upstream→client pump.
	upHB, sentDownHB inspect.HeartBeat
	version          inspect.Version
	connected        atomic.Bool
	sawError         atomic.Bool
	errorMessage     atomic.Pointer[string] // the first ERROR's message the client was sent

	// Hot-path timestamps (wsconn.Now stamps, read back with wsconn.Time,
	// which gives a time.Time with a monotonic reading), stored with atomics.
	clientRead, clientPong, clientWrite, pingSent, upstreamRead, upstreamWrite atomic.Int64
	upstreamPingSent, upstreamProgress                                         atomic.Int64
	// Counters for the log line.
	eolsSentUp, eolsSentDown, pingsSent, pongsReceived, upstreamPingsSent atomic.Int64
	lastTypeToClient, lastTypeToUp                                        atomic.Int32

	// upstreamHeard and clientHeard (method values made once) answer the
	// engine's UpstreamHeard and ClientHeard: the pump read bytes after the
	// snapshot the engine is judging (readSnap*, taken under kaMu by
	// activity), bytes wait in the receive queue, or the kernel received
	// some since.
	upstreamHeard, clientHeard       func() (time.Duration, bool)
	upstreamConn, clientConn         *wsconn.Conn
	readSnapUpstream, readSnapClient int64
	// lastHeardUpstream and lastHeardClient: what the last answer found,
	// for the late read or the death counted from it. Under kaMu.
	lastHeardUpstream, lastHeardClient heard

	kaMu    sync.Mutex
	ka      keepalive.Session
	timer   *time.Timer
	stopped bool
	verdict keepalive.Verdict
	// kernelSilence: when a deadline declared a peer dead, how long the
	// kernel had received nothing from it (wsconn.KernelSilence); -1 when
	// unknown. Logged beside the verdict.
	kernelSilence time.Duration
}

// heard is what heardSince found on one leg when a deadline passed.
type heard struct {
	by metrics.Evidence // the evidence used: a late read's label
	// kernelSilence is the kernel's answer when by is EvidenceKernel; -1
	// when it was not asked or did not know. A death comes only from
	// that answer, so it is the one logged with the verdict.
	kernelSilence time.Duration
}

// heldMsg is a client message held while the session's STOMP-ness is
// being decided.
type heldMsg struct {
	mt   int
	data []byte
}

// maxLeadMsgs: a client that sends more messages than this before its
// first frame is not a STOMP client (they heart-beat only after CONNECT).
const maxLeadMsgs = 64

// dirState is one direction's scanner and counters.
type dirState struct {
	scan inspect.Scanner
	lead []byte // EOLs of the current message before the client's first frame
	// leadMsgs: whole client messages (EOLs only, or empty) before the
	// client's first frame, held until the session turns out to be STOMP
	// (heart-beats before CONNECT: dropped in terminate mode) or not
	// (forwarded as they came, one message each).
	leadMsgs []heldMsg
	pending  []byte // command-line bytes seen before the command was known
	hold     []byte // a frame being held back to be rewritten
	holding  bool
	first    bool // the first frame of this direction has been seen
	midFrame atomic.Bool
	frames   [inspect.CmdError + 1]atomic.Int64
	eols     atomic.Int64
	// A run of frames of one command counted but not yet added to frames
	// and the metrics: published once per read (publishFrames), not per
	// frame, as each is an atomic add. Owned by this direction's pump.
	runCmd inspect.Command
	runN   int64
	hop    metrics.Hop       // the hop this direction is read from
	dir    metrics.Direction // for frame metrics
}

func newStompState(o *Options, start time.Time) *stompState {
	st := &stompState{mode: o.STOMP.Keepalive.Mode}
	st.fromC.scan = *inspect.NewScanner(o.STOMP.Limits)
	st.fromU.scan = *inspect.NewScanner(o.STOMP.Limits)
	st.fromC.hop, st.fromC.dir = metrics.HopClient, metrics.ClientToUpstream
	st.fromU.hop, st.fromU.dir = metrics.HopUpstream, metrics.UpstreamToClient
	st.ka.Init(o.STOMP.Keepalive, start)
	st.lastTypeToClient.Store(websocket.TextMessage)
	st.lastTypeToUp.Store(websocket.TextMessage)
	return st
}

// newStompStateFor returns the STOMP state for a session whose client
// negotiated subprotocol proto. When proto is not STOMP's, the state is
// disabled from the start and its engine only watches the broker (upstream
// pings). It runs before the session is visible to other goroutines, so
// s.stomp never changes after that.
func newStompStateFor(o *Options, proto string, start time.Time) *stompState {
	v := inspect.VersionFromSubprotocol(proto)
	st := newStompState(o, start)
	if proto != "" && v == inspect.VersionUnknown {
		st.disabled.Store(true)
		st.ka.NotSTOMP()
		return st
	}
	if v != inspect.VersionUnknown {
		st.fromC.scan.SetVersion(v)
		st.fromU.scan.SetVersion(v)
	}
	return st
}

// negotiatedVersion is the version from CONNECTED, for escaping
// stompgate's own frames; safe from any goroutine.
func (st *stompState) negotiatedVersion() inspect.Version {
	st.kaMu.Lock()
	defer st.kaMu.Unlock()
	return st.version
}

// activity is the engine's snapshot of the stamps; called under kaMu.
func (st *stompState) activity() keepalive.Activity {
	st.readSnapClient, st.readSnapUpstream = st.clientRead.Load(), st.upstreamRead.Load()
	return keepalive.Activity{
		ClientRead:    wsconn.Time(st.readSnapClient),
		ClientPong:    wsconn.Time(st.clientPong.Load()),
		ClientWrite:   wsconn.Time(st.clientWrite.Load()),
		PingSent:      wsconn.Time(st.pingSent.Load()),
		UpstreamRead:  wsconn.Time(st.readSnapUpstream),
		UpstreamWrite: wsconn.Time(st.upstreamWrite.Load()),
		// A pong is a read like any other (ReadStamp); a blocked write
		// that moves on proves the broker reads.
		UpstreamPingSent: wsconn.Time(st.upstreamPingSent.Load()),
		UpstreamProgress: wsconn.Time(st.upstreamProgress.Load()),
		// Asked only when a read deadline has passed: bytes that reached
		// the kernel mean the peer is alive and stompgate is late reading.
		UpstreamHeard: st.upstreamHeard,
		ClientHeard:   st.clientHeard,
	}
}

// heardUpstream and heardClient tell the engine, when a read deadline has
// passed, how long ago the peer's bytes in fact reached this host: 0 when
// the pump read some since the snapshot (the pump and the timer race) or
// some wait in the receive queue, else the kernel's silence (TCP_INFO).
// Called under kaMu, from Tick; two system calls at most, and only at a
// deadline.
func (st *stompState) heardUpstream() (time.Duration, bool) {
	return heardSince(st.upstreamRead.Load() != st.readSnapUpstream, st.upstreamConn, &st.lastHeardUpstream)
}

func (st *stompState) heardClient() (time.Duration, bool) {
	return heardSince(st.clientRead.Load() != st.readSnapClient, st.clientConn, &st.lastHeardClient)
}

// heardSince answers for one leg and records in h what it found.
func heardSince(readSinceSnapshot bool, c *wsconn.Conn, h *heard) (time.Duration, bool) {
	h.kernelSilence = -1
	switch {
	case readSinceSnapshot:
		h.by = metrics.EvidenceRead
		return 0, true
	case c.Unread():
		h.by = metrics.EvidenceUnread
		return 0, true
	}
	h.by = metrics.EvidenceKernel
	d, ok := c.KernelSilence()
	if ok {
		h.kernelSilence = d
	}
	return d, ok
}

// startStomp decides whether the session can be STOMP, hooks reads,
// writes, pings and pongs into liveness and starts the liveness timer. A
// session that is not STOMP keeps the timer only to ping the broker.
func (s *Session) startStomp() {
	st := s.stomp
	if st.disabled.Load() {
		proto := s.client.conn.Subprotocol()
		if s.h.opts.STOMP.Strict {
			s.refuse("subprotocol " + strconv.Quote(proto) + " is not STOMP")
			return
		}
		s.log.Debug("not a STOMP subprotocol: passing through unscanned", zap.String("subprotocol", proto))
	}
	now := wsconn.Now()
	st.clientRead.Store(now)
	st.upstreamRead.Store(now)

	// The legs' reads and flushes stamp st (see stompOptions).
	st.upstreamConn, st.clientConn = s.upstream.conn, s.client.conn
	st.upstreamHeard, st.clientHeard = st.heardUpstream, st.heardClient
	st.kaMu.Lock()
	watching := st.ka.Watching()
	if watching {
		st.timer = time.AfterFunc(time.Hour, s.onTimer)
	}
	st.kaMu.Unlock()
	if watching {
		s.kick()
	}
}

// stompOptions adds to o, leg l's wsconn options, the stamps of the
// session's STOMP state. Every read stamps its leg (wsconn does it once
// per read system call, not per message), so any byte counts as
// liveness: data, heart-beats, pings and pongs alike. Data flushed to a
// leg is what its STOMP peer sees as traffic.
func (s *Session) stompOptions(l *leg, o *wsconn.Options) {
	st := s.stomp
	if l == s.client {
		o.ReadStamp = &st.clientRead
		o.WriteStamp = &st.clientWrite
		o.OnPong = func([]byte) {
			st.clientPong.Store(wsconn.Now())
			st.pongsReceived.Add(1)
			s.h.metrics.PongsReceived.Inc()
		}
		return
	}
	o.ReadStamp = &st.upstreamRead
	o.WriteStamp = &st.upstreamWrite
	o.WriteProgress = &st.upstreamProgress
}

// pong answers a ping (RFC 6455 §5.5.2). A failed write is left to the
// pumps: the next data write to l fails the same way.
func (s *Session) pong(l *leg, data []byte) {
	// A zero deadline: the write fails only when the peer reads nothing
	// for WriteTimeout (wsconn), as data writes do.
	_ = l.conn.WriteControl(websocket.PongMessage, data, time.Time{})
}

// disableStomp turns the session into a plain WebSocket proxy, whose
// broker is still watched by pings.
func (s *Session) disableStomp(why string) {
	st := s.stomp
	if st.disabled.Swap(true) {
		return
	}
	st.kaMu.Lock()
	st.ka.NotSTOMP()
	watching := st.ka.Watching()
	st.kaMu.Unlock()
	if watching {
		s.kick()
	} else {
		s.stopTimer()
	}
	s.log.Debug("not STOMP: passing through unscanned", zap.String("why", why))
}

// kick runs the liveness engine now; lifecycle events can move its deadlines
// earlier.
func (s *Session) kick() {
	st := s.stomp
	st.kaMu.Lock()
	if st.timer != nil && !st.stopped {
		st.timer.Reset(0)
	}
	st.kaMu.Unlock()
}

func (s *Session) stopTimer() {
	st := s.stomp
	if st == nil {
		return
	}
	st.kaMu.Lock()
	st.stopped = true
	if st.timer != nil {
		st.timer.Stop()
	}
	st.ka.Close()
	st.kaMu.Unlock()
}

// onTimer runs the liveness engine and carries out what it asks. Tick and
// the timer's re-arming happen under kaMu, so the latest decision always
// sets the timer.
//
// onTimer runs on a new goroutine at every firing (time.AfterFunc), whose
// stack starts small (2 KiB in the soak): the frames down to the write
// system call must fit in it, or every heart-beat pays a stack copy
// (runtime.copystack was 6 % of stompgate's CPU in the soak, 2026-12-07).
// So the common path, Tick and EOLs, keeps a small frame: the engine runs
// in tick (which also counts late reads, in countLateReads), and pings,
// verdicts and ends in onTimerRare, none inlined.
func (s *Session) onTimer() {
	acts, ok := s.tick()
	if !ok {
		return
	}
	st := s.stomp
	if acts.Has(keepalive.SendUpstreamEOL) && s.sendEOL(s.upstream, &st.fromC, &st.lastTypeToUp) {
		st.eolsSentUp.Add(1)
		s.h.metrics.HeartbeatSent(metrics.HopUpstream)
	}
	if acts.Has(keepalive.SendClientEOL) && s.sendEOL(s.client, &st.fromU, &st.lastTypeToClient) {
		st.eolsSentDown.Add(1)
		s.h.metrics.HeartbeatSent(metrics.HopClient)
	}
	const rare = keepalive.PingClient | keepalive.PingUpstream | keepalive.ClientDead | keepalive.UpstreamDead
	if acts&rare != 0 {
		s.onTimerRare(acts)
	}
}

// tick runs the engine under kaMu, re-arms the timer and records a new
// verdict; false when the session no longer ticks.
//
//go:noinline
func (s *Session) tick() (keepalive.Actions, bool) {
	st := s.stomp
	st.kaMu.Lock()
	defer st.kaMu.Unlock()
	if st.stopped || s.closing.Load() {
		return 0, false
	}
	now := time.Now()
	acts, next := st.ka.Tick(now, st.activity())
	if !next.IsZero() {
		st.timer.Reset(next.Sub(now))
	}
	// Counted here, under kaMu, beside the evidence the engine's Heard
	// call just recorded.
	if acts&(keepalive.UpstreamLateRead|keepalive.ClientLateRead) != 0 {
		s.countLateReads(acts)
	}
	verdict := st.ka.Verdict()
	if verdict.Dead() && !st.verdict.Dead() {
		st.verdict = verdict
		// A passed deadline asked heardSince in this Tick: its answer is
		// the kernel's view at the death.
		st.kernelSilence = st.lastHeardUpstream.kernelSilence
		if verdict.Hop == keepalive.HopClient {
			st.kernelSilence = st.lastHeardClient.kernelSilence
		}
		reason := metrics.ReasonHeartbeatTimeout
		if verdict.Cause == keepalive.CausePongTimeout {
			reason = metrics.ReasonPongTimeout
		}
		hop := metrics.HopUpstream
		if verdict.Hop == keepalive.HopClient {
			hop = metrics.HopClient
		}
		s.h.metrics.LivenessFailure(hop, reason)
	}
	return acts, true
}

// countLateReads counts the late reads in acts by the evidence that showed
// them. Under kaMu, from tick.
//
//go:noinline
func (s *Session) countLateReads(acts keepalive.Actions) {
	st := s.stomp
	if acts.Has(keepalive.UpstreamLateRead) {
		s.h.metrics.LateRead(metrics.HopUpstream, st.lastHeardUpstream.by)
	}
	if acts.Has(keepalive.ClientLateRead) {
		s.h.metrics.LateRead(metrics.HopClient, st.lastHeardClient.by)
	}
}

// onTimerRare carries out the engine's pings and death verdicts (see
// onTimer for why they are apart).
//
//go:noinline
func (s *Session) onTimerRare(acts keepalive.Actions) {
	st := s.stomp
	if acts.Has(keepalive.PingClient) {
		// Stamped before the write: a pong can be read before WriteControl
		// returns, and a stamp after it would make that pong look early.
		st.pingSent.Store(wsconn.Now())
		if err := s.client.conn.WriteControl(websocket.PingMessage, nil, time.Time{}); err == nil {
			st.pingsSent.Add(1)
			s.h.metrics.PingsSent.Inc()
		}
	}
	if acts.Has(keepalive.PingUpstream) {
		// Stamped before the write, as the client's. The write may wait
		// behind data the broker is slow to read: its progress counts as
		// an answer meanwhile (WriteProgress).
		st.upstreamPingSent.Store(wsconn.Now())
		if err := s.upstream.conn.WriteControl(websocket.PingMessage, nil, time.Time{}); err == nil {
			st.upstreamPingsSent.Add(1)
		}
	}
	if !acts.Has(keepalive.ClientDead) && !acts.Has(keepalive.UpstreamDead) {
		return
	}
	st.kaMu.Lock()
	verdict := st.verdict
	st.kaMu.Unlock()
	switch {
	case acts.Has(keepalive.ClientDead):
		s.finish(end{leg: s.client, kind: endDead, text: verdict.String()})
	case acts.Has(keepalive.UpstreamDead):
		s.finish(end{leg: s.upstream, kind: endDead, text: verdict.String()})
	}
}

// sendEOL writes one "\n" message to l, unless a message to l is being
// written (data is flowing, so no heart-beat is needed) or the direction
// toward l is in the middle of a frame (an EOL there would corrupt it).
func (s *Session) sendEOL(l *leg, toward *dirState, mt *atomic.Int32) bool {
	if !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	if s.closing.Load() || l.truncated.Load() || toward.midFrame.Load() {
		return false
	}
	return l.conn.WriteMessage(int(mt.Load()), eol) == nil
}

var eol = []byte{'\n'}

// filter scans one chunk read from src and writes what the other side must
// get into out: ranges of the chunk, and the rewritten frames that were held
// back. In terminate mode heart-beat EOLs are consumed here.
func (s *Session) filter(d *dirState, fromClient bool, chunk []byte, out *msgWriter) error {
	st := s.stomp
	terminate := st.mode == keepalive.Terminate
	undecided := fromClient && !d.first
	d.scan.Feed(chunk)
	pos := 0
	// rest: the current frame needs no event before its end (not held, not
	// an ERROR whose message is kept), so the scanner reports the rest of
	// it at once.
	rest := false
	for {
		var ev inspect.Event
		var err error
		if rest {
			ev, err = d.scan.Rest()
		} else {
			ev, err = d.scan.Next()
		}
		if err != nil {
			if undecided && !s.h.opts.STOMP.Strict {
				// Not STOMP after all: everything goes through untouched.
				s.disableStomp("client sent no STOMP frame: " + err.Error())
				s.flushUndecided(d, out)
				out.writeChunk(chunk[pos:])
				return nil
			}
			return err
		}
		pos = ev.End
		seg := chunk[ev.Start:ev.End]
		switch ev.Kind {
		case inspect.NeedMore:
			return nil
		case inspect.EOL:
			d.eols.Add(1)
			s.h.metrics.HeartbeatReceived(d.hop)
			switch {
			case undecided:
				d.lead = append(d.lead, seg...)
			case !terminate:
				out.writeChunk(seg)
			}
			continue
		case inspect.Partial:
			if ev.Command == inspect.CmdUnknown && !d.holding {
				// The command is not known yet: keep its bytes until it is.
				d.pending = append(d.pending, seg...)
				continue
			}
		case inspect.FrameStart:
			if err := s.frameStart(d, fromClient, ev.Command); err != nil {
				return err
			}
			if st.disabled.Load() {
				s.flushUndecided(d, out)
				out.writeChunk(chunk[ev.Start:])
				return nil
			}
			if undecided {
				// Heart-beats before CONNECT never reach the broker in
				// terminate mode: Spring answers them with ERROR + 1002.
				if !terminate {
					s.writeHeld(d, out.dst)
					out.write(d.lead)
				}
				d.lead, d.leadMsgs = d.lead[:0], nil
				undecided = false
			}
			if d.holding {
				d.hold = append(d.hold[:0], d.pending...)
			} else {
				out.write(d.pending)
			}
			d.pending = d.pending[:0]
			rest = !d.holding && (fromClient || ev.Command != inspect.CmdError)
		}
		if d.holding {
			d.hold = append(d.hold, seg...)
		} else {
			out.writeChunk(seg)
		}
		switch ev.Kind {
		case inspect.HeadersEnd:
			// The ERROR the client is sent, the first one: not one
			// discarded after the end (a broker's answer to stompgate's
			// own DISCONNECT).
			if !fromClient && ev.Command == inspect.CmdError && !out.discard && !st.sawError.Load() {
				st.sawError.Store(true)
				if m, ok := d.scan.Header("message"); ok {
					msg := string(m)
					st.errorMessage.Store(&msg)
				}
			}
		case inspect.FrameEnd:
			rest = false
			if ev.Command != d.runCmd {
				s.publishFrames(d)
				d.runCmd = ev.Command
			}
			d.runN++
			if d.holding {
				d.holding = false
				if err := s.release(d, fromClient, ev.Command, out); err != nil {
					return err
				}
			}
		}
	}
}

// publishFrames adds d's run of counted frames to its counters.
func (s *Session) publishFrames(d *dirState) {
	if d.runN == 0 {
		return
	}
	d.frames[d.runCmd].Add(d.runN)
	s.h.metrics.Frames(d.dir, d.runCmd, d.runN)
	d.runN = 0
}

// flushUndecided writes what was held while the session's STOMP-ness was
// being decided: the whole messages as they came, then what the current
// message held (out has not begun: nothing of it was written).
func (s *Session) flushUndecided(d *dirState, out *msgWriter) {
	s.writeHeld(d, out.dst)
	out.write(d.lead)
	out.write(d.pending)
	d.lead, d.pending = nil, nil
}

// writeHeld forwards the held whole messages to dst, each as the message
// it was (type, boundaries, emptiness).
func (s *Session) writeHeld(d *dirState, dst *leg) {
	for _, m := range d.leadMsgs {
		dst.wmu.Lock()
		if !dst.truncated.Load() {
			dst.conn.BeginMessage(m.mt)
			if err := dst.conn.WriteEnd(m.data); err != nil {
				dst.wmu.Unlock()
				s.writeFailed(dst, err)
				break
			}
		}
		dst.wmu.Unlock()
	}
	d.leadMsgs = nil
}

// endOfClientMessage is called after each whole client message. A STOMP
// client's first message holds at least CONNECT's command line, so a first
// message that leaves a partial line behind is not STOMP. One made only of
// EOLs, or empty, is held (held) until the session is known to be STOMP
// or not.
func (s *Session) endOfClientMessage(d *dirState, out *msgWriter) (held bool, err error) {
	if d.first {
		return false, nil
	}
	if len(d.pending) == 0 {
		if len(d.leadMsgs) < maxLeadMsgs {
			d.leadMsgs = append(d.leadMsgs, heldMsg{mt: out.mt, data: append([]byte(nil), d.lead...)})
			d.lead = d.lead[:0]
			return true, nil
		}
		if s.h.opts.STOMP.Strict {
			return false, &protocolError{msg: "first frame must be CONNECT or STOMP", code: websocket.CloseProtocolError}
		}
		s.disableStomp("client sent " + strconv.Itoa(maxLeadMsgs) + " messages before a frame")
		s.flushUndecided(d, out)
		return false, nil
	}
	if s.h.opts.STOMP.Strict {
		return false, &protocolError{msg: "first frame must be CONNECT or STOMP", code: websocket.CloseProtocolError}
	}
	s.disableStomp("client's first message is not a STOMP frame")
	s.flushUndecided(d, out)
	return false, nil
}

// frameStart decides, when a frame's command is known, whether the session
// is STOMP at all and whether the frame must be held back for rewriting.
func (s *Session) frameStart(d *dirState, fromClient bool, cmd inspect.Command) error {
	st := s.stomp
	if fromClient && !d.first {
		d.first = true
		if !cmd.IsConnect() {
			if s.h.opts.STOMP.Strict {
				return &protocolError{msg: "first frame must be CONNECT or STOMP, got " + cmd.String(), code: websocket.CloseProtocolError}
			}
			s.disableStomp("first client frame is " + cmd.String())
			return nil
		}
	}
	switch {
	case fromClient && cmd.IsConnect():
		d.holding = true
	case fromClient && cmd == inspect.CmdDisconnect:
		d.holding = true
	case !fromClient && cmd == inspect.CmdConnected && !d.first:
		d.holding = true
	case !fromClient && cmd == inspect.CmdReceipt && st.ourReceipt.Load() != nil:
		d.holding = true
	}
	if !fromClient {
		d.first = true
	}
	return nil
}

// protocolError is a STOMP-level failure stompgate detected itself.
type protocolError struct {
	msg  string
	code int
}

func (e *protocolError) Error() string { return e.msg }

// release writes a held frame, rewritten as the contract requires.
func (s *Session) release(d *dirState, fromClient bool, cmd inspect.Command, out *msgWriter) error {
	st := s.stomp
	frame := d.hold
	terminate := st.mode == keepalive.Terminate
	now := time.Now()
	switch {
	case fromClient && cmd.IsConnect():
		raw, present := inspect.HeaderValue(frame, "heart-beat")
		chb, err := inspect.HeartBeatHeader(raw, present)
		if err != nil {
			return &protocolError{msg: "invalid heart-beat header in " + cmd.String(), code: websocket.CloseProtocolError}
		}
		av, avOK := inspect.HeaderValue(frame, "accept-version")
		send := chb
		if terminate {
			send = s.h.opts.STOMP.UpstreamHeartBeat
		}
		// Under kaMu: /debug/sessions reads these while the session runs.
		st.kaMu.Lock()
		st.offered = inspect.VersionFromHeaders(cmd, av, avOK)
		st.clientHB = chb
		st.sentUpHB = send
		st.kaMu.Unlock()
		if terminate || present {
			// Normalised even in passthrough: Spring rejects "10000, 10000".
			var rerr error
			frame, rerr = inspect.RewriteHeartBeat(nil, frame, send)
			if rerr != nil {
				return &protocolError{msg: "cannot rewrite " + cmd.String(), code: websocket.CloseProtocolError}
			}
		}
		out.write(frame)
		st.connectSeen.Store(true)
		st.kaMu.Lock()
		st.ka.ConnectForwarded(now, kaVersion(st.offered))
		st.kaMu.Unlock()
		s.kick()
	case fromClient && cmd == inspect.CmdDisconnect:
		if _, has := inspect.HeaderValue(frame, "receipt"); !has && terminate {
			receipt := "stompgate-" + s.id
			st.ourReceipt.Store(&receipt)
			frame, _ = inspect.AddHeader(nil, frame, "receipt", receipt)
		}
		out.write(frame)
		st.disconnectSent.Store(true)
		st.clientDisconnect.Store(true)
		st.kaMu.Lock()
		st.ka.DisconnectForwarded()
		st.kaMu.Unlock()
	case !fromClient && cmd == inspect.CmdConnected:
		raw, present := inspect.HeaderValue(frame, "heart-beat")
		shb, _ := inspect.HeartBeatHeader(raw, present)
		vv, vOK := inspect.HeaderValue(frame, "version")
		version := inspect.VersionFromHeaders(cmd, vv, vOK)
		st.fromC.scan.SetVersion(version)
		st.fromU.scan.SetVersion(version)
		down := shb
		if terminate && version >= inspect.V11 {
			down = s.h.opts.STOMP.ClientHeartBeat
			frame, _ = inspect.RewriteHeartBeat(nil, frame, down)
		}
		st.kaMu.Lock()
		st.version = version
		st.upHB = shb
		st.sentDownHB = down
		st.kaMu.Unlock()
		out.write(frame)
		st.connected.Store(true)
		p, c := st.sentUpHB, st.clientHB
		up, dn := keepalive.Negotiate(kaHB(p), kaHB(shb), kaHB(c), kaHB(down))
		if !terminate {
			up, dn = keepalive.Negotiate(kaHB(c), kaHB(shb), kaHB(c), kaHB(shb))
		}
		st.kaMu.Lock()
		st.ka.UpstreamConnected(now, kaVersion(st.version), up)
		st.ka.ClientConnected(now, kaVersion(st.version), dn)
		st.kaMu.Unlock()
		s.kick()
	case !fromClient && cmd == inspect.CmdReceipt:
		id, _ := inspect.HeaderValue(frame, "receipt-id")
		if ours := st.ourReceipt.Load(); ours != nil && string(id) == *ours {
			// stompgate's own receipt: the client never asked for it. It
			// answers the client's DISCONNECT, or stompgate's goodbye.
			if s.closing.Load() {
				s.goodbyeDone()
			} else {
				s.finish(end{leg: s.client, kind: endDisconnected})
			}
			return nil
		}
		out.write(frame)
	default:
		out.write(frame)
	}
	return nil
}

func kaHB(h inspect.HeartBeat) keepalive.HeartBeat {
	return keepalive.HeartBeat{Out: h.Send, In: h.Receive}
}

func kaVersion(v inspect.Version) keepalive.Version {
	switch v {
	case inspect.V11:
		return keepalive.V11
	case inspect.V12:
		return keepalive.V12
	}
	return keepalive.V10
}

// stompFields adds the STOMP part of a session's log line.
func (s *Session) stompFields() []zap.Field {
	st := s.stomp
	st.kaMu.Lock()
	up, down := st.ka.Periods()
	verdict, kernelSilence := st.verdict, st.kernelSilence
	st.kaMu.Unlock()
	var fields []zap.Field
	if st.disabled.Load() {
		fields = append(fields, zap.Bool("stomp", false), zap.Int64("upstream_pings_sent", st.upstreamPingsSent.Load()))
	} else {
		fields = append(fields,
			zap.Bool("stomp", true),
			zap.String("stomp_version", st.version.String()),
			zap.String("client_heart_beat", st.clientHB.String()),
			zap.String("upstream_heart_beat", st.upHB.String()),
			zap.Duration("up_send_period", up.Send),
			zap.Duration("up_recv_period", up.Recv),
			zap.Duration("down_send_period", down.Send),
			zap.Duration("down_recv_period", down.Recv),
			zap.Int64("heartbeats_from_client", st.fromC.eols.Load()),
			zap.Int64("heartbeats_from_upstream", st.fromU.eols.Load()),
			zap.Int64("heartbeats_to_upstream", st.eolsSentUp.Load()),
			zap.Int64("heartbeats_to_client", st.eolsSentDown.Load()),
			zap.Int64("pings_sent", st.pingsSent.Load()),
			zap.Int64("pongs_received", st.pongsReceived.Load()),
			zap.Int64("upstream_pings_sent", st.upstreamPingsSent.Load()),
			zap.Object("frames_from_client", commandCounts{&st.fromC}),
			zap.Object("frames_from_upstream", commandCounts{&st.fromU}),
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
	if m := st.errorMessage.Load(); m != nil {
		fields = append(fields, zap.String("upstream_error", *m))
	}
	return fields
}

// commandCounts logs a direction's frame counts by command.
type commandCounts struct{ d *dirState }

func (c commandCounts) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	d := c.d
	for cmd := range d.frames {
		if n := d.frames[cmd].Load(); n > 0 {
			enc.AddInt64(inspect.Command(cmd).String(), n)
		}
	}
	return nil
}
