package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/proxy"
)

// helperSpringBroker serves the Spring-semantics broker on 127.0.0.1 at
// /ws and prints its address. Its zero heart-beat is Spring's simple
// broker without a TaskScheduler: CONNECTED carries heart-beat:0,0, so no
// STOMP heart-beat ever tells stompgate whether it lives. Like Spring's
// container, it answers WebSocket pings and accepts a handshake that
// offers no STOMP subprotocol.
func helperSpringBroker() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	b := springbroker.New(springbroker.Config{HeartBeat: [2]time.Duration{0, 0}})
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	_ = srv.Serve(ln)
	return 0
}

// clientEnd is how one client's session ended, as the client saw it.
type clientEnd struct {
	name  string
	stomp bool
	seen  stomptest.Quiet // the frames received, then the end
}

// readUntilEnd reads c until its read fails and reports how it ended.
func readUntilEnd(c *stomptest.Client, name string, stomp bool, ends chan<- clientEnd) {
	ends <- clientEnd{name: name, stomp: stomp, seen: c.Watch(time.Hour)}
}

// A broker without heart-beats that freezes is found by upstream pings:
// Spring's simple broker without a TaskScheduler (CONNECTED heart-beat:0,0)
// runs as its own process behind a real stompgate process whose upstream
// heart-beat is 0,0 too, so no heart-beat deadline watches the broker hop;
// 20 STOMP clients and 5 pass-through clients (no subprotocol, a first
// message that is not a STOMP frame) hold sessions through it. Pings every
// 1s keep all 25 alive while the broker answers them. Frozen with SIGSTOP
// (its kernel still takes stompgate's bytes and connects), the broker
// answers nothing: within UPSTREAM_PING_INTERVAL + PONG_TIMEOUT + 2s of the
// freeze every STOMP client gets ERROR 'upstream pong timeout after 1s'
// then close 1011, every pass-through client gets 1011 alone, and /readyz
// (READY_CHECKS_UPSTREAM) turns 503.
func TestFrozenBrokerWithoutHeartBeatsEndsSessions(t *testing.T) {
	const (
		pingInterval = time.Second
		pongTimeout  = time.Second
		window       = pingInterval + pongTimeout + 2*time.Second
		stompClients = 20
		passClients  = 5
	)
	broker := startProc(t, "springbroker")
	// Runs before startProc's cleanup kills it: a stopped process is let
	// go on first.
	t.Cleanup(func() { _ = broker.cmd.Process.Signal(syscall.SIGCONT) })
	pollUntil(t, 10*time.Second, "the broker's address", func() bool { return strings.Contains(broker.out.String(), "\n") })
	brokerAddr, _, _ := strings.Cut(broker.out.String(), "\n")

	addr, adminAddr := freeAddr(t), freeAddr(t)
	startStompgate(t, adminAddr,
		"STOMPGATE_UPSTREAM_URL=ws://"+brokerAddr,
		"STOMPGATE_LISTEN_ADDR="+addr,
		"STOMPGATE_UPSTREAM_PING_INTERVAL="+pingInterval.String(),
		"STOMPGATE_PONG_TIMEOUT="+pongTimeout.String(),
		"STOMPGATE_READY_CHECKS_UPSTREAM=true",
		"STOMPGATE_UPSTREAM_HEARTBEAT=0,0",
	)
	admin := "http://" + adminAddr
	pollUntil(t, 5*time.Second, "/readyz 200 with the broker answering", func() bool {
		code, _ := httpGet(admin + "/readyz")
		return code == http.StatusOK
	})

	ends := make(chan clientEnd, stompClients+passClients)
	for i := range stompClients {
		c := stompSession(t, addr) // CONNECT heart-beat:0,0, CONNECTED
		go readUntilEnd(c, fmt.Sprintf("STOMP client %d", i), true, ends)
	}
	for i := range passClients {
		// No subprotocol: the broker accepts the handshake without one, as
		// Spring does, and stompgate decides from the first message. One
		// that leaves a partial line is not STOMP; the broker's decoder
		// keeps it as an incomplete frame and says nothing.
		c := stomptest.Dial(t, "ws://"+addr+"/ws")
		c.Send([]byte("hello, not STOMP"))
		go readUntilEnd(c, fmt.Sprintf("pass-through client %d", i), false, ends)
	}

	// stompgate holds 20 CONNECTED STOMP sessions with no heart-beat
	// deadline on the broker hop, and 5 sessions that are not STOMP.
	var sessions []proxy.SessionInfo
	pollUntil(t, 5*time.Second, "25 sessions: 20 STOMP without broker heart-beats, 5 not STOMP", func() bool {
		code, body := httpGet(admin + "/debug/sessions")
		sessions = nil
		if code != http.StatusOK || json.Unmarshal([]byte(body), &sessions) != nil {
			return false
		}
		var stomp, pass int
		for _, s := range sessions {
			switch {
			case s.STOMP == nil:
				pass++
			case s.STOMP.Connected && s.STOMP.Upstream.HeartBeatOffered == "0,0" &&
				s.STOMP.Upstream.HeartBeatSent == "0,0" && s.STOMP.Upstream.ReceivePeriodMS == 0:
				stomp++
			}
		}
		return stomp == stompClients && pass == passClients && len(sessions) == stompClients+passClients
	})

	// While the broker answers the pings, nothing ends: the window spans
	// more than one ping interval plus pong timeout.
	select {
	case e := <-ends:
		t.Fatalf("%s ended with the broker alive: %v", e.name, e.seen)
	case <-time.After(pingInterval + pongTimeout + 500*time.Millisecond):
	}
	if n := upstreamPongTimeouts(t, admin); n != 0 {
		t.Fatalf("%d upstream pong timeouts with the broker alive", n)
	}

	broker.signal(t, syscall.SIGSTOP)
	frozen := time.Now()
	// The frozen broker's kernel still completes connects.
	if c, err := net.DialTimeout("tcp", brokerAddr, time.Second); err != nil {
		t.Fatalf("TCP connect to the frozen broker: %v", err)
	} else {
		c.Close()
	}

	type readyzResult struct {
		took time.Duration
		code int
		body string
	}
	readyz := make(chan readyzResult, 1)
	go func() {
		var r readyzResult
		for time.Since(frozen) < 10*time.Second {
			r.code, r.body = httpGet(admin + "/readyz")
			r.took = time.Since(frozen)
			if r.code == http.StatusServiceUnavailable {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		readyz <- r
	}()

	var got []clientEnd
	timeout := time.NewTimer(time.Until(frozen.Add(window)))
	defer timeout.Stop()
collect:
	for len(got) < stompClients+passClients {
		select {
		case e := <-ends:
			got = append(got, e)
		case <-timeout.C:
			break collect
		}
	}
	var stompTook, passTook []time.Duration
	for _, e := range got {
		took := e.seen.End.At.Sub(frozen)
		if took > window {
			t.Errorf("%s closed %v after the freeze, want within %v", e.name, took, window)
		}
		if !e.seen.Closed || e.seen.End.Code != websocket.CloseInternalServerErr {
			t.Errorf("%s: %v, want close 1011", e.name, e.seen)
		}
		if !e.stomp {
			passTook = append(passTook, took)
			if len(e.seen.Frames) != 0 {
				t.Errorf("%s (not STOMP) got %v before its close", e.name, e.seen)
			}
			continue
		}
		stompTook = append(stompTook, took)
		if f := e.seen.Frames; len(f) != 1 || f[0].Command != "ERROR" || f[0].Headers["message"] != "upstream pong timeout after 1s" {
			t.Errorf("%s got %v, want one ERROR 'upstream pong timeout after 1s' then 1011", e.name, e.seen)
		}
	}
	if len(stompTook) != stompClients || len(passTook) != passClients {
		t.Fatalf("within %v of the freeze %d of %d STOMP clients and %d of %d pass-through clients were closed",
			window, len(stompTook), stompClients, len(passTook), passClients)
	}
	pollUntil(t, time.Second, "25 upstream pong timeouts in /metrics", func() bool {
		return upstreamPongTimeouts(t, admin) == stompClients+passClients
	})

	r := <-readyz
	if r.code != http.StatusServiceUnavailable || r.took > 5*time.Second {
		t.Errorf("/readyz %d %q %v after the freeze, want 503 within 5s", r.code, r.body, r.took)
	}
	if !broker.running() {
		t.Errorf("the broker process exited:\n%s", broker.out.String())
	}
	spread := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("min %v, median %v, max %v", d[0].Round(time.Millisecond),
			d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	t.Logf("broker frozen (UPSTREAM_PING_INTERVAL %v, PONG_TIMEOUT %v, window %v): %d STOMP clients got ERROR + 1011 after %s; %d pass-through clients got 1011 after %s",
		pingInterval, pongTimeout, window, stompClients, spread(stompTook), passClients, spread(passTook))
	t.Logf("/readyz %d after %v: %s", r.code, r.took.Round(time.Millisecond), strings.TrimSpace(r.body))
}

// upstreamPongTimeouts reads stompgate_liveness_failures_total for the
// upstream hop and reason pong_timeout from /metrics.
func upstreamPongTimeouts(t *testing.T, admin string) int {
	t.Helper()
	code, body := httpGet(admin + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	const series = `stompgate_liveness_failures_total{hop="upstream",reason="pong_timeout"} `
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("/metrics has no %s", strings.TrimSpace(series))
	return 0
}
