package proxy

import (
	"sync"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// liveness drives a session's keepalive engine: one timer, which runs the
// engine (keepalive.Session.Tick) with a snapshot of both legs' evidence
// and carries out what it asks: heart-beat EOLs and pings to either peer,
// and the verdict that a peer is dead, which ends the session.
//
// The engine and the timer are guarded by mu. The timer's goroutine, the
// pumps (through the STOMP flow's events) and the ending path all reach it.
type liveness struct {
	s *Session

	// clientHeard and upstreamHeard are the legs' heardSince, made once
	// (docs/internals/hot-path.md#made-once): the engine asks them only
	// when a read deadline has passed.
	clientHeard, upstreamHeard func() (time.Duration, bool)

	mu      sync.Mutex
	ka      keepalive.Session
	timer   *time.Timer
	stopped bool
	verdict keepalive.Verdict
	// kernelSilence: when a deadline declared a peer dead, how long the
	// kernel had received nothing from it (wsconn.KernelSilence); -1 when
	// unknown. Logged beside the verdict.
	kernelSilence time.Duration
}

func (lv *liveness) init(s *Session, cfg keepalive.Config, start time.Time) {
	lv.s = s
	lv.ka.Init(cfg, start)
	lv.clientHeard, lv.upstreamHeard = s.client.heardSince, s.upstream.heardSince
}

// start arms the timer when the engine has anything to watch. A session
// that is not STOMP keeps it only to ping the broker.
func (lv *liveness) start() {
	lv.mu.Lock()
	watching := lv.ka.Watching()
	if watching {
		lv.timer = time.AfterFunc(time.Hour, lv.onTimer)
	}
	lv.mu.Unlock()
	if watching {
		lv.kick()
	}
}

// kick runs the engine now; lifecycle events can move its deadlines
// earlier.
func (lv *liveness) kick() {
	lv.mu.Lock()
	if lv.timer != nil && !lv.stopped {
		lv.timer.Reset(0)
	}
	lv.mu.Unlock()
}

func (lv *liveness) stop() {
	lv.mu.Lock()
	lv.stopped = true
	if lv.timer != nil {
		lv.timer.Stop()
	}
	lv.ka.Close()
	lv.mu.Unlock()
}

// notSTOMP leaves the engine only the broker to watch (by pings).
func (lv *liveness) notSTOMP() {
	lv.mu.Lock()
	lv.ka.NotSTOMP()
	watching := lv.ka.Watching()
	lv.mu.Unlock()
	if watching {
		lv.kick()
	} else {
		lv.stop()
	}
}

func (lv *liveness) connectForwarded(offered inspect.Version) {
	lv.mu.Lock()
	lv.ka.ConnectForwarded(time.Now(), offered)
	lv.mu.Unlock()
	lv.kick()
}

func (lv *liveness) disconnectForwarded() {
	lv.mu.Lock()
	lv.ka.DisconnectForwarded()
	lv.mu.Unlock()
}

func (lv *liveness) connected(v inspect.Version, upstream, client keepalive.Periods) {
	now := time.Now()
	lv.mu.Lock()
	lv.ka.UpstreamConnected(now, v, upstream)
	lv.ka.ClientConnected(now, v, client)
	lv.mu.Unlock()
	lv.kick()
}

// periods returns each hop's negotiated heart-beat periods.
func (lv *liveness) periods() (upstream, client keepalive.Periods) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.ka.Periods()
}

// activity is the engine's snapshot of both legs' evidence; under mu.
func (lv *liveness) activity() keepalive.Activity {
	c, u := lv.s.client, lv.s.upstream
	c.readSnap, u.readSnap = c.readAt.Load(), u.readAt.Load()
	return keepalive.Activity{
		ClientRead:  wsconn.Time(c.readSnap),
		ClientPong:  wsconn.Time(c.pongAt.Load()),
		ClientWrite: wsconn.Time(c.writeAt.Load()),
		PingSent:    wsconn.Time(c.pingSentAt.Load()),
		// The broker's pong is a read like any other; a blocked write
		// that moves on proves the broker reads.
		UpstreamRead:     wsconn.Time(u.readSnap),
		UpstreamWrite:    wsconn.Time(u.writeAt.Load()),
		UpstreamPingSent: wsconn.Time(u.pingSentAt.Load()),
		UpstreamProgress: wsconn.Time(u.progressAt.Load()),
		// Asked only when a read deadline has passed: bytes that reached
		// the kernel mean the peer is alive and stompgate is late reading.
		UpstreamHeard: lv.upstreamHeard,
		ClientHeard:   lv.clientHeard,
	}
}

// onTimer runs the engine and carries out what it asks. Tick and the
// timer's re-arming happen under mu, so the latest decision always sets
// the timer.
//
// onTimer runs on a new goroutine at every firing (time.AfterFunc), whose
// stack starts small: the frames down to the write system call must fit
// in it, or every heart-beat pays a stack copy. So the common path, Tick
// and EOLs, keeps a small frame: the engine runs in tick (which also
// counts late reads, in countLateReads), and pings, verdicts and ends in
// onTimerRare, none inlined (docs/internals/hot-path.md#timer-frame; the
// firing allocates nothing: #timer-allocs).
func (lv *liveness) onTimer() {
	acts, ok := lv.tick()
	if !ok {
		return
	}
	s := lv.s
	if acts.Has(keepalive.SendUpstreamEOL) && s.upstream.sendEOL(&s.closing) {
		s.upstream.heartBeatsSent.Add(1)
		s.h.metrics.HeartbeatSent(metrics.HopUpstream)
	}
	if acts.Has(keepalive.SendClientEOL) && s.client.sendEOL(&s.closing) {
		s.client.heartBeatsSent.Add(1)
		s.h.metrics.HeartbeatSent(metrics.HopClient)
	}
	const rare = keepalive.PingClient | keepalive.PingUpstream | keepalive.ClientDead | keepalive.UpstreamDead
	if acts&rare != 0 {
		lv.onTimerRare(acts)
	}
}

// tick runs the engine under mu, re-arms the timer and records a new
// verdict; false when the session no longer ticks.
//
//go:noinline
func (lv *liveness) tick() (keepalive.Actions, bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.stopped || lv.s.closing.Load() {
		return 0, false
	}
	now := time.Now()
	acts, next := lv.ka.Tick(now, lv.activity())
	if !next.IsZero() {
		lv.timer.Reset(next.Sub(now))
	}
	// Counted here, under mu, beside the evidence the engine's Heard
	// call just recorded.
	if acts&(keepalive.UpstreamLateRead|keepalive.ClientLateRead) != 0 {
		lv.countLateReads(acts)
	}
	verdict := lv.ka.Verdict()
	if verdict.Dead() && !lv.verdict.Dead() {
		lv.verdict = verdict
		// A passed deadline asked heardSince in this Tick: its answer is
		// the kernel's view at the death.
		lv.kernelSilence = lv.s.upstream.heard.kernelSilence
		if verdict.Hop == keepalive.HopClient {
			lv.kernelSilence = lv.s.client.heard.kernelSilence
		}
		reason := metrics.ReasonHeartbeatTimeout
		if verdict.Cause == keepalive.CausePongTimeout {
			reason = metrics.ReasonPongTimeout
		}
		hop := metrics.HopUpstream
		if verdict.Hop == keepalive.HopClient {
			hop = metrics.HopClient
		}
		if !lv.s.conv.ClientDisconnected() {
			// After the client's DISCONNECT a silent peer is no failure:
			// the session ends as the client's (attribute).
			lv.s.h.metrics.LivenessFailure(hop, reason)
		}
	}
	return acts, true
}

// countLateReads counts the late reads in acts by the evidence that showed
// them. Under mu, from tick.
//
//go:noinline
func (lv *liveness) countLateReads(acts keepalive.Actions) {
	s := lv.s
	if acts.Has(keepalive.UpstreamLateRead) {
		s.h.metrics.LateRead(metrics.HopUpstream, s.upstream.heard.by)
	}
	if acts.Has(keepalive.ClientLateRead) {
		s.h.metrics.LateRead(metrics.HopClient, s.client.heard.by)
	}
}

// onTimerRare carries out the engine's pings and death verdicts (see
// onTimer for why they are apart).
//
//go:noinline
func (lv *liveness) onTimerRare(acts keepalive.Actions) {
	s := lv.s
	if acts.Has(keepalive.PingClient) && s.client.ping() {
		s.h.metrics.PingsSent.Inc()
	}
	if acts.Has(keepalive.PingUpstream) {
		s.upstream.ping()
	}
	if !acts.Has(keepalive.ClientDead) && !acts.Has(keepalive.UpstreamDead) {
		return
	}
	lv.mu.Lock()
	verdict := lv.verdict
	lv.mu.Unlock()
	switch {
	case acts.Has(keepalive.ClientDead):
		s.finish(end{leg: s.client, kind: endDead, text: verdict.String()})
	case acts.Has(keepalive.UpstreamDead):
		s.finish(end{leg: s.upstream, kind: endDead, text: verdict.String()})
	}
}

// outcome returns the verdict and the kernel's silence at the death, for
// the log line.
func (lv *liveness) outcome() (keepalive.Verdict, time.Duration) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return lv.verdict, lv.kernelSilence
}
