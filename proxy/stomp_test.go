package proxy

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/internal/wstest"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// stompOpts sets short, test-sized liveness settings; idle coverage is off
// unless a test turns it on, so only the behaviour under test emits.
func stompOpts(mod func(*STOMPOptions)) func(*Options) {
	return func(o *Options) {
		o.STOMP.UpstreamHeartBeat = inspect.HeartBeat{}
		o.STOMP.ClientHeartBeat = inspect.HeartBeat{}
		o.STOMP.Keepalive = keepalive.Config{IdleTimeout: -1, PongTimeout: 300 * time.Millisecond, ClientPingInterval: time.Hour}
		if mod != nil {
			mod(&o.STOMP)
		}
	}
}

// stompDial opens a STOMP 1.2 client connection to the proxy.
func stompDial(t *testing.T, url string, opts ...stomptest.Option) *stomptest.Client {
	t.Helper()
	return stomptest.Dial(t, url, append([]stomptest.Option{stomptest.Subprotocols("v12.stomp"), stomptest.HandshakeTimeout(2 * time.Second)}, opts...)...)
}

// readMsg reads one message, as it came, with a deadline.
func readMsg(c *stomptest.Client, within time.Duration) (string, error) {
	b, err := c.NextMessage(within)
	return string(b), err
}

func mustMsg(t *testing.T, c *stomptest.Client, within time.Duration) string {
	t.Helper()
	m, err := readMsg(c, within)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

// connectedSession proxies one client to a scripted broker through the
// STOMP handshake and returns the proxy, the client and the broker's side.
func connectedSession(t *testing.T, mod func(*Options)) (*testProxy, *stomptest.Client, *stomptest.Client) {
	t.Helper()
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), mod)
	c := stompDial(t, p.url("/ws"))
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\n\n\x00"))
	mustMsg(t, c, time.Second)
	return p, c, b
}

// broker is a scripted upstream: the test receives its connection and
// speaks for it.
func broker(t *testing.T) (*upstream, func() *stomptest.Client) {
	hold := make(chan struct{})
	up := newUpstream(t, []string{"v12.stomp"}, func(*websocket.Conn) { <-hold })
	// Registered after newUpstream's, so it runs first (cleanups are LIFO)
	// and releases the handlers that cleanup waits for.
	t.Cleanup(func() { close(hold) })
	return up, func() *stomptest.Client {
		select {
		case c := <-up.conns:
			return stomptest.Wrap(t, c)
		case <-time.After(2 * time.Second):
			t.Fatal("no upstream connection")
			return nil
		}
	}
}

func TestHeartBeatRewrittenPerHop(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(func(o *STOMPOptions) {
		o.UpstreamHeartBeat = inspect.HeartBeat{Send: 300 * time.Millisecond, Receive: 700 * time.Millisecond}
		o.ClientHeartBeat = inspect.HeartBeat{Send: 400 * time.Millisecond, Receive: 500 * time.Millisecond}
	}))
	c := stompDial(t, p.url("/ws"))
	b := accept()
	// Spring rejects "1000, 1000"; the client's value is replaced anyway.
	c.Send([]byte("\nCONNECT\naccept-version:1.2\nheart-beat:1000, 1000\nhost:/\n\n\x00"))
	if got := mustMsg(t, b, time.Second); got != "CONNECT\naccept-version:1.2\nheart-beat:300,700\nhost:/\n\n\x00" {
		t.Fatalf("upstream got %q", got)
	}
	b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:test\n\n\x00"))
	if got := mustMsg(t, c, time.Second); got != "CONNECTED\nversion:1.2\nheart-beat:400,500\nserver:test\n\n\x00" {
		t.Fatalf("client got %q", got)
	}
}

// In terminate mode heart-beat EOLs are hop-local: the client's never
// reach the broker, the broker's never reach the client.
func TestHeartBeatEOLsAreConsumed(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(nil))
	c := stompDial(t, p.url("/ws"))
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\n\n\x00\n"))
	// The CONNECTED states stompgate's own contract (here 0,0) and loses
	// the broker's trailing EOL.
	if got := mustMsg(t, c, time.Second); got != "CONNECTED\nheart-beat:0,0\nversion:1.2\n\n\x00" {
		t.Fatalf("client got %q", got)
	}
	for range 3 {
		c.Send([]byte("\n"))
		b.Send([]byte("\r\n"))
	}
	c.Send([]byte("SEND\ndestination:/q\n\nhi\x00\n\n"))
	b.Send([]byte("MESSAGE\ndestination:/q\n\nhi\x00"))
	if got := mustMsg(t, b, time.Second); got != "SEND\ndestination:/q\n\nhi\x00" {
		t.Fatalf("upstream got %q, want the SEND alone", got)
	}
	if got := mustMsg(t, c, time.Second); got != "MESSAGE\ndestination:/q\n\nhi\x00" {
		t.Fatalf("client got %q, want the MESSAGE alone", got)
	}
}

func TestDisconnectWithoutReceiptClosesCleanly(t *testing.T) {
	_, c, b := connectedSession(t, stompOpts(nil))
	c.Send([]byte("DISCONNECT\n\n\x00"))
	got := mustMsg(t, b, time.Second)
	id, ok := inspect.HeaderValue([]byte(got), "receipt")
	if !ok || !strings.HasPrefix(string(id), "stompgate-") {
		t.Fatalf("upstream got %q, want a DISCONNECT with stompgate's receipt", got)
	}
	b.Send([]byte("RECEIPT\nreceipt-id:" + string(id) + "\n\n\x00"))
	c.ExpectClose(time.Second, 1000)
}

func TestUpstreamLostGivesStompError(t *testing.T) {
	_, c, b := connectedSession(t, stompOpts(nil))
	b.Conn().NetConn().Close()
	got := mustMsg(t, c, time.Second)
	if msg, _ := inspect.HeaderValue([]byte(got), "message"); !strings.HasPrefix(got, "ERROR\n") || string(msg) != "upstream connection lost" {
		t.Fatalf("client got %q, want ERROR message:upstream connection lost", got)
	}
	c.ExpectClose(time.Second, 1011)
}

// A broker's own ERROR and close reach the client unchanged, with no second
// ERROR from stompgate.
func TestUpstreamErrorPassesThrough(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(nil))
	c := stompDial(t, p.url("/ws"))
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	errFrame := "ERROR\nmessage:Session closed.\ncontent-length:0\n\n\x00"
	b.Send([]byte(errFrame))
	b.SendClose(1002, "")
	if got := mustMsg(t, c, time.Second); got != errFrame {
		t.Fatalf("client got %q", got)
	}
	c.ExpectClose(time.Second, 1002)
	e := p.waitSessionEnd(t, 2*time.Second)
	if e.ContextMap()["upstream_error"] != "Session closed." {
		t.Errorf("log line lacks the broker's ERROR message: %v", e.ContextMap())
	}
}

// A frame over the frame limit, split over messages each under the message
// limit, gets a STOMP ERROR then close 1009 with a reason.
func TestFrameOverLimit(t *testing.T) {
	_, c, _ := connectedSession(t, stompOpts(func(o *STOMPOptions) { o.Limits.MaxFrameBytes = 1000 }))
	c.Send(append([]byte("SEND\ndestination:/q\n\n"), bytes.Repeat([]byte("x"), 800)...))
	c.Send(bytes.Repeat([]byte("x"), 800))
	got := mustMsg(t, c, time.Second)
	if msg, _ := inspect.HeaderValue([]byte(got), "message"); !strings.HasPrefix(got, "ERROR\n") || !strings.Contains(string(msg), "1000") {
		t.Fatalf("client got %q, want an ERROR naming the limit", got)
	}
	if ce := c.ExpectClose(time.Second, 1009); ce.Text == "" {
		t.Fatalf("close reason %q", ce.Text)
	}
}

func TestStrictRefusesNonStomp(t *testing.T) {
	up, _ := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(func(o *STOMPOptions) { o.Strict = true }))
	c := stompDial(t, p.url("/ws"))
	c.Send([]byte("SEND\ndestination:/q\n\n\x00"))
	if got := mustMsg(t, c, time.Second); !strings.HasPrefix(got, "ERROR\n") {
		t.Fatalf("client got %q, want an ERROR first", got)
	}
	if ce := c.ExpectClose(time.Second, 1002); !strings.Contains(ce.Text, "CONNECT") {
		t.Fatalf("close reason %q", ce.Text)
	}
}

// A broker that stops sending (no heart-beats) is declared dead after
// Tsc_up × tolerance and the client is told so.
func TestUpstreamHeartBeatTimeout(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(func(o *STOMPOptions) {
		o.UpstreamHeartBeat = inspect.HeartBeat{Receive: 100 * time.Millisecond}
		o.Keepalive.Tolerance = 2
	}))
	c := stompDial(t, p.url("/ws"))
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:100,0\n\n\x00"))
	mustMsg(t, c, time.Second)
	start := time.Now()
	got := mustMsg(t, c, 2*time.Second)
	if msg, _ := inspect.HeaderValue([]byte(got), "message"); !strings.HasPrefix(got, "ERROR\n") || !strings.Contains(string(msg), "upstream heart-beat timeout") {
		t.Fatalf("client got %q", got)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > time.Second {
		t.Errorf("declared dead after %v, deadline is 200ms", took)
	}
	c.ExpectClose(time.Second, 1011)
	// The broker wrote nothing after CONNECTED: the kernel's silence is
	// stompgate's.
	e := p.waitSessionEnd(t, 2*time.Second)
	silence, _ := e.ContextMap()["liveness_silence"].(time.Duration)
	kernel, ok := e.ContextMap()["liveness_kernel_silence"].(time.Duration)
	if !ok || silence < 150*time.Millisecond || kernel < silence-50*time.Millisecond || kernel > silence+time.Second {
		t.Errorf("liveness_silence %v, liveness_kernel_silence %v (%v): want the kernel's about stompgate's", silence, kernel, ok)
	}
}

// A client that stops answering is probed, declared dead, and the broker
// gets a DISCONNECT with a receipt before the close.
func TestDeadClientDisconnectsUpstream(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(func(o *STOMPOptions) {
		o.ClientHeartBeat = inspect.HeartBeat{Receive: 100 * time.Millisecond}
	}))
	// Reads everything, answers no ping.
	c := stompDial(t, p.url("/ws"), stomptest.WithoutPongs(), stomptest.InBackground())
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\nheart-beat:100,0\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\n\n\x00"))
	got := mustMsg(t, b, 3*time.Second)
	if !strings.HasPrefix(got, "DISCONNECT\n") || !strings.Contains(got, "receipt:") {
		t.Fatalf("upstream got %q, want DISCONNECT with a receipt", got)
	}
	id, _ := inspect.HeaderValue([]byte(got), "receipt")
	b.Send([]byte("RECEIPT\nreceipt-id:" + string(id) + "\n\n\x00"))
	b.ExpectClose(2*time.Second, 1000)
	e := p.waitSessionEnd(t, 2*time.Second)
	if v, _ := e.ContextMap()["liveness_verdict"].(string); !strings.Contains(v, "client pong timeout") {
		t.Errorf("verdict %q", v)
	}
	// The client was silent, so the kernel received nothing from it
	// either: its silence is about stompgate's (TCP_INFO counts in ms).
	silence, ok1 := e.ContextMap()["liveness_silence"].(time.Duration)
	kernel, ok2 := e.ContextMap()["liveness_kernel_silence"].(time.Duration)
	if !ok1 || !ok2 || silence <= 0 || kernel < silence-50*time.Millisecond || kernel > silence+time.Second {
		t.Errorf("liveness_silence %v (%v), liveness_kernel_silence %v (%v): want both, the kernel's about stompgate's", silence, ok1, kernel, ok2)
	}
}

// heardSince names its evidence for the late-read label: a read since the
// snapshot first, then bytes waiting in the receive queue, else the
// kernel's record of the last receipt.
func TestHeardSinceEvidence(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIOCINQ and TCP_INFO are Linux's")
	}
	nc, peer := wstest.TCPPair(t)
	c := wsconn.New(nc, wsconn.Server, "", nil, wsconn.Options{})
	l := &leg{conn: c}
	h := &l.heard
	l.readAt.Store(1) // a read since the snapshot (readSnap 0)
	if ago, ok := l.heardSince(); h.by != metrics.EvidenceRead || ago != 0 || !ok {
		t.Errorf("read since the snapshot: %v, %v, %v; want read, 0, true", h.by, ago, ok)
	}
	if _, err := peer.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !c.Unread(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the byte never reached the receive queue")
		}
	}
	l.readSnap = 1
	if ago, ok := l.heardSince(); h.by != metrics.EvidenceUnread || ago != 0 || !ok {
		t.Errorf("a byte unread: %v, %v, %v; want unread, 0, true", h.by, ago, ok)
	}
	if _, err := io.ReadFull(nc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if ago, ok := l.heardSince(); h.by != metrics.EvidenceKernel || !ok || ago > time.Second || h.kernelSilence != ago {
		t.Errorf("nothing unread: %v, %v, %v (recorded %v); want kernel, under 1s, true, recorded", h.by, ago, ok, h.kernelSilence)
	}
}

// A broker whose bytes wait in stompgate's receive queue is alive, even
// when its heart-beat deadline passes because stompgate is not reading:
// here the client does not read, so stompgate's write to it blocks and the
// broker's frames pile up unread. The deadline is counted as a late read
// (stompgate_late_reads_total), not as a death.
func TestLateReadIsNotADeath(t *testing.T) {
	up, accept := broker(t)
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) {
		stompOpts(func(o *STOMPOptions) {
			o.UpstreamHeartBeat = inspect.HeartBeat{Receive: 200 * time.Millisecond}
			o.Keepalive.Tolerance = 2
		})(o)
		o.Metrics = m
		o.WriteTimeout = 20 * time.Second
	})
	// A client with a small receive buffer, which stops reading after
	// CONNECTED.
	c := stompDial(t, p.url("/ws"), stomptest.ReceiveBuffer(4096))
	defer c.Close()
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:200,0\n\n\x00"))
	mustMsg(t, c, time.Second)

	// The broker sends MESSAGEs until its writes block (everything on the
	// way is full), then nothing: no heart-beat gets through either.
	body := strings.Repeat("x", 32<<10)
	frame := []byte("MESSAGE\ndestination:/topic/t\nsubscription:0\nmessage-id:1\n\n" + body + "\x00")
	go func() {
		for {
			if b.WriteMessage(websocket.TextMessage, frame) != nil { // blocked for 5 s
				return
			}
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); scrape(t, m, `stompgate_late_reads_total{evidence="unread",hop="upstream"}`) < 1; {
		if time.Now().After(deadline) {
			t.Fatal("no late read counted within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := scrape(t, m, `stompgate_liveness_failures_total{hop="upstream",reason="heartbeat_timeout"}`); n != 0 {
		t.Fatalf("%v upstream heart-beat timeouts with the broker's bytes unread", n)
	}
	if es := p.logs.FilterMessage("session ended").All(); len(es) > 0 {
		t.Fatalf("the session ended: %v", es[0].ContextMap()["end"])
	}
}
