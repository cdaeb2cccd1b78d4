package e2e

// Liveness scenarios: each one reproduces, without stompgate, a way STOMP over
// WebSocket sessions die in production (subtest "control"), and shows that
// the same client survives, or fails legibly and within a bound, through
// stompgate (subtest "stompgate"). docs/scenarios.md describes them for
// operators (S1–S9, the numbers in the test names); the peers' rules they
// rely on, with their sources, are in docs/heartbeats.md under "The rules
// stompgate relies on".
//
// Timings are scaled down from the production defaults (10 s heart-beats,
// 60 s idle timeouts) to hundreds of milliseconds so the whole file runs in
// well under a minute. Tests never sleep to pass: they wait for an event
// with a deadline, or watch a window in which nothing may happen. Tolerances
// are generous (the test machine has two cores and runs with -race).
//
//	go test -race -run TestScenario ./e2e/

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/proxy"
)

const ms = time.Millisecond

func hb(send, receive time.Duration) inspect.HeartBeat {
	return inspect.HeartBeat{Send: send, Receive: receive}
}

// subscribeSpring subscribes c to dest on the Spring double, which sends no
// RECEIPT for SUBSCRIBE: the broker's registry is watched instead.
func subscribeSpring(t *testing.T, c *stomptest.Client, b *spring, dest string) {
	t.Helper()
	n := b.b.Subscriptions()
	c.Subscribe("sub-0", dest)
	if !eventually(5*time.Second, func() bool { return b.b.Subscriptions() > n }) {
		t.Fatalf("the broker did not register the SUBSCRIBE to %s within 5s", dest)
	}
}

// subscribeRabbit subscribes c to dest on RabbitMQ and waits for the RECEIPT.
func subscribeRabbit(t *testing.T, c *stomptest.Client, dest string) {
	t.Helper()
	c.Subscribe("sub-0", dest, "receipt", "sub-0")
	c.Expect(5*time.Second, "RECEIPT")
}

// roundTrip proves a session is alive end to end: a SEND comes back as a
// MESSAGE on the subscription.
func roundTrip(t *testing.T, c *stomptest.Client, dest, body string) {
	t.Helper()
	c.SendFrame("SEND", []byte(body), "destination", dest)
	if m := c.Expect(5*time.Second, "MESSAGE"); string(m.Body) != body {
		t.Fatalf("MESSAGE body %q, want %q", m.Body, body)
	}
}

// expectQuiet fails unless the connection stayed open without any frame
// during the window.
func expectQuiet(t *testing.T, what string, q stomptest.Quiet) {
	t.Helper()
	if q.Closed || len(q.Frames) > 0 {
		t.Fatalf("%s: %v, want the session open and no frame", what, q)
	}
}

// ---------------------------------------------------------------------------
// S1. The seed case: python websockets with ping_interval, CONNECT promising
// heart-beats, silent afterwards, against Spring's simple broker.

type silentPythonResult struct {
	Connected   string   `json:"connected"`
	HeartBeat   *string  `json:"heart_beat"`
	Frames      []string `json:"frames"`
	Error       *string  `json:"error"`
	EOLs        int      `json:"eols"`
	CloseCode   *int     `json:"close_code"`
	CloseReason *string  `json:"close_reason"`
	ClosedAfter *float64 `json:"closed_after"`
	SilentFor   *float64 `json:"silent_for"`
	Message     *string  `json:"message"`
	Timeout     bool     `json:"timeout"`
}

func (r silentPythonResult) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// runSilentPython runs e2e/python/scenario_silent_client.py against url.
// When the client reports that its silence is over, the broker publishes
// body to dest.
func runSilentPython(t *testing.T, py, url string, b *spring, dest, body string, hold time.Duration) silentPythonResult {
	t.Helper()
	p := startLineProc(t, hold+40*time.Second, "", py, filepath.Join("python", "scenario_silent_client.py"), url,
		"--heart-beat", "200,500", "--ping-interval", "0.1", "--hold", fmt.Sprint(hold.Seconds()),
		"--destination", dest)
	for {
		line, err := p.next(hold + 30*time.Second)
		if err != nil {
			t.Fatalf("python client: %v", err)
		}
		var ev struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("python client printed %q: %v", line, err)
		}
		switch ev.Event {
		case "silent_done":
			b.b.Publish(dest, []byte(body))
		case "result":
			var r silentPythonResult
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("python client printed %q: %v", line, err)
			}
			return r
		}
	}
}

func TestScenarioS1SilentPythonClient(t *testing.T) {
	t.Parallel()
	py := peers.Python3Websockets(t)
	// Spring simple broker with setHeartbeatValue({500, 200}); the client
	// sends CONNECT heart-beat:200,500 (it promises a heart-beat every 200
	// ms) and then only WebSocket pings every 100 ms. Spring's read deadline
	// is max(200, 200) × 3 = 600 ms, and pings never reach it
	// (docs/heartbeats.md#spring).
	const sx, sy = 500 * ms, 200 * ms
	const hold = 6 * time.Second // 10 × the 600 ms after which Spring gives up

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, sx, sy)
		r := runSilentPython(t, py, b.url(), b, uniqueDest(t), "too late", hold)
		t.Logf("python → Spring: %v", r)
		if r.Connected != "CONNECTED" {
			t.Fatalf("CONNECT answered with %q", r.Connected)
		}
		if r.Error == nil || *r.Error != "Session closed." || r.CloseCode == nil || *r.CloseCode != 1002 {
			t.Fatalf("want ERROR \"Session closed.\" then close 1002, got %v", r)
		}
		if r.ClosedAfter == nil || *r.ClosedAfter < 0.3 || *r.ClosedAfter > 5 {
			t.Fatalf("closed %v s after SUBSCRIBE, want about 3 × 200 ms (0.3–5 s)", r.ClosedAfter)
		}
		if n := b.count(isKind(springbroker.EventReadTimeout)); n != 1 {
			t.Errorf("broker reported %d heart-beat read timeouts, want 1", n)
		}
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, sx, sy)
		g := startScenarioGate(t, b.origin(), func(o *proxy.Options) {
			// stompgate promises the broker what Spring asks for (200 ms)
			// and keeps that promise itself while the client is alive.
			o.STOMP.UpstreamHeartBeat = hb(200*ms, 500*ms)
			o.STOMP.ClientHeartBeat = hb(500*ms, 200*ms)
			o.STOMP.Keepalive.IdleTimeout = 2 * time.Second
			o.STOMP.Keepalive.PongTimeout = time.Second
		})
		const body = "published after the silence"
		r := runSilentPython(t, py, g.url("/ws"), b, uniqueDest(t), body, hold)
		t.Logf("python → stompgate → Spring: %v", r)
		if r.Connected != "CONNECTED" {
			t.Fatalf("CONNECT answered with %q", r.Connected)
		}
		if r.HeartBeat == nil || *r.HeartBeat != "500,200" {
			t.Errorf("CONNECTED heart-beat %v, want stompgate's client contract 500,200", r.HeartBeat)
		}
		if r.Error != nil || r.CloseCode != nil {
			t.Fatalf("the session ended: %v", r)
		}
		if r.SilentFor == nil || *r.SilentFor < hold.Seconds() {
			t.Fatalf("silent for %v s, want %v", r.SilentFor, hold.Seconds())
		}
		if r.Message == nil || *r.Message != body {
			t.Fatalf("MESSAGE published after %v of silence not delivered: %v", hold, r)
		}
		if n := b.count(isKind(springbroker.EventReadTimeout)); n != 0 {
			t.Errorf("broker reported %d heart-beat read timeouts", n)
		}
		t.Logf("heart-beats: %d from stompgate to the broker, %d from stompgate to the client",
			b.count(isKind(springbroker.EventHeartbeat)), r.EOLs)
	})
}

// ---------------------------------------------------------------------------
// S2. nginx's proxy_read_timeout kills an idle WebSocket with 1006.

func nginxWebSocketConf(upstream string, readTimeout time.Duration) string {
	return fmt.Sprintf(`
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}
server {
    listen {{.Listen}};
    location / {
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout %dms;
    }
}
`, upstream, readTimeout.Milliseconds())
}

func TestScenarioS2NginxIdleTimeout(t *testing.T) {
	t.Parallel()
	origin, path := rabbit(t)
	peers.Nginx(t)
	const timeout = time.Second

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		addr := peers.StartNginx(t, nginxWebSocketConf(strings.TrimPrefix(origin, "ws://"), timeout))
		c := dialLive(t, "ws://"+addr+path)
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeRabbit(t, c, uniqueDest(t))
		q := c.Watch(10 * timeout)
		t.Logf("client → nginx (proxy_read_timeout %v) → RabbitMQ, heart-beat 0,0, silent: %v", timeout, q)
		if !q.Closed || q.End.Code != 1006 || len(q.Frames) != 0 {
			t.Fatalf("want close 1006 without any frame, got %v", q)
		}
		if q.Lasted < timeout/2 || q.Lasted > 5*timeout {
			t.Fatalf("closed after %v, want about the %v timeout", q.Lasted, timeout)
		}
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		g := startScenarioGate(t, origin, func(o *proxy.Options) {
			o.STOMP.Keepalive.IdleTimeout = timeout
		})
		addr := peers.StartNginx(t, nginxWebSocketConf(strings.TrimPrefix(g.srv.URL, "http://"), timeout))
		c := dialLive(t, "ws://"+addr+path)
		c.Connect(guest("heart-beat", "0,0")...)
		dest := uniqueDest(t)
		subscribeRabbit(t, c, dest)
		q := c.Watch(10 * timeout)
		t.Logf("client → nginx → stompgate (IdleTimeout %v) → RabbitMQ: %v; %d pings and %d EOLs reached the client",
			timeout, q, c.Pings(), c.EOLs())
		expectQuiet(t, fmt.Sprintf("after %v of silence behind nginx's %v timeout", 10*timeout, timeout), q)
		roundTrip(t, c, dest, "still connected")
	})
}

// ---------------------------------------------------------------------------
// S3. The client vanishes without FIN.

// Not parallel: it counts this process's goroutines and file descriptors.
func TestScenarioS3ClientVanishes(t *testing.T) {
	const pingEvery, pongTimeout = 300 * ms, time.Second
	// Probe after pingEvery, dead pongTimeout later, then at most
	// CloseTimeout (1 s) for the broker's RECEIPT and 1 s for the close
	// handshake; the rest is slack for a loaded machine.
	const bound = 8 * time.Second
	// The control watches for longer than stompgate needs in practice
	// (about 1–2 s), not for the whole failure bound.
	const window = 4 * time.Second

	t.Run("control", func(t *testing.T) {
		// Spring's simple broker without heart-beats (its default), the
		// client with heart-beat:0,0, a network that swallows everything.
		b := startSpring(t, 0, 0)
		r := startRelay(t, b.addr())
		c := dialLive(t, "ws://"+r.addr()+"/ws")
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		r.stall()
		if e, ended := b.waitEvent(window, isKind(springbroker.EventClosed)); ended {
			t.Fatalf("the broker noticed the vanished client: %+v", e)
		}
		if b.b.Sessions() != 1 || b.b.Subscriptions() != 1 {
			t.Fatalf("broker holds %d sessions, %d subscriptions; want the stale 1 and 1", b.b.Sessions(), b.b.Subscriptions())
		}
		t.Logf("%v after the client vanished the broker still holds its session and subscription", window)
	})

	t.Run("stompgate", func(t *testing.T) {
		b := startSpring(t, 0, 0)
		g := startScenarioGate(t, b.origin(), func(o *proxy.Options) {
			o.STOMP.Keepalive.ClientPingInterval = pingEvery
			o.STOMP.Keepalive.PongTimeout = pongTimeout
		})
		r := startRelay(t, strings.TrimPrefix(g.srv.URL, "http://"))
		fd0, gr0 := openFDs(t), goroutines()

		c := dialLive(t, "ws://"+r.addr()+"/ws")
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		r.stall()
		stalled := time.Now()
		if !eventually(bound, func() bool { return g.h.ActiveSessions() == 0 }) {
			t.Fatalf("stompgate still holds %d sessions %v after the client vanished", g.h.ActiveSessions(), bound)
		}
		t.Logf("stompgate ended the session %v after the client vanished", time.Since(stalled).Round(time.Millisecond))

		d, ok := b.waitEvent(2*time.Second, isFrame("DISCONNECT"))
		if !ok {
			t.Fatal("the broker received no DISCONNECT")
		}
		if _, has := d.Frame.Header("receipt"); !has {
			t.Errorf("DISCONNECT without receipt: %v", d.Frame.Headers)
		}
		if _, ok := b.waitEvent(2*time.Second, isKind(springbroker.EventClosed)); !ok {
			t.Fatal("the broker's WebSocket session did not end")
		}
		if !eventually(2*time.Second, func() bool { return b.b.Sessions() == 0 && b.b.Subscriptions() == 0 }) {
			t.Fatalf("broker still holds %d sessions, %d subscriptions", b.b.Sessions(), b.b.Subscriptions())
		}

		// stompgate's two sockets and the broker's one are closed; what is
		// left is the test's own: the client's socket and the relay's two.
		if !eventually(3*time.Second, func() bool { return openFDs(t) <= fd0+3 }) {
			t.Errorf("%d file descriptors open, want at most %d (baseline %d + the client's and the stalled relay's 3)", openFDs(t), fd0+3, fd0)
		}
		r.close()
		c.Close()
		const slack = 2
		if !eventually(5*time.Second, func() bool { return openFDs(t) <= fd0 && goroutines() <= gr0+slack }) {
			t.Errorf("after closing the test's own connections: %d fds (baseline %d), %d goroutines (baseline %d + %d)",
				openFDs(t), fd0, goroutines(), gr0, slack)
		}
	})
}

// ---------------------------------------------------------------------------
// S4. The broker vanishes without FIN, or dies.

func TestScenarioS4BrokerVanishes(t *testing.T) {
	t.Parallel()
	// Spring's broker with {200, 200}; stompgate asks for 200 ms each way,
	// so the broker is dead after 200 ms × Tolerance 3 without data.
	const bound = 5 * time.Second

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 200*ms, 200*ms)
		r := startRelay(t, b.addr())
		c := dialLive(t, "ws://"+r.addr()+"/ws")
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		r.stall()
		q := c.Watch(3 * time.Second)
		t.Logf("client with heart-beat 0,0 after the broker vanished: %v", q)
		expectQuiet(t, "a client without heart-beats cannot notice", q)
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 200*ms, 200*ms)
		r := startRelay(t, b.addr())
		g := startScenarioGate(t, "ws://"+r.addr(), func(o *proxy.Options) {
			o.STOMP.UpstreamHeartBeat = hb(200*ms, 200*ms)
		})
		t.Cleanup(r.close) // runs before the gate's cleanup waits for its sessions
		c := dialLive(t, g.url("/ws"))
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		r.stall()
		stalled := time.Now()
		q := c.Watch(bound)
		q.Lasted = time.Since(stalled)
		t.Logf("client through stompgate after the broker vanished: %v", q)
		if !q.Closed {
			t.Fatalf("the client was not told within %v", bound)
		}
		expectErrorThenClose(t, q, 1011)
	})
}

// expectErrorThenClose wants exactly one ERROR with a message, then close code.
func expectErrorThenClose(t *testing.T, q stomptest.Quiet, code int) {
	t.Helper()
	if len(q.Frames) != 1 || q.Frames[0].Command != "ERROR" || q.Frames[0].Headers["message"] == "" {
		t.Fatalf("want one ERROR frame saying what happened, got %v", q)
	}
	if q.End.Code != code {
		t.Fatalf("close %d %q, want %d", q.End.Code, q.End.Text, code)
	}
}

func TestScenarioS4BrokerKilled(t *testing.T) {
	t.Parallel()
	const bound = 5 * time.Second

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 200*ms, 200*ms)
		c := dialLive(t, b.url())
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		b.kill()
		q := c.Watch(bound)
		t.Logf("client directly on a broker that died: %v", q)
		if !q.Closed || q.End.Code != 1006 || len(q.Frames) != 0 {
			t.Fatalf("want close 1006 and no explanation, got %v", q)
		}
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 200*ms, 200*ms)
		g := startScenarioGate(t, b.origin(), func(o *proxy.Options) {
			o.STOMP.UpstreamHeartBeat = hb(200*ms, 200*ms)
		})
		c := dialLive(t, g.url("/ws"))
		c.Connect(guest("heart-beat", "0,0")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		killed := time.Now()
		b.kill()
		q := c.Watch(bound)
		q.Lasted = time.Since(killed)
		t.Logf("client through stompgate on a broker that died: %v", q)
		if !q.Closed {
			t.Fatalf("the client was not told within %v", bound)
		}
		expectErrorThenClose(t, q, 1011)
	})
}

// ---------------------------------------------------------------------------
// S5. RabbitMQ's CONNECTED (rounded to whole seconds, mirrored) drives
// stompgate's upstream emitter and broker deadline.

func TestScenarioS5RabbitRoundedHeartBeats(t *testing.T) {
	t.Parallel()
	origin, path := rabbit(t)
	// CONNECT heart-beat:1500,100 → RabbitMQ answers 1000,1000: it mirrors
	// the values and rounds them down to whole seconds, with a 1 s minimum
	// (docs/heartbeats.md#rabbitmq). It then expects a byte at least every
	// 1 s (gone after 2–3 s) and sends "\n" every 500 ms.
	const asked = "1500,100"
	const rabbitAnswer = "1000,1000"
	const hold = 10500 * ms // more than 10 of RabbitMQ's 1 s periods

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		c := dialLive(t, origin+path)
		conn := c.Connect(guest("heart-beat", asked)...)
		if got := conn.Headers["heart-beat"]; got != rabbitAnswer {
			t.Errorf("RabbitMQ answered heart-beat:%s with %s, want %s", asked, got, rabbitAnswer)
		}
		subscribeRabbit(t, c, uniqueDest(t))
		// The client sends nothing at all, not even WebSocket pings
		// (RabbitMQ counts any byte, pings included).
		q := c.Watch(hold)
		t.Logf("client that sends nothing, directly to RabbitMQ: %v", q)
		if !q.Closed || q.End.Code != 1000 || q.End.Text != "STOMP died" || len(q.Frames) != 0 {
			t.Fatalf(`want close 1000 "STOMP died" without ERROR, got %v`, q)
		}
		if q.Lasted < time.Second || q.Lasted > 6*time.Second {
			t.Fatalf("closed after %v, want 2–3 s", q.Lasted)
		}
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		g := startScenarioGate(t, origin, func(o *proxy.Options) {
			o.STOMP.UpstreamHeartBeat = hb(1500*ms, 100*ms)
			o.STOMP.ClientHeartBeat = hb(2000*ms, 1500*ms)
			o.STOMP.Keepalive.IdleTimeout = 10 * time.Second
		})
		c := dialLive(t, g.url(path))
		conn := c.Connect(guest("heart-beat", asked)...)
		if got := conn.Headers["heart-beat"]; got != "2000,1500" {
			t.Errorf("CONNECTED heart-beat:%s, want stompgate's client contract 2000,1500", got)
		}
		dest := uniqueDest(t)
		subscribeRabbit(t, c, dest)
		// Silent except for WebSocket pings every 300 ms, which count as
		// client liveness at stompgate but never reach RabbitMQ.
		stop := make(chan struct{})
		pinger := make(chan struct{})
		go func() {
			defer close(pinger)
			tick := time.NewTicker(300 * ms)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					c.Ping("scenario")
				}
			}
		}()
		q := c.Watch(hold)
		close(stop)
		<-pinger
		t.Logf("client sending only pings, through stompgate to RabbitMQ: %v; %d EOLs from stompgate", q, c.EOLs())
		expectQuiet(t, fmt.Sprintf("after %v", hold), q)
		roundTrip(t, c, dest, "still connected")

		// The periods stompgate derived, from its session log line.
		c.SendFrame("DISCONNECT", nil, "receipt", "bye")
		c.Watch(3 * time.Second)
		if eventually(3*time.Second, func() bool { return g.h.ActiveSessions() == 0 }) {
			for _, e := range g.logs.All() {
				f := e.ContextMap()
				if send, ok := f["up_send_period"]; ok {
					t.Logf("stompgate's upstream periods: send %v (max(1500, RabbitMQ's sy 1000)), receive %v (max(RabbitMQ's sx 1000, 100))", send, f["up_recv_period"])
					if recv, ok := f["up_recv_period"].(time.Duration); ok && recv != time.Second {
						t.Errorf("up_recv_period %v, want 1s from RabbitMQ's CONNECTED (not the 100 ms asked)", recv)
					}
				}
			}
		}
	})
}

// ---------------------------------------------------------------------------
// S6. A throttled background tab: heart-beats 10× late, pings answered.

func TestScenarioS6ThrottledClient(t *testing.T) {
	t.Parallel()
	const period = 200 * ms
	const throttled = 10 * period       // the tab's timer fires this rarely
	const window = 2*throttled + period // two throttled heart-beats
	sendEvery := func(c *stomptest.Client, every time.Duration) (stop func()) {
		done, ended := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(ended)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if c.HeartBeat() != nil {
						return
					}
				}
			}
		}()
		return func() { close(done); <-ended }
	}
	gate := func(t *testing.T, b *spring) *gate {
		return startScenarioGate(t, b.origin(), func(o *proxy.Options) {
			o.STOMP.UpstreamHeartBeat = hb(period, period)
			o.STOMP.ClientHeartBeat = hb(period, period)
			o.STOMP.Keepalive.PongTimeout = time.Second
		})
	}

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, period, period)
		c := dialLive(t, b.url())
		c.Connect(guest("heart-beat", "200,200")...)
		subscribeSpring(t, c, b, uniqueDest(t))
		defer sendEvery(c, throttled)()
		q := c.Watch(window)
		t.Logf("throttled client directly to Spring: %v", q)
		if !q.Closed || len(q.Frames) != 1 || q.Frames[0].Command != "ERROR" || q.Frames[0].Headers["message"] != "Session closed." || q.End.Code != 1002 {
			t.Fatalf(`want ERROR "Session closed." then close 1002, got %v`, q)
		}
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		t.Run("throttled", func(t *testing.T) {
			t.Parallel()
			b := startSpring(t, period, period)
			g := gate(t, b)
			c := dialLive(t, g.url("/ws"))
			c.Connect(guest("heart-beat", "200,200")...)
			dest := uniqueDest(t)
			subscribeSpring(t, c, b, dest)
			stop := sendEvery(c, throttled)
			q := c.Watch(window)
			stop()
			t.Logf("throttled client through stompgate: %v; it answered %d pings", q, c.Pings())
			expectQuiet(t, "throttled client that answers pings", q)
			b.b.Publish(dest, []byte("welcome back"))
			if m := c.Expect(5*time.Second, "MESSAGE"); string(m.Body) != "welcome back" {
				t.Fatalf("MESSAGE %v", m)
			}
			if n := b.count(isKind(springbroker.EventReadTimeout)); n != 0 {
				t.Errorf("broker reported %d heart-beat read timeouts", n)
			}
		})
		t.Run("unresponsive", func(t *testing.T) {
			t.Parallel()
			b := startSpring(t, period, period)
			g := gate(t, b)
			c := dialLive(t, g.url("/ws"), stomptest.WithoutPongs())
			c.Connect(guest("heart-beat", "200,200")...)
			subscribeSpring(t, c, b, uniqueDest(t))
			start := time.Now()
			q := c.Watch(5 * time.Second)
			q.Lasted = time.Since(start)
			t.Logf("client that answers nothing, through stompgate: %v after %d pings", q, c.Pings())
			if !q.Closed {
				t.Fatalf("stompgate did not drop a client that answers nothing: %v", q)
			}
			d, ok := b.waitEvent(3*time.Second, isFrame("DISCONNECT"))
			if !ok {
				t.Fatal("the broker received no DISCONNECT for the dropped client")
			}
			if _, has := d.Frame.Header("receipt"); !has {
				t.Errorf("DISCONNECT without receipt: %v", d.Frame.Headers)
			}
			if n := b.count(isKind(springbroker.EventReadTimeout)); n != 0 {
				t.Errorf("broker reported %d heart-beat read timeouts: it timed out before stompgate told it", n)
			}
			if _, ok := b.waitEvent(3*time.Second, isKind(springbroker.EventClosed)); !ok {
				t.Fatal("the broker's session did not end")
			}
		})
	})
}

// ---------------------------------------------------------------------------
// S7. DISCONNECT without receipt.

func TestScenarioS7DisconnectWithoutReceipt(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, url string) stomptest.Quiet {
		c := dialLive(t, url)
		c.Connect(guest()...)
		c.SendFrame("DISCONNECT", nil)
		return c.Watch(5 * time.Second)
	}
	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 0, 0)
		q := run(t, b.url())
		t.Logf("DISCONNECT without receipt, directly to Spring: %v", q)
		if !q.Closed || len(q.Frames) != 1 || q.Frames[0].Command != "ERROR" || q.Frames[0].Headers["message"] != "Session closed." || q.End.Code != 1002 {
			t.Fatalf(`want ERROR "Session closed." then close 1002, got %v`, q)
		}
	})
	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 0, 0)
		g := startScenarioGate(t, b.origin(), nil)
		q := run(t, g.url("/ws"))
		t.Logf("DISCONNECT without receipt, through stompgate: %v", q)
		if !q.Closed || len(q.Frames) != 0 || q.End.Code != 1000 {
			t.Fatalf("want a clean close 1000 and no frame, got %v", q)
		}
		d, ok := b.waitEvent(time.Second, isFrame("DISCONNECT"))
		if !ok {
			t.Fatal("the broker received no DISCONNECT")
		}
		if _, has := d.Frame.Header("receipt"); !has {
			t.Errorf("stompgate forwarded the DISCONNECT without adding a receipt: %v", d.Frame.Headers)
		}
	})
}

// ---------------------------------------------------------------------------
// S8. heart-beat:1000, 1000 (with a space).

func TestScenarioS8HeartBeatWithSpace(t *testing.T) {
	t.Parallel()
	const spaced = "1000, 1000"
	t.Run("control", func(t *testing.T) {
		t.Parallel()
		b := startSpring(t, 0, 0)
		c := dialLive(t, b.url())
		c.SendFrame("CONNECT", nil, "accept-version", "1.2", "host", "/", "heart-beat", spaced)
		q := c.Watch(5 * time.Second)
		t.Logf("heart-beat:%s directly to Spring: %v", spaced, q)
		if !q.Closed || len(q.Frames) != 1 || q.Frames[0].Command != "ERROR" || q.End.Code != 1002 {
			t.Fatalf("want ERROR then close 1002, got %v", q)
		}
	})
	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		for _, mode := range []keepalive.Mode{keepalive.Terminate, keepalive.Passthrough} {
			t.Run(mode.String(), func(t *testing.T) {
				t.Parallel()
				b := startSpring(t, 0, 0)
				g := startScenarioGate(t, b.origin(), func(o *proxy.Options) { o.STOMP.Keepalive.Mode = mode })
				c := dialLive(t, g.url("/ws"))
				conn := c.Connect(guest("heart-beat", spaced)...)
				t.Logf("heart-beat:%s through stompgate (%v): %v", spaced, mode, conn)
				e, ok := b.waitEvent(time.Second, isFrame("CONNECT"))
				if !ok {
					t.Fatal("the broker saw no CONNECT")
				}
				if v, _ := e.Frame.Header("heart-beat"); strings.ContainsAny(v, " \t") {
					t.Errorf("the broker received heart-beat:%q", v)
				}
				expectQuiet(t, "after CONNECTED", c.Watch(500*ms))
			})
		}
	})
}

// ---------------------------------------------------------------------------
// S9. @stomp/stompjs through stompgate, to RabbitMQ and to Spring.

type stompjsResult struct {
	Connected             bool     `json:"connected"`
	Version               string   `json:"version"`
	HeartBeat             string   `json:"heartBeat"`
	Received              []string `json:"received"`
	HeartbeatsIn          int      `json:"heartbeatsIn"`
	HeartbeatsOut         int      `json:"heartbeatsOut"`
	ServerActivityTimeout bool     `json:"serverActivityTimeout"`
	StompError            *string  `json:"stompError"`
	CloseCode             *int     `json:"closeCode"`
	ClosedDuringHold      bool     `json:"closedDuringHold"`
	HeldMs                *int     `json:"heldMs"`
	Error                 *string  `json:"error"`
}

func TestScenarioS9StompJS(t *testing.T) {
	t.Parallel()
	node, jsDir := peers.Node(t)
	// stomp.js defaults to 10000,10000; scaled to 250 ms so that ten periods
	// of silence take 2.5 s.
	const period = 250 * ms
	const hold = 3 * time.Second
	run := func(t *testing.T, url string) stompjsResult {
		t.Helper()
		opts, _ := json.Marshal(map[string]any{
			"heartbeat": period.Milliseconds(), "holdMs": hold.Milliseconds(),
			"destination": uniqueDest(t), "timeoutMs": 25000,
		})
		p := startLineProc(t, 40*time.Second, jsDir, node, "scenario_stompjs.mjs", url, string(opts))
		line, err := p.next(35 * time.Second)
		if err != nil {
			t.Fatalf("stomp.js: %v", err)
		}
		var r stompjsResult
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("stomp.js printed %q: %v", line, err)
		}
		t.Logf("stomp.js: %s", line)
		if !r.Connected || r.Error != nil || r.StompError != nil || r.ClosedDuringHold || r.ServerActivityTimeout {
			t.Fatalf("stomp.js session failed: %s", line)
		}
		if r.HeartBeat != "250,250" {
			t.Errorf("CONNECTED heart-beat %q, want stompgate's client contract 250,250", r.HeartBeat)
		}
		if strings.Join(r.Received, ",") != "first,second" {
			t.Fatalf("received %q, want first and second", r.Received)
		}
		// Node's timers may fire a millisecond early: allow 5%.
		if r.HeldMs == nil || time.Duration(*r.HeldMs)*ms < hold*95/100 {
			held := "none"
			if r.HeldMs != nil {
				held = strconv.Itoa(*r.HeldMs)
			}
			t.Fatalf("held %s ms, want %v", held, hold)
		}
		return r
	}
	clientHB := func(o *proxy.Options) { o.STOMP.ClientHeartBeat = hb(period, period) }

	t.Run("rabbitmq", func(t *testing.T) {
		t.Parallel()
		origin, path := rabbit(t)
		t.Run("stompgate", func(t *testing.T) {
			g := startScenarioGate(t, origin, clientHB)
			run(t, g.url(path))
		})
	})
	t.Run("spring", func(t *testing.T) {
		t.Parallel()
		t.Run("stompgate", func(t *testing.T) {
			b := startSpring(t, 200*ms, 200*ms)
			g := startScenarioGate(t, b.origin(), func(o *proxy.Options) {
				clientHB(o)
				o.STOMP.UpstreamHeartBeat = hb(200*ms, 200*ms)
			})
			run(t, g.url("/ws"))
			if n := b.count(isKind(springbroker.EventReadTimeout)); n != 0 {
				t.Errorf("broker reported %d heart-beat read timeouts", n)
			}
		})
	})
}
