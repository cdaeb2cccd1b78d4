package keepalive

import (
	"slices"
	"testing"
	"time"

	"github.com/stompgate/stompgate/inspect"
)

// This file holds a tiny discrete-event simulator: a fake clock, a client
// and a broker with scripted behaviours, and a "proxy" that records
// timestamps, calls Tick when its timer fires and executes the actions
// immediately. Times are offsets from t0.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	ms = time.Millisecond
	s1 = time.Second
	// eps absorbs the simulator's own granularity (none: timers fire exactly).
	eps = time.Millisecond
)

// clientPeer describes the client's behaviour.
type clientPeer struct {
	sendEvery time.Duration // sends something (EOL or frame) every sendEvery; 0 = never
	forward   bool          // what it sends is a frame the proxy forwards upstream
	pongDelay time.Duration // answers pings after this delay; negative = never
	stopAt    time.Duration // from here on: no sends, no pongs (0 = never)
}

func (c clientPeer) alive(at time.Duration) bool { return c.stopAt == 0 || at < c.stopAt }

// brokerPeer describes the broker's behaviour.
type brokerPeer struct {
	sendEvery time.Duration // sends something every sendEvery after CONNECTED; 0 = never
	relay     bool          // the proxy relays it to the client (Passthrough)
	stopAt    time.Duration // from here on: silent (0 = never)
}

func (b brokerPeer) alive(at time.Duration) bool { return b.stopAt == 0 || at < b.stopAt }

type step struct {
	at time.Duration
	fn func(*sim)
}

type event struct {
	at  time.Duration
	act Actions
}

type sim struct {
	t      *testing.T
	s      *Session
	now    time.Duration
	a      Activity
	next   time.Time // zero: no timer armed
	client clientPeer
	broker brokerPeer
	steps  []step

	clientNext, brokerNext time.Duration // next peer send, 0 = none
	pongs                  []time.Duration

	fwd, disc      bool          // CONNECT / DISCONNECT forwarded
	upConnected    time.Duration // 0 = not yet
	downConnected  time.Duration // 0 = not yet
	downV          inspect.Version
	events         []event
	dead           Actions
	deadAt         time.Duration
	upWrites       []time.Duration // data written upstream (frames and EOLs)
	clientData     []time.Duration // data written to the client
	clientAnyBytes []time.Duration // data or pings written to the client
	reads          []time.Duration // anything read from the client
	ticks          int
}

func newSim(t *testing.T, cfg Config, c clientPeer, b brokerPeer, steps ...step) *sim {
	t.Helper()
	sm := &sim{t: t, s: NewSession(cfg, t0), client: c, broker: b, steps: steps}
	slices.SortStableFunc(sm.steps, func(x, y step) int { return int(x.at - y.at) })
	if c.sendEvery > 0 {
		sm.clientNext = c.sendEvery
	}
	sm.clientAnyBytes = []time.Duration{0} // the upgrade response
	sm.reads = []time.Duration{0}
	sm.tick()
	return sm
}

func (sm *sim) at(d time.Duration) time.Time { return t0.Add(d) }

// run advances the fake clock to end, or until a peer is declared dead.
func (sm *sim) run(end time.Duration) *sim {
	sm.t.Helper()
	for sm.dead == 0 {
		n := end + 1
		if !sm.next.IsZero() {
			n = min(n, sm.next.Sub(t0))
		}
		if sm.clientNext > 0 {
			n = min(n, sm.clientNext)
		}
		if sm.brokerNext > 0 {
			n = min(n, sm.brokerNext)
		}
		for _, p := range sm.pongs {
			n = min(n, p)
		}
		if len(sm.steps) > 0 {
			n = min(n, sm.steps[0].at)
		}
		if n > end {
			break
		}
		if n < sm.now {
			sm.t.Fatalf("simulator went back in time: %v < %v", n, sm.now)
		}
		sm.now = n
		sm.peers()
		tickNow := false
		for len(sm.steps) > 0 && sm.steps[0].at <= sm.now {
			sm.steps[0].fn(sm)
			sm.steps = sm.steps[1:]
			tickNow = true // the proxy calls Tick after each lifecycle notification
		}
		if tickNow || (!sm.next.IsZero() && !sm.next.After(sm.at(sm.now))) {
			sm.tick()
		}
	}
	if sm.dead == 0 {
		sm.now = max(sm.now, end)
	}
	return sm
}

// peers applies the client's and the broker's behaviour at sm.now.
func (sm *sim) peers() {
	now := sm.now
	if sm.clientNext > 0 && sm.clientNext <= now {
		if sm.client.alive(now) {
			sm.clientRead()
			if sm.client.forward && sm.fwd && !sm.disc {
				sm.a.UpstreamWrite = sm.at(now)
				sm.upWrites = append(sm.upWrites, now)
			}
			sm.clientNext += sm.client.sendEvery
		} else {
			sm.clientNext = 0
		}
	}
	kept := sm.pongs[:0]
	for _, p := range sm.pongs {
		if p > now {
			kept = append(kept, p)
			continue
		}
		if sm.client.alive(p) {
			sm.a.ClientPong = sm.at(now)
			sm.clientRead()
		}
	}
	sm.pongs = kept
	if sm.brokerNext > 0 && sm.brokerNext <= now {
		if sm.broker.alive(now) {
			sm.a.UpstreamRead = sm.at(now)
			if sm.broker.relay && sm.downConnected > 0 {
				sm.a.ClientWrite = sm.at(now)
				sm.clientData = append(sm.clientData, now)
				sm.clientAnyBytes = append(sm.clientAnyBytes, now)
			}
			sm.brokerNext += sm.broker.sendEvery
		} else {
			sm.brokerNext = 0
		}
	}
}

func (sm *sim) clientRead() {
	sm.a.ClientRead = sm.at(sm.now)
	sm.reads = append(sm.reads, sm.now)
}

// tick is the proxy's timer callback: snapshot, Tick, execute, re-arm.
func (sm *sim) tick() {
	sm.t.Helper()
	sm.ticks++
	act, next := sm.s.Tick(sm.at(sm.now), sm.a)
	if !next.IsZero() && !next.After(sm.at(sm.now)) {
		sm.t.Fatalf("at %v: next wake-up %v is not in the future", sm.now, next.Sub(t0))
	}
	sm.next = next
	if act == 0 {
		return
	}
	sm.events = append(sm.events, event{sm.now, act})
	if act.Has(SendUpstreamEOL) {
		if !sm.fwd || sm.disc {
			sm.t.Fatalf("at %v: upstream EOL outside CONNECT..DISCONNECT (fwd=%v disc=%v)", sm.now, sm.fwd, sm.disc)
		}
		sm.a.UpstreamWrite = sm.at(sm.now)
		sm.upWrites = append(sm.upWrites, sm.now)
	}
	if act.Has(SendClientEOL) {
		if sm.downConnected == 0 || sm.downV < inspect.V11 {
			sm.t.Fatalf("at %v: client EOL before CONNECTED or to a %v client", sm.now, sm.downV)
		}
		sm.a.ClientWrite = sm.at(sm.now)
		sm.clientData = append(sm.clientData, sm.now)
		sm.clientAnyBytes = append(sm.clientAnyBytes, sm.now)
	}
	if act.Has(PingClient) {
		sm.a.PingSent = sm.at(sm.now)
		sm.clientAnyBytes = append(sm.clientAnyBytes, sm.now)
		if sm.client.pongDelay >= 0 && sm.client.alive(sm.now) {
			sm.pongs = append(sm.pongs, sm.now+sm.client.pongDelay)
		}
	}
	if d := act & (ClientDead | UpstreamDead); d != 0 {
		if d == ClientDead|UpstreamDead || act != d {
			sm.t.Fatalf("at %v: bad death actions %v", sm.now, act)
		}
		if !next.IsZero() {
			sm.t.Fatalf("at %v: wake-up %v after a death", sm.now, next)
		}
		sm.dead, sm.deadAt = d, sm.now
	}
}

// Lifecycle steps (the proxy's side of the handshake).

// connect: client CONNECT read and forwarded upstream at `at`; CONNECTED from
// the broker read `rtt` later and CONNECTED written to the client at once.
func connect(at, rtt time.Duration, v inspect.Version, p, s, c, d inspect.HeartBeat) []step {
	up, down := Negotiate(p, s, c, d)
	return []step{
		{at, func(sm *sim) {
			sm.clientRead()
			sm.fwd = true
			sm.a.UpstreamWrite = sm.at(sm.now)
			sm.upWrites = append(sm.upWrites, sm.now)
			sm.s.ConnectForwarded(sm.at(sm.now), v)
		}},
		{at + rtt, func(sm *sim) {
			sm.upConnected = sm.now
			sm.a.UpstreamRead = sm.at(sm.now)
			sm.s.UpstreamConnected(sm.at(sm.now), v, up)
			if sm.broker.sendEvery > 0 {
				sm.brokerNext = sm.now + sm.broker.sendEvery
			}
			sm.downConnected, sm.downV = sm.now, v
			sm.a.ClientWrite = sm.at(sm.now)
			sm.clientData = append(sm.clientData, sm.now)
			sm.clientAnyBytes = append(sm.clientAnyBytes, sm.now)
			sm.s.ClientConnected(sm.at(sm.now), v, down)
		}},
	}
}

func disconnect(at time.Duration) step {
	return step{at, func(sm *sim) {
		sm.clientRead()
		sm.disc = true
		sm.a.UpstreamWrite = sm.at(sm.now)
		sm.upWrites = append(sm.upWrites, sm.now)
		sm.s.DisconnectForwarded()
	}}
}

// Queries.

func (sm *sim) times(a Actions) []time.Duration {
	var out []time.Duration
	for _, e := range sm.events {
		if e.act.Has(a) {
			out = append(out, e.at)
		}
	}
	return out
}

// maxGap is the longest interval in [from, to] without an element of ts
// (ts sorted); the window edges count as boundaries.
func maxGap(ts []time.Duration, from, to time.Duration) time.Duration {
	prev, gap := from, time.Duration(0)
	for _, x := range ts {
		if x < from {
			continue
		}
		if x > to {
			break
		}
		gap = max(gap, x-prev)
		prev = x
	}
	return max(gap, to-prev)
}

// gaps returns the spacings between consecutive elements of ts in [from, to].
func gaps(ts []time.Duration, from, to time.Duration) []time.Duration {
	var out []time.Duration
	prev := time.Duration(-1)
	for _, x := range ts {
		if x < from || x > to {
			continue
		}
		if prev >= 0 {
			out = append(out, x-prev)
		}
		prev = x
	}
	return out
}

func hb(send, receive int) inspect.HeartBeat {
	return inspect.HeartBeat{Send: time.Duration(send) * ms, Receive: time.Duration(receive) * ms}
}
