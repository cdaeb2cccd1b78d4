package keepalive

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"unsafe"
)

// Heart-beat headers used throughout (values in ms).
var (
	stompJS    = hb(10000, 10000) // stomp.js 7.1 default CONNECT
	springSB   = hb(10000, 10000) // Spring simple broker with a TaskScheduler
	ours       = hb(10000, 10000) // what stompgate advertises in these tests
	noBeats    = hb(0, 0)
	responsive = clientPeer{pongDelay: 50 * ms}
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name       string
		p, s, c, d inspect.HeartBeat
		up, down   Periods
	}{
		{"all off", noBeats, noBeats, noBeats, noBeats, Periods{}, Periods{}},
		{"stomp.js vs Spring through stompgate", ours, springSB, stompJS, ours,
			Periods{10 * s1, 10 * s1}, Periods{10 * s1, 10 * s1}},
		// A client 4000,10000 against Spring 10000,4000 (python-websockets
		// issue #1474, the case of S1).
		{"max of both sides", hb(4000, 10000), hb(10000, 4000), hb(4000, 10000), hb(10000, 4000),
			Periods{Send: 4 * s1, Recv: 10 * s1}, Periods{Send: 10 * s1, Recv: 4 * s1}},
		// RabbitMQ mirrors and rounds down to seconds (S5,
		// docs/heartbeats.md#rabbitmq).
		{"RabbitMQ mirrored CONNECTED", hb(4500, 7500), hb(7000, 4000), hb(4500, 7500), hb(7500, 4500),
			Periods{Send: 4500 * ms, Recv: 7500 * ms}, Periods{Send: 7500 * ms, Recv: 4500 * ms}},
		{"broker does not want client beats", ours, hb(10000, 0), stompJS, hb(5000, 0),
			Periods{Send: 0, Recv: 10 * s1}, Periods{Send: 10 * s1, Recv: 0}},
		{"client cannot send", ours, springSB, hb(0, 10000), ours,
			Periods{10 * s1, 10 * s1}, Periods{Send: 10 * s1, Recv: 0}},
		{"negative is off", hb(-1, 5000), hb(5000, 5000), noBeats, noBeats,
			Periods{Send: 0, Recv: 5 * s1}, Periods{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, down := Negotiate(tt.p, tt.s, tt.c, tt.d)
			if up != tt.up || down != tt.down {
				t.Fatalf("Negotiate = up %+v down %+v, want up %+v down %+v", up, down, tt.up, tt.down)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, Config{Tolerance: 3, PongTimeout: 10 * s1, ClientPingInterval: 24 * s1, IdleTimeout: 60 * s1}},
		{"ping capped at 25s", Config{IdleTimeout: 120 * s1}, Config{Tolerance: 3, PongTimeout: 10 * s1, ClientPingInterval: 25 * s1, IdleTimeout: 120 * s1}},
		{"short idle", Config{IdleTimeout: 30 * s1}, Config{Tolerance: 3, PongTimeout: 10 * s1, ClientPingInterval: 12 * s1, IdleTimeout: 30 * s1}},
		{"idle disabled", Config{IdleTimeout: -1}, Config{Tolerance: 3, PongTimeout: 10 * s1, ClientPingInterval: 25 * s1, IdleTimeout: -1}},
		{"explicit", Config{Tolerance: 2, PongTimeout: 3 * s1, ClientPingInterval: 7 * s1, IdleTimeout: 10 * s1, Mode: Passthrough},
			Config{Tolerance: 2, PongTimeout: 3 * s1, ClientPingInterval: 7 * s1, IdleTimeout: 10 * s1, Mode: Passthrough}},
		{"clamped", Config{Tolerance: 0.5, PongTimeout: -5}, Config{Tolerance: 1, PongTimeout: MinInterval, ClientPingInterval: 24 * s1, IdleTimeout: 60 * s1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Fatalf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	bad := Config{Tolerance: 0.5, PongTimeout: -1, ClientPingInterval: ms, IdleTimeout: ms, Mode: 7}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, field := range []string{"Tolerance", "PongTimeout", "ClientPingInterval", "IdleTimeout", "Mode"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error %q does not mention %s", err, field)
		}
	}
}

func TestModeText(t *testing.T) {
	var m Mode
	if err := m.UnmarshalText([]byte("Passthrough")); err != nil || m != Passthrough {
		t.Fatalf("UnmarshalText(Passthrough) = %v, %v", m, err)
	}
	if err := m.UnmarshalText([]byte("")); err != nil || m != Terminate {
		t.Fatalf("UnmarshalText(\"\") = %v, %v", m, err)
	}
	if err := m.UnmarshalText([]byte("relay")); err == nil {
		t.Fatal("UnmarshalText(relay) succeeded")
	}
	if b, _ := Passthrough.MarshalText(); string(b) != "passthrough" {
		t.Fatalf("MarshalText = %q", b)
	}
}

func TestStrings(t *testing.T) {
	if got := (SendUpstreamEOL | PingClient).String(); got != "SendUpstreamEOL|PingClient" {
		t.Errorf("Actions.String = %q", got)
	}
	if got := Actions(0).String(); got != "none" {
		t.Errorf("Actions(0).String = %q", got)
	}
	v := Verdict{Hop: HopUpstream, Cause: CauseHeartbeatTimeout, Deadline: 30 * s1}
	if got := v.String(); got != "upstream heart-beat timeout after 30s" {
		t.Errorf("Verdict.String = %q", got)
	}
	v = Verdict{Hop: HopClient, Cause: CausePongTimeout, Deadline: 10 * s1}
	if got := v.String(); got != "client pong timeout after 10s" {
		t.Errorf("Verdict.String = %q", got)
	}
	if got := (Verdict{}).String(); got != "alive" {
		t.Errorf("zero Verdict.String = %q", got)
	}
}

// Upstream EOLs only between CONNECT and DISCONNECT forwarded, at most
// Tcs_up/2 apart (docs/heartbeats.md#spring-before-connect, #disconnect,
// #strict-brokers).
func TestUpstreamEOLWindow(t *testing.T) {
	steps := connect(30*s1, 20*ms, inspect.V12, ours, springSB, stompJS, ours)
	steps = append(steps, disconnect(200*s1))
	// The client heart-beats punctually; its EOLs are not forwarded.
	sm := newSim(t, Config{}, clientPeer{sendEvery: 10 * s1, pongDelay: 50 * ms}, brokerPeer{sendEvery: 10 * s1}, steps...).run(400 * s1)
	if sm.dead != 0 {
		t.Fatalf("%v at %v: %v", sm.dead, sm.deadAt, sm.s.Verdict())
	}
	eols := sm.times(SendUpstreamEOL)
	if len(eols) == 0 {
		t.Fatal("no upstream EOL")
	}
	if eols[0] <= 30*s1 || eols[len(eols)-1] >= 200*s1 {
		t.Fatalf("upstream EOLs from %v to %v, want strictly inside (30s, 200s)", eols[0], eols[len(eols)-1])
	}
	if g := maxGap(sm.upWrites, 30*s1+20*ms, 200*s1); g > 5*s1+eps {
		t.Fatalf("upstream silent for %v, want ≤ Tcs_up/2 = 5s", g)
	}
}

// The emitter is keyed to bytes written upstream, so forwarded client frames
// make EOLs unnecessary (the broker counts any data,
// docs/heartbeats.md#any-data), and the period is min(Tcs_up/2, 40%
// IdleTimeout).
func TestUpstreamEOLSpacing(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		p, s     inspect.HeartBeat
		client   clientPeer
		maxGap   time.Duration
		wantEOLs bool
	}{
		{"Spring 10s", Config{}, ours, springSB, responsive, 5 * s1, true},
		{"Spring 4s read (issue 1474)", Config{}, hb(4000, 10000), hb(10000, 4000), responsive, 2 * s1, true},
		{"long period capped by idle", Config{}, hb(120000, 0), hb(0, 120000), responsive, 24 * s1, true},
		{"broker wants none: idle only", Config{IdleTimeout: 30 * s1}, ours, hb(10000, 0), responsive, 12 * s1, true},
		{"broker wants none, no intermediaries", Config{IdleTimeout: -1}, ours, hb(10000, 0), responsive, 600 * s1, false},
		{"forwarded frames suffice", Config{}, ours, springSB, clientPeer{sendEvery: 2 * s1, forward: true, pongDelay: 50 * ms}, 2 * s1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := newSim(t, tt.cfg, tt.client, brokerPeer{sendEvery: s1},
				connect(s1, 20*ms, inspect.V12, tt.p, tt.s, stompJS, ours)...).run(600 * s1)
			if sm.dead != 0 {
				t.Fatalf("%v at %v: %v", sm.dead, sm.deadAt, sm.s.Verdict())
			}
			if g := maxGap(sm.upWrites, s1, 600*s1); g > tt.maxGap+eps {
				t.Fatalf("upstream silent for %v, want ≤ %v", g, tt.maxGap)
			}
			if got := len(sm.times(SendUpstreamEOL)) > 0; got != tt.wantEOLs {
				t.Fatalf("upstream EOLs emitted = %v, want %v", got, tt.wantEOLs)
			}
		})
	}
}

// S5, docs/heartbeats.md#rabbitmq: RabbitMQ answers CONNECT 4500,7500 with CONNECTED 7000,4000
// (mirrored, rounded to seconds). The emitter must follow Tcs_up = 4500 ms
// and the broker deadline Tsc_up × 3 = 22.5 s.
func TestRabbitMQMirroredConnected(t *testing.T) {
	p, s := hb(4500, 7500), hb(7000, 4000)
	up, _ := Negotiate(p, s, stompJS, ours)
	if up != (Periods{Send: 4500 * ms, Recv: 7500 * ms}) {
		t.Fatalf("up = %+v", up)
	}
	sm := newSim(t, Config{}, responsive, brokerPeer{sendEvery: 3500 * ms, stopAt: 100 * s1},
		connect(s1, 20*ms, inspect.V12, p, s, stompJS, ours)...).run(300 * s1)
	if g := gaps(sm.times(SendUpstreamEOL), 0, 100*s1); len(g) == 0 || slices.Max(g) != 2250*ms || slices.Min(g) != 2250*ms {
		t.Fatalf("upstream EOL spacing %v, want exactly 2.25s", g)
	}
	// Last broker byte at 98.02s (every 3.5s from 1.02s).
	lastRead := s1 + 20*ms + 28*3500*ms
	if sm.dead != UpstreamDead || sm.deadAt != lastRead+22500*ms {
		t.Fatalf("%v at %v, want UpstreamDead at %v", sm.dead, sm.deadAt, lastRead+22500*ms)
	}
	v := sm.s.Verdict()
	if v.Hop != HopUpstream || v.Cause != CauseHeartbeatTimeout || v.Deadline != 22500*ms || v.Silence != 22500*ms || !v.At.Equal(t0.Add(sm.deadAt)) {
		t.Fatalf("verdict %+v", v)
	}
}

// S6: a throttled background tab advertises 1000,1000
// but sends an EOL only every 10 s; it answers pings. It must never be
// declared dead, and the broker must keep seeing data every Tcs_up/2.
func TestThrottledTabStaysAlive(t *testing.T) {
	tab := hb(1000, 1000)
	sm := newSim(t, Config{}, clientPeer{sendEvery: 10 * s1, pongDelay: 50 * ms}, brokerPeer{sendEvery: s1},
		connect(s1, 20*ms, inspect.V12, hb(1000, 1000), hb(1000, 1000), tab, hb(1000, 1000))...)
	sm.run(1000 * s1) // 100 of the tab's 10 s periods, 1000 negotiated periods
	if sm.dead != 0 {
		t.Fatalf("%v at %v: %v", sm.dead, sm.deadAt, sm.s.Verdict())
	}
	if len(sm.times(PingClient)) == 0 {
		t.Fatal("a late client was never probed")
	}
	if g := maxGap(sm.upWrites, 1020*ms, 1000*s1); g > 500*ms+eps {
		t.Fatalf("upstream silent for %v while the client was alive, want ≤ 500ms", g)
	}
	if g := maxGap(sm.clientData, 1020*ms, 1000*s1); g > 500*ms+eps {
		t.Fatalf("client saw no data for %v, want ≤ Tsc_down/2 = 500ms", g)
	}
	// Probes come 1.5 × Tcs_down after the last read, never while one is
	// outstanding.
	for _, p := range sm.times(PingClient) {
		last := lastBefore(sm.reads, p)
		if p-last < 1500*ms {
			t.Fatalf("ping at %v only %v after the last read", p, p-last)
		}
	}
}

// A client that stops answering anything is declared dead
// exactly PongTimeout after the first unanswered ping, and that ping comes
// within the probe limit of its last read.
func TestSilentClientDeclaredDead(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		limit time.Duration // probe after this much silence
	}{
		{"heart-beating 10s", Config{}, connect(s1, 20*ms, inspect.V12, ours, springSB, stompJS, ours), 15 * s1},
		{"heart-beating 5s, frozen client", Config{PongTimeout: 5 * s1}, connect(s1, 20*ms, inspect.V12, ours, springSB, hb(5000, 5000), hb(5000, 5000)), 7500 * ms},
		{"0,0 client", Config{}, connect(s1, 20*ms, inspect.V12, ours, springSB, noBeats, ours), 24 * s1},
		{"0,0 client, ping every 5s", Config{ClientPingInterval: 5 * s1}, connect(s1, 20*ms, inspect.V12, ours, springSB, noBeats, ours), 5 * s1},
		{"STOMP 1.0 client", Config{}, connect(s1, 20*ms, inspect.V10, ours, springSB, stompJS, ours), 24 * s1},
		{"before CONNECT", Config{}, nil, 24 * s1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clientPeer{sendEvery: 3 * s1, pongDelay: 50 * ms, stopAt: 61 * s1}
			sm := newSim(t, tt.cfg, c, brokerPeer{sendEvery: s1}, tt.steps...).run(600 * s1)
			if sm.dead != ClientDead {
				t.Fatalf("dead = %v at %v, want ClientDead", sm.dead, sm.deadAt)
			}
			lastRead := sm.reads[len(sm.reads)-1]
			var probe time.Duration = -1
			for _, p := range sm.times(PingClient) {
				if p > lastRead {
					probe = p
					break
				}
			}
			if probe < 0 {
				t.Fatal("no unanswered ping before death")
			}
			if probe > lastRead+tt.limit+eps {
				t.Fatalf("probe at %v, %v after last read; want ≤ %v", probe, probe-lastRead, tt.limit)
			}
			pt := tt.cfg.WithDefaults().PongTimeout
			if sm.deadAt != probe+pt {
				t.Fatalf("dead at %v, want probe %v + PongTimeout %v", sm.deadAt, probe, pt)
			}
			v := sm.s.Verdict()
			if v.Hop != HopClient || v.Cause != CausePongTimeout || v.Deadline != pt || v.Silence != sm.deadAt-lastRead {
				t.Fatalf("verdict %+v", v)
			}
			// Upstream EOLs stop with the client: the session is over.
			if act, next := sm.s.Tick(t0.Add(sm.deadAt+time.Hour), sm.a); act != 0 || !next.IsZero() {
				t.Fatalf("Tick after death = %v, %v", act, next)
			}
			if eols := sm.times(SendUpstreamEOL); len(eols) > 0 && eols[len(eols)-1] > sm.deadAt {
				t.Fatalf("upstream EOL at %v after client death at %v", eols[len(eols)-1], sm.deadAt)
			}
		})
	}
}

// The broker is dead after Tsc_up × Tolerance without data (S4),
// measured from the later of CONNECTED and its last byte.
func TestBrokerDead(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		broker brokerPeer
		want   time.Duration // detection time
		dline  time.Duration
	}{
		{"default tolerance", Config{}, brokerPeer{sendEvery: s1, stopAt: 50*s1 + 500*ms}, 50*s1 + 20*ms + 30*s1, 30 * s1},
		{"tolerance 2", Config{Tolerance: 2}, brokerPeer{sendEvery: s1, stopAt: 50*s1 + 500*ms}, 50*s1 + 20*ms + 20*s1, 20 * s1},
		{"silent from CONNECTED", Config{}, brokerPeer{}, s1 + 20*ms + 30*s1, 30 * s1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := newSim(t, tt.cfg, clientPeer{sendEvery: 10 * s1, pongDelay: 50 * ms}, tt.broker,
				connect(s1, 20*ms, inspect.V12, ours, springSB, stompJS, ours)...).run(600 * s1)
			if sm.dead != UpstreamDead || sm.deadAt != tt.want {
				t.Fatalf("%v at %v, want UpstreamDead at %v", sm.dead, sm.deadAt, tt.want)
			}
			if got := sm.s.Verdict(); got.Deadline != tt.dline || got.String() != "upstream heart-beat timeout after "+tt.dline.String() {
				t.Fatalf("verdict %+v %q", got, got)
			}
		})
	}
	// No deadline when the broker does not heart-beat, nor before CONNECTED.
	sm := newSim(t, Config{}, clientPeer{sendEvery: 10 * s1, pongDelay: 50 * ms}, brokerPeer{},
		connect(s1, 20*ms, inspect.V12, ours, hb(0, 10000), stompJS, ours)...).run(600 * s1)
	if sm.dead != 0 {
		t.Fatalf("%v at %v with Tsc_up = 0", sm.dead, sm.deadAt)
	}
}

// Clients without heart-beats get a ping every
// ClientPingInterval of silence, and never an EOL.
func TestZeroZeroClientPinged(t *testing.T) {
	for _, every := range []time.Duration{0, 5 * s1} {
		cfg := Config{ClientPingInterval: every}
		want := cfg.WithDefaults().ClientPingInterval
		sm := newSim(t, cfg, responsive, brokerPeer{sendEvery: s1},
			connect(s1, 20*ms, inspect.V12, ours, springSB, noBeats, ours)...).run(600 * s1)
		if sm.dead != 0 {
			t.Fatalf("%v at %v", sm.dead, sm.deadAt)
		}
		if n := len(sm.times(SendClientEOL)); n != 0 {
			t.Fatalf("%d EOLs to a 0,0 client", n)
		}
		g := gaps(sm.times(PingClient), 0, 600*s1)
		if len(g) < 10 {
			t.Fatalf("only %d pings", len(g)+1)
		}
		for _, d := range g {
			if d < want || d > want+50*ms+eps {
				t.Fatalf("ping spacing %v, want %v (+ pong latency)", d, want)
			}
		}
	}
}

// A STOMP 1.0 client never receives a bare EOL, even if the proxy passes
// non-zero periods by mistake; it is kept alive with pings
// (docs/heartbeats.md#versions). A session whose version is not known
// (inspect.VersionUnknown) is treated exactly the same.
func TestV10ClientNeverGetsEOL(t *testing.T) {
	for _, v := range []inspect.Version{inspect.V10, inspect.VersionUnknown} {
		for _, mode := range []Mode{Terminate, Passthrough} {
			sm := newSim(t, Config{Mode: mode}, responsive, brokerPeer{},
				connect(s1, 20*ms, v, ours, springSB, stompJS, ours)...).run(600 * s1)
			if n := len(sm.times(SendClientEOL)); n != 0 {
				t.Fatalf("%v %v: %d EOLs to the client", v, mode, n)
			}
			if n := len(sm.times(SendUpstreamEOL)); n != 0 {
				t.Fatalf("%v %v: %d EOLs to the broker", v, mode, n)
			}
			if g := maxGap(sm.clientAnyBytes, 0, 600*s1); g > 24*s1+eps {
				t.Fatalf("%v %v: client hop silent for %v", v, mode, g)
			}
			if up, down := sm.s.Periods(); up != (Periods{}) || down != (Periods{}) {
				t.Fatalf("%v %v: periods up %+v down %+v", v, mode, up, down)
			}
		}
	}
}

// With Tsc_down > 0 the client sees data every Tsc_down/2 when nothing else
// flows, i.e. within [T/2, T] (docs/heartbeats.md#stompjs).
func TestClientEOLSpacing(t *testing.T) {
	for _, tsc := range []int{1000, 4000, 10000, 20000} {
		sm := newSim(t, Config{}, clientPeer{sendEvery: 5 * s1, pongDelay: 50 * ms}, brokerPeer{sendEvery: 700 * ms},
			connect(s1, 20*ms, inspect.V12, ours, springSB, hb(5000, tsc), hb(tsc, 5000))...).run(300 * s1)
		if sm.dead != 0 {
			t.Fatalf("%v at %v", sm.dead, sm.deadAt)
		}
		T := time.Duration(tsc) * ms
		for _, d := range gaps(sm.clientData, 1020*ms, 300*s1) {
			if d < T/2 || d > T {
				t.Fatalf("Tsc_down %v: client data spacing %v outside [T/2, T]", T, d)
			}
		}
		if n := len(sm.times(PingClient)); n != 0 {
			t.Fatalf("Tsc_down %v: %d pings to a punctual client", T, n)
		}
	}
}

// No hop stays silent for longer than 40% of IdleTimeout, for
// every kind of client, in both modes. Peers are otherwise silent (the
// client only answers pings).
func TestIdleCoverage(t *testing.T) {
	clients := []struct {
		name string
		v    inspect.Version
		c, d inspect.HeartBeat
	}{
		{"stomp.js", inspect.V12, stompJS, ours},
		{"long heart-beats", inspect.V12, hb(120000, 120000), hb(120000, 120000)},
		{"0,0", inspect.V12, noBeats, ours},
		{"1.0", inspect.V10, noBeats, noBeats},
	}
	for _, mode := range []Mode{Terminate, Passthrough} {
		for _, idle := range []time.Duration{60 * s1, 30 * s1, 6 * s1} {
			for _, cl := range clients {
				t.Run(mode.String()+"/"+idle.String()+"/"+cl.name, func(t *testing.T) {
					cfg := Config{Mode: mode, IdleTimeout: idle}
					limit := time.Duration(float64(idle) * IdleFraction)
					// Terminate: the broker neither sends nor wants
					// heart-beats, so every upstream EOL is idle coverage.
					p, s := ours, noBeats
					if mode == Passthrough {
						p, s = cl.c, cl.d // end to end
					}
					sm := newSim(t, cfg, responsive, brokerPeer{},
						connect(s1, 20*ms, cl.v, p, s, cl.c, cl.d)...).run(900 * s1)
					if sm.dead != 0 {
						t.Fatalf("%v at %v: %v", sm.dead, sm.deadAt, sm.s.Verdict())
					}
					if g := maxGap(sm.clientAnyBytes, 0, sm.now); g > limit+eps {
						t.Fatalf("client hop silent for %v, want ≤ %v", g, limit)
					}
					upCovered := mode == Terminate || (cl.v >= inspect.V11 && cl.d.Receive > 0 && cl.c.Send > 0)
					if upCovered && cl.v >= inspect.V11 {
						if g := maxGap(sm.upWrites, s1, sm.now); g > limit+eps {
							t.Fatalf("upstream hop silent for %v, want ≤ %v", g, limit)
						}
					} else if n := len(sm.times(SendUpstreamEOL)); n != 0 {
						t.Fatalf("%d upstream EOLs where the contract does not allow them", n)
					}
				})
			}
		}
	}
}

// In Passthrough mode the peers' own heart-beats flow end to
// end; the engine adds nothing while they cover the idle timeout, never
// emits at T/2, and never declares the broker dead.
func TestPassthrough(t *testing.T) {
	cfg := Config{Mode: Passthrough}
	e2e := hb(10000, 10000)
	t.Run("peers beat", func(t *testing.T) {
		sm := newSim(t, cfg, clientPeer{sendEvery: 10 * s1, forward: true, pongDelay: 50 * ms}, brokerPeer{sendEvery: 10 * s1, relay: true},
			connect(s1, 20*ms, inspect.V12, stompJS, e2e, stompJS, e2e)...).run(600 * s1)
		if sm.dead != 0 || len(sm.events) != 0 {
			t.Fatalf("dead %v, events %v", sm.dead, sm.events)
		}
	})
	t.Run("idle peers", func(t *testing.T) {
		sm := newSim(t, cfg, responsive, brokerPeer{},
			connect(s1, 20*ms, inspect.V12, stompJS, e2e, stompJS, e2e)...).run(600 * s1)
		if sm.dead != 0 {
			t.Fatalf("%v at %v (no broker deadline in passthrough)", sm.dead, sm.deadAt)
		}
		for _, d := range gaps(sm.times(SendClientEOL), 0, 600*s1) {
			if d != 24*s1 {
				t.Fatalf("client EOL spacing %v, want idle coverage only (24s)", d)
			}
		}
		for _, d := range gaps(sm.times(SendUpstreamEOL), 0, 600*s1) {
			if d != 24*s1 {
				t.Fatalf("upstream EOL spacing %v, want idle coverage only (24s)", d)
			}
		}
	})
	t.Run("broker accepts no client beats", func(t *testing.T) {
		sm := newSim(t, cfg, responsive, brokerPeer{},
			connect(s1, 20*ms, inspect.V12, stompJS, hb(10000, 0), stompJS, hb(10000, 0))...).run(600 * s1)
		if n := len(sm.times(SendUpstreamEOL)); n != 0 {
			t.Fatalf("%d upstream EOLs although the broker negotiated Tcs = 0", n)
		}
	})
	t.Run("late client is probed", func(t *testing.T) {
		sm := newSim(t, cfg, clientPeer{pongDelay: -1}, brokerPeer{},
			connect(s1, 20*ms, inspect.V12, stompJS, e2e, stompJS, e2e)...).run(600 * s1)
		// Last read: CONNECT at 1s; probe at 1s+15s; dead 10s later.
		if sm.dead != ClientDead || sm.deadAt != 26*s1 {
			t.Fatalf("%v at %v, want ClientDead at 26s", sm.dead, sm.deadAt)
		}
	})
}

// Repeated pings (idle coverage shorter than PongTimeout) must not push the
// pong deadline back: it runs from the first unanswered ping.
func TestPongDeadlineNotPostponed(t *testing.T) {
	cfg := Config{IdleTimeout: 5 * s1, PongTimeout: 10 * s1}
	sm := newSim(t, cfg, clientPeer{pongDelay: -1}, brokerPeer{}).run(600 * s1)
	pings := sm.times(PingClient)
	if len(pings) < 3 {
		t.Fatalf("pings %v", pings)
	}
	if sm.dead != ClientDead || sm.deadAt != pings[0]+10*s1 {
		t.Fatalf("%v at %v, want ClientDead at first ping %v + 10s", sm.dead, sm.deadAt, pings[0])
	}
}

// A ping that the proxy wrote after the client's last read is outstanding
// even if the engine did not request it; any later read answers it.
func TestExternalPingAndLateRead(t *testing.T) {
	s := NewSession(Config{}, t0)
	a := Activity{ClientRead: t0.Add(s1), PingSent: t0.Add(2 * s1)}
	act, next := s.Tick(t0.Add(3*s1), a)
	if act != 0 || !next.Equal(t0.Add(12*s1)) {
		t.Fatalf("Tick = %v, %v; want pong deadline at 12s", act, next.Sub(t0))
	}
	// The pong answers it: no death at 12s. The next wake-up is idle
	// coverage, 24s after the last byte written to the client (the ping).
	a.ClientPong = t0.Add(2*s1 + 30*ms)
	if act, next = s.Tick(t0.Add(12*s1), a); act != 0 || !next.Equal(t0.Add(26*s1)) {
		t.Fatalf("Tick after pong = %v, %v", act, next.Sub(t0))
	}
}

// The proxy may execute actions late (another goroutine writes): a Tick
// before the snapshot reflects them must not request them again.
func TestLaggingWriterNoDuplicates(t *testing.T) {
	s := NewSession(Config{}, t0)
	up, down := Negotiate(ours, springSB, stompJS, ours)
	s.ConnectForwarded(t0, inspect.V12)
	s.UpstreamConnected(t0, inspect.V12, up)
	s.ClientConnected(t0, inspect.V12, down)
	a := Activity{ClientRead: t0, ClientWrite: t0, UpstreamRead: t0, UpstreamWrite: t0}
	now := t0.Add(5 * s1)
	act, next := s.Tick(now, a)
	if act != SendUpstreamEOL|SendClientEOL {
		t.Fatalf("first Tick = %v", act)
	}
	for i := 1; i <= 10; i++ {
		n := now.Add(time.Duration(i) * 10 * ms)
		if act, next = s.Tick(n, a); act != 0 || !next.After(n) {
			t.Fatalf("Tick %d = %v, next %v", i, act, next.Sub(t0))
		}
	}
	if !next.Equal(t0.Add(10 * s1)) {
		t.Fatalf("next = %v, want 10s", next.Sub(t0))
	}
}

func TestSessionSize(t *testing.T) {
	sz := unsafe.Sizeof(Session{})
	t.Logf("Session: %d bytes", sz)
	if sz > 256 {
		t.Fatalf("Session is %d bytes; tens of thousands exist, keep it small", sz)
	}
}

func TestZeroSessionPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Tick on a zero Session did not panic")
		}
	}()
	var s Session
	s.Tick(t0, Activity{})
}

func TestClose(t *testing.T) {
	s := NewSession(Config{}, t0)
	if _, next := s.Tick(t0, Activity{}); !next.Equal(t0.Add(24 * s1)) {
		t.Fatalf("fresh session wakes at %v, want 24s", next.Sub(t0))
	}
	s.Close()
	if act, next := s.Tick(t0.Add(time.Hour), Activity{}); act != 0 || !next.IsZero() {
		t.Fatalf("Tick after Close = %v, %v", act, next)
	}
	if s.Verdict().Dead() {
		t.Fatal("closed session has a verdict")
	}
}

func TestTickAllocs(t *testing.T) {
	s := NewSession(Config{}, t0)
	up, down := Negotiate(ours, springSB, stompJS, ours)
	s.ConnectForwarded(t0, inspect.V12)
	s.UpstreamConnected(t0, inspect.V12, up)
	s.ClientConnected(t0, inspect.V12, down)
	now := t0
	a := Activity{ClientRead: t0, UpstreamRead: t0}
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		a.ClientRead, a.UpstreamRead = now, now
		act, _ := s.Tick(now, a)
		if act.Has(SendUpstreamEOL) {
			a.UpstreamWrite = now
		}
		if act.Has(SendClientEOL) {
			a.ClientWrite = now
		}
	})
	if allocs != 0 {
		t.Fatalf("Tick allocates %v times per call", allocs)
	}
}

func BenchmarkTick(b *testing.B) {
	s := NewSession(Config{}, t0)
	up, down := Negotiate(ours, springSB, stompJS, ours)
	s.ConnectForwarded(t0, inspect.V12)
	s.UpstreamConnected(t0, inspect.V12, up)
	s.ClientConnected(t0, inspect.V12, down)
	now := t0
	a := Activity{}
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(100 * ms)
		a.ClientRead, a.UpstreamRead = now, now
		act, _ := s.Tick(now, a)
		if act.Has(SendUpstreamEOL) {
			a.UpstreamWrite = now
		}
		if act.Has(SendClientEOL) {
			a.ClientWrite = now
		}
	}
}

func lastBefore(ts []time.Duration, x time.Duration) time.Duration {
	last := time.Duration(-1)
	for _, t := range ts {
		if t < x {
			last = t
		}
	}
	return last
}

// A passed read deadline is checked against bytes that have arrived but
// are not read yet: a saturated proxy reading late must not kill a live
// broker or client. Without unread bytes the verdict is as before.
func TestUnreadBytesDeferDeadlines(t *testing.T) {
	up, down := Negotiate(ours, springSB, stompJS, ours)
	start := func() *Session {
		s := NewSession(Config{}, t0)
		s.ConnectForwarded(t0, inspect.V12)
		s.UpstreamConnected(t0.Add(20*ms), inspect.V12, up)
		s.ClientConnected(t0.Add(20*ms), inspect.V12, down)
		return s
	}
	late := t0.Add(20*ms + scale(up.Recv, DefaultTolerance) + ms)
	a := Activity{ClientRead: late, UpstreamRead: t0.Add(20 * ms)}

	s := start()
	if act, _ := s.Tick(late, a); !act.Has(UpstreamDead) {
		t.Fatalf("no unread bytes: %v, want UpstreamDead", act)
	}

	s = start()
	asked := 0
	a.UpstreamHeard = func() (time.Duration, bool) { asked++; return 0, true }
	act, next := s.Tick(late, a)
	if act.Has(UpstreamDead) || !act.Has(UpstreamLateRead) || asked != 1 {
		t.Fatalf("unread upstream bytes: %v (asked %d), want alive, a late read", act, asked)
	}
	if want := late.Add(scale(up.Recv, DefaultTolerance)); next.After(want) {
		t.Fatalf("next wake-up %v, want by %v", next.Sub(t0), want.Sub(t0))
	}
	// Not asked while the deadline is ahead.
	a.UpstreamRead = late
	s.Tick(late.Add(s1), a)
	if asked != 1 {
		t.Fatalf("asked %d times, want 1", asked)
	}

	// Bytes the kernel received 500 ms ago, not read: the deadline runs
	// from their arrival, and passes again without newer ones.
	s = start()
	a = Activity{ClientRead: late, UpstreamRead: t0.Add(20 * ms)}
	arrived := late.Add(-500 * ms)
	a.UpstreamHeard = func() (time.Duration, bool) { return late.Sub(arrived), true }
	act, next = s.Tick(late, a)
	if act.Has(UpstreamDead) || !act.Has(UpstreamLateRead) {
		t.Fatalf("bytes arrived 500ms ago: %v, want alive, a late read", act)
	}
	due := arrived.Add(scale(up.Recv, DefaultTolerance))
	if next.After(due) {
		t.Fatalf("next wake-up %v, want by %v (the deadline from the arrival)", next.Sub(t0), due.Sub(t0))
	}
	for _, at := range []time.Time{due.Add(-ms), due} {
		a.ClientRead = at
		a.UpstreamHeard = func() (time.Duration, bool) { return at.Sub(arrived), true }
		act, _ := s.Tick(at, a)
		if dead := at.Equal(due); act.Has(UpstreamDead) != dead {
			t.Fatalf("nothing since the arrival, at its deadline %+v: %v, want dead %v", at.Sub(due), act, dead)
		}
	}

	// What the kernel received before the last read proves nothing new.
	s = start()
	a = Activity{ClientRead: late, UpstreamRead: t0.Add(20 * ms)}
	a.UpstreamHeard = func() (time.Duration, bool) { return late.Sub(t0), true }
	if act, _ := s.Tick(late, a); act != UpstreamDead {
		t.Fatalf("kernel's last bytes before the last read: %v, want UpstreamDead only", act)
	}
	// Nor does a receipt within the kernel's clock resolution of it: the
	// same bytes, seen through jiffies.
	s = start()
	a.UpstreamHeard = func() (time.Duration, bool) { return late.Sub(t0.Add(25 * ms)), true }
	if act, _ := s.Tick(late, a); act != UpstreamDead {
		t.Fatalf("kernel's last bytes 5ms after the last read: %v, want UpstreamDead only", act)
	}
	// Nor does a proxy that cannot tell.
	s = start()
	a.UpstreamHeard = func() (time.Duration, bool) { return 0, false }
	if act, _ := s.Tick(late, a); !act.Has(UpstreamDead) {
		t.Fatalf("unknown: %v, want UpstreamDead", act)
	}
}

// With equal periods the broker's EOL joins the client's wake-up: after
// the first emission the two are sent at the same instants.
func TestEOLsShareWakeUps(t *testing.T) {
	p := hb(4000, 4000)
	sm := newSim(t, Config{}, clientPeer{sendEvery: 3 * s1, pongDelay: 50 * ms}, brokerPeer{sendEvery: 3 * s1},
		connect(s1, 20*ms, inspect.V12, p, p, p, p)...).run(120 * s1)
	if sm.dead != 0 {
		t.Fatalf("%v at %v", sm.dead, sm.deadAt)
	}
	ups, downs := sm.times(SendUpstreamEOL), sm.times(SendClientEOL)
	if len(ups) < 10 || len(downs) < 10 {
		t.Fatalf("%d upstream and %d client EOLs", len(ups), len(downs))
	}
	shared := 0
	for _, u := range ups {
		if slices.Contains(downs, u) {
			shared++
		}
	}
	if shared < len(ups)-2 {
		t.Fatalf("%d of %d upstream EOLs shared a wake-up with a client EOL", shared, len(ups))
	}
	if g := gaps(ups, 2*s1, 120*s1); slices.Max(g) > 2*s1 {
		t.Fatalf("upstream EOL spacing %v, want at most Tcs_up/2", g)
	}
}

// TestUpstreamPing: a broker no heart-beat deadline watches (it answered
// 0,0) is pinged after UpstreamPingInterval of silence and declared dead
// when nothing (a byte read, progress of a blocked write) follows within
// PongTimeout; a pong, a read or write progress answers the ping.
func TestUpstreamPing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cfg := Config{UpstreamPingInterval: 2 * s1, PongTimeout: 1 * s1, IdleTimeout: -1, ClientPingInterval: time.Hour}
	start := func() *Session {
		s := NewSession(cfg, t0)
		s.ConnectForwarded(t0, inspect.V12)
		s.UpstreamConnected(t0, inspect.V12, Periods{})
		s.ClientConnected(t0, inspect.V12, Periods{})
		return s
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	t.Run("silent broker dies", func(t *testing.T) {
		s := start()
		a := Activity{ClientRead: t0, UpstreamRead: t0}
		acts, next := s.Tick(at(s1), a)
		if acts.Has(PingUpstream) || !next.Equal(at(2*s1)) {
			t.Fatalf("1s: %v next %v, want no ping and a wake-up at 2s", acts, next.Sub(t0))
		}
		acts, next = s.Tick(at(2*s1), a)
		if !acts.Has(PingUpstream) || !next.Equal(at(3*s1)) {
			t.Fatalf("2s: %v next %v, want PingUpstream and the pong deadline at 3s", acts, next.Sub(t0))
		}
		a.UpstreamPingSent = at(2 * s1)
		if acts, _ = s.Tick(at(2500*ms), a); acts != 0 {
			t.Fatalf("2.5s: %v, want nothing (one ping outstanding)", acts)
		}
		acts, _ = s.Tick(at(3*s1), a)
		v := s.Verdict()
		if !acts.Has(UpstreamDead) || v.Hop != HopUpstream || v.Cause != CausePongTimeout || v.Deadline != s1 {
			t.Fatalf("3s: %v verdict %v, want UpstreamDead by pong timeout after 1s", acts, v)
		}
	})
	for _, answer := range []struct {
		name string
		set  func(a *Activity, t time.Time)
	}{
		{"pong read", func(a *Activity, t time.Time) { a.UpstreamRead = t }},
		{"blocked write moved on", func(a *Activity, t time.Time) { a.UpstreamProgress = t }},
	} {
		t.Run(answer.name+" answers", func(t *testing.T) {
			s := start()
			a := Activity{ClientRead: t0, UpstreamRead: t0}
			s.Tick(at(2*s1), a)
			a.UpstreamPingSent = at(2 * s1)
			answer.set(&a, at(2200*ms))
			acts, next := s.Tick(at(3*s1), a)
			if acts != 0 || s.Verdict().Dead() {
				t.Fatalf("3s: %v, verdict %v: want alive", acts, s.Verdict())
			}
			if !next.Equal(at(4200 * ms)) {
				t.Fatalf("next wake-up %v, want 4.2s (interval after the answer)", next.Sub(t0))
			}
		})
	}
	t.Run("unread bytes answer", func(t *testing.T) {
		s := start()
		a := Activity{ClientRead: t0, UpstreamRead: t0, UpstreamHeard: func() (time.Duration, bool) { return 100 * ms, true }}
		s.Tick(at(2*s1), a)
		a.UpstreamPingSent = at(2 * s1)
		acts, _ := s.Tick(at(3*s1), a)
		if !acts.Has(UpstreamLateRead) || s.Verdict().Dead() {
			t.Fatalf("%v verdict %v: want a late read, alive", acts, s.Verdict())
		}
	})
	t.Run("heart-beats watch the broker: no ping", func(t *testing.T) {
		s := NewSession(cfg, t0)
		s.ConnectForwarded(t0, inspect.V12)
		s.UpstreamConnected(t0, inspect.V12, Periods{Send: 10 * s1, Recv: 10 * s1})
		for d := s1; d < 25*s1; d += s1 {
			if acts, _ := s.Tick(at(d), Activity{ClientRead: at(d), UpstreamRead: at(d)}); acts.Has(PingUpstream) {
				t.Fatalf("%v: pinged a broker whose heart-beats are watched", d)
			}
		}
	})
	t.Run("not STOMP: only the broker is watched", func(t *testing.T) {
		s := NewSession(cfg, t0)
		s.NotSTOMP()
		acts, next := s.Tick(at(2*s1), Activity{UpstreamRead: t0})
		if acts != PingUpstream || !next.Equal(at(3*s1)) {
			t.Fatalf("%v next %v, want only PingUpstream, then the pong deadline", acts, next.Sub(t0))
		}
		off := NewSession(Config{}, t0)
		off.NotSTOMP()
		if off.Watching() {
			t.Fatal("a session that is not STOMP and pings nothing still watches")
		}
	})
	t.Run("off", func(t *testing.T) {
		c := cfg
		c.UpstreamPingInterval = 0
		s := NewSession(c, t0)
		s.ConnectForwarded(t0, inspect.V12)
		s.UpstreamConnected(t0, inspect.V12, Periods{})
		if acts, _ := s.Tick(at(time.Minute), Activity{ClientRead: at(time.Minute), UpstreamRead: t0}); acts.Has(PingUpstream) {
			t.Fatal("pinged with UpstreamPingInterval 0")
		}
	})
}
