package proxy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/admin"
	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/internal/wstest"
	"github.com/stompgate/stompgate/metrics"
)

// handshakeStatus attempts a WebSocket handshake and returns the HTTP
// status (101 on success).
func handshakeStatus(t *testing.T, url string, h http.Header) int {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	c, resp, err := d.Dial(url, h)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return resp.StatusCode
}

func TestOriginDeniedBeforeDial(t *testing.T) {
	var dialled atomic.Int32
	up := newUpstream(t, nil, func(c *websocket.Conn) { dialled.Add(1); echo(c) })
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) {
		o.Metrics = m
		o.AllowOrigin = func(origin string) bool { return origin == "https://app.example.com" }
	})
	if got := handshakeStatus(t, p.url("/ws"), http.Header{"Origin": {"https://evil.example.net"}}); got != http.StatusForbidden {
		t.Fatalf("foreign origin: status %d, want 403", got)
	}
	if dialled.Load() != 0 || up.lastReq != nil {
		t.Fatal("the upstream was dialled for a denied origin")
	}
	if got := handshakeStatus(t, p.url("/ws"), http.Header{"Origin": {"https://app.example.com"}}); got != http.StatusSwitchingProtocols {
		t.Fatalf("allowed origin: status %d", got)
	}
	// No Origin: not a browser, the origin policy does not apply.
	if got := handshakeStatus(t, p.url("/ws"), nil); got != http.StatusSwitchingProtocols {
		t.Fatalf("no origin: status %d", got)
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="origin_denied"}`); n != 1 {
		t.Fatalf("origin_denied = %v", n)
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="ok"}`); n != 2 {
		t.Fatalf("ok = %v", n)
	}
}

func TestMaxConnectionsIs503(t *testing.T) {
	up := newUpstream(t, nil, echo)
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) { o.MaxConnections = 2; o.Metrics = m })
	a := dial(t, p.url("/ws"), nil)
	b := dial(t, p.url("/ws"), nil)
	// The client's dial returns on the 101, which the handler writes
	// before it tracks the session: wait until both are tracked, or the
	// count below could reach 1 with b untracked and a's slot still held.
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == 2 })
	if got := handshakeStatus(t, p.url("/ws"), nil); got != http.StatusServiceUnavailable {
		t.Fatalf("third connection: status %d, want 503", got)
	}
	a.Close()
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == 1 })
	c := dial(t, p.url("/ws"), nil)
	c.Close()
	b.Close()
	if n := scrape(t, m, `stompgate_handshakes_total{result="limit"}`); n != 1 {
		t.Fatalf("limit = %v", n)
	}
}

func TestHandshakeRatePerIP(t *testing.T) {
	up := newUpstream(t, nil, echo)
	m := metrics.Discard()
	trusted := netip.MustParsePrefix("127.0.0.0/8")
	p := newProxy(t, up.wsURL(), func(o *Options) {
		o.HandshakeRatePerIP, o.HandshakeBurstPerIP = 0.001, 2
		o.TrustedProxy = trusted.Contains
		o.Metrics = m
	})
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	for i := range 2 {
		if got := handshakeStatus(t, p.url("/ws"), from("203.0.113.7")); got != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d within burst: %d", i, got)
		}
	}
	if got := handshakeStatus(t, p.url("/ws"), from("203.0.113.7")); got != http.StatusTooManyRequests {
		t.Fatalf("over burst: %d, want 429", got)
	}
	// Another client behind the same trusted proxy has its own bucket.
	if got := handshakeStatus(t, p.url("/ws"), from("203.0.113.8")); got != http.StatusSwitchingProtocols {
		t.Fatalf("other client: %d", got)
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="rate_limited"}`); n != 1 {
		t.Fatalf("rate_limited = %v", n)
	}
}

func TestClientIPThroughTrustedProxies(t *testing.T) {
	trusted := netip.MustParsePrefix("10.0.0.0/8")
	h := &Handler{opts: Options{TrustedProxy: trusted.Contains}}
	for _, tc := range []struct{ remote, xff, want string }{
		{"198.51.100.1:5000", "203.0.113.9", "198.51.100.1"},               // untrusted peer: XFF ignored
		{"10.1.1.1:5000", "203.0.113.9", "203.0.113.9"},                    // ingress adds the client
		{"10.1.1.1:5000", "1.2.3.4, 203.0.113.9, 10.2.2.2", "203.0.113.9"}, // spoofed left part ignored
		{"10.1.1.1:5000", "", "10.1.1.1"},
		{"10.1.1.1:5000", "junk", "10.1.1.1"},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := h.clientIP(r).String(); got != tc.want {
			t.Errorf("remote %s XFF %q: got %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestIPLimiterForgetsIdleAddresses(t *testing.T) {
	l := newIPLimiter(10, 5)
	now := time.Unix(1000, 0)
	for i := range 100 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), now)
	}
	l.allow(netip.MustParseAddr("10.9.9.9"), now.Add(10*time.Minute))
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets kept after the others went idle, want 1", n)
	}
}

// drainBroker is a Spring-semantics broker that records the DISCONNECT
// frames it receives.
func drainBroker(t *testing.T) (*url.URL, *atomic.Int32) {
	var disconnects atomic.Int32
	b := springbroker.New(springbroker.Config{OnEvent: func(e springbroker.Event) {
		if e.Kind == springbroker.EventFrame && e.Frame.Command == "DISCONNECT" {
			disconnects.Add(1)
		}
	}})
	srv := httptest.NewServer(b)
	t.Cleanup(func() { b.Close(); srv.Close() })
	u, _ := url.Parse("ws" + strings.TrimPrefix(srv.URL, "http"))
	return u, &disconnects
}

func stompClient(t *testing.T, url string) *stomptest.Client {
	t.Helper()
	c := stompDial(t, url)
	c.Send([]byte("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\x00"))
	if m := mustMsg(t, c, 2*time.Second); !strings.HasPrefix(m, "CONNECTED\n") {
		t.Fatalf("want CONNECTED, got %q", m)
	}
	return c
}

// The drain test: readiness fails at once, handshakes are accepted during
// the delay and refused after it, and the sessions are closed at moments
// spread over the drain period, each client with STOMP ERROR + 1012 and
// each broker session with a DISCONNECT.
func TestDrainSpreadsClosesWithErrorAnd1012(t *testing.T) {
	brokerURL, disconnects := drainBroker(t)
	m := metrics.Discard()
	p := newProxy(t, brokerURL, stompOpts(func(*STOMPOptions) {}))
	p.h.metrics = m

	const n = 20
	const delay, period = 300 * time.Millisecond, 1500 * time.Millisecond
	clients := make([]*stomptest.Client, 0, n+1)
	for range n {
		clients = append(clients, stompClient(t, p.url("/ws")))
	}

	type result struct {
		errorMsg string
		code     int
		reason   string
		at       time.Time
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	watch := func(i int, c *stomptest.Client) {
		defer wg.Done()
		q := c.Watch(delay + period + 3*time.Second)
		results[i].code, results[i].reason, results[i].at = q.End.Code, q.End.Text, q.End.At
		if !q.Closed {
			results[i].code, results[i].at = 0, time.Now()
		}
		for _, f := range q.Frames {
			if f.Command == "ERROR" {
				results[i].errorMsg = f.Headers["message"]
			}
		}
	}
	wg.Add(n)
	for i, c := range clients {
		go watch(i, c)
	}

	start := time.Now()
	done := make(chan bool)
	go func() { done <- p.h.Drain(context.Background(), DrainOptions{Delay: delay, Period: period}) }()
	waitFor(t, time.Second, p.h.Draining)
	if v := scrape(t, m, "stompgate_draining"); v != 1 {
		t.Fatalf("stompgate_draining = %v", v)
	}
	// Within the delay a new client is still admitted; it is drained too.
	late := stompClient(t, p.url("/ws"))
	wg.Add(1)
	go watch(n, late)

	waitFor(t, delay+time.Second, func() bool { return p.h.refusing.Load() })
	refusedAt := time.Now()
	if got := handshakeStatus(t, p.url("/ws"), nil); got != http.StatusServiceUnavailable {
		t.Fatalf("handshake after the delay: %d, want 503", got)
	}
	if !<-done {
		t.Fatal("Drain reported sessions left")
	}
	wg.Wait()

	var offsets []time.Duration
	for i, r := range results {
		if r.code != CloseServiceRestart || r.reason != DrainMessage {
			t.Errorf("client %d: close %d %q, want %d %q", i, r.code, r.reason, CloseServiceRestart, DrainMessage)
		}
		if r.errorMsg != DrainMessage {
			t.Errorf("client %d: no STOMP ERROR with the drain message before the close (got %q)", i, r.errorMsg)
		}
		offsets = append(offsets, r.at.Sub(start))
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	t.Logf("close times after Drain was called (delay %v, period %v): %v", delay, period, offsets)
	// None before the delay (tolerance for the scheduler), all within the
	// period plus tolerance, and spread: with 20 uniform draws the range
	// is below 40% of the period with probability < 1e-6.
	const slack = 150 * time.Millisecond
	if offsets[0] < delay-slack {
		t.Errorf("first close at %v, before the shutdown delay %v", offsets[0], delay)
	}
	if last := offsets[len(offsets)-1]; last > delay+period+slack+refusedAt.Sub(start)-delay {
		t.Errorf("last close at %v, after delay+period", last)
	}
	if spread := offsets[n-1] - offsets[0]; spread < period*4/10 {
		t.Errorf("closes spread over only %v of a %v period", spread, period)
	}
	waitFor(t, 2*time.Second, func() bool { return disconnects.Load() == n+1 })
}

// A drain whose context ends early closes whatever remains at once.
func TestDrainTimeoutClosesTheRest(t *testing.T) {
	brokerURL, _ := drainBroker(t)
	p := newProxy(t, brokerURL, stompOpts(func(*STOMPOptions) {}))
	c := stompClient(t, p.url("/ws"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if !p.h.Drain(ctx, DrainOptions{Delay: 0, Period: time.Hour}) {
		t.Fatal("sessions left after the timeout")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("drain took %v with a 200ms timeout", took)
	}
	for {
		b, err := c.NextMessage(time.Hour)
		if err != nil {
			if e, _ := c.End(); e.Code != CloseServiceRestart || e.Text != DrainMessage {
				t.Fatalf("want close 1012 %q, got %v", DrainMessage, err)
			}
			break
		}
		if !strings.Contains(string(b), "message:"+DrainMessage) {
			t.Fatalf("unexpected message %q", b)
		}
	}
}

// The metrics test: a real STOMP session through the proxy, then the
// registry is scraped as /metrics would be.
func TestMetricsAfterARealSession(t *testing.T) {
	brokerURL, _ := drainBroker(t)
	m := metrics.Discard()
	p := newProxy(t, brokerURL, stompOpts(func(*STOMPOptions) {}))
	p.h.metrics = m
	c := stompClient(t, p.url("/ws"))
	c.Send([]byte("SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\x00"))
	c.Send([]byte("SEND\ndestination:/topic/a\n\nhi\x00\n"))
	if msg := mustMsg(t, c, 2*time.Second); !strings.HasPrefix(msg, "MESSAGE\n") {
		t.Fatalf("want MESSAGE, got %q", msg)
	}
	if v := scrape(t, m, "stompgate_sessions_active"); v != 1 {
		t.Fatalf("sessions_active = %v during the session", v)
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	p.waitSessionEnd(t, 2*time.Second)
	for series, want := range map[string]float64{
		`stompgate_handshakes_total{result="ok"}`:                                      1,
		`stompgate_sessions_active`:                                                    0,
		`stompgate_frames_total{command="CONNECT",direction="client_to_upstream"}`:     1,
		`stompgate_frames_total{command="SEND",direction="client_to_upstream"}`:        1,
		`stompgate_frames_total{command="CONNECTED",direction="upstream_to_client"}`:   1,
		`stompgate_frames_total{command="MESSAGE",direction="upstream_to_client"}`:     1,
		`stompgate_messages_total{direction="client_to_upstream"}`:                     3,
		`stompgate_heartbeats_received_total{hop="client"}`:                            1,
		`stompgate_closes_total{code="1000",leg="client"}`:                             1,
		`stompgate_closes_total{code="1000",leg="upstream"}`:                           1,
		`stompgate_session_duration_seconds_count`:                                     1,
		`stompgate_liveness_failures_total{hop="upstream",reason="heartbeat_timeout"}`: 0,
	} {
		if got := scrape(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := scrape(t, m, `stompgate_bytes_total{direction="client_to_upstream"}`); got < 100 {
		t.Errorf("client_to_upstream bytes = %v", got)
	}
}

// Counters are added once per read, not per message: messages and frames
// that arrive in one read, several frames in one message and a change of
// command within the read are all counted, in the metrics and in the
// session's log line.
func TestCountersOfOneRead(t *testing.T) {
	brokerURL, _ := drainBroker(t)
	m := metrics.Discard()
	p := newProxy(t, brokerURL, stompOpts(func(*STOMPOptions) {}))
	p.h.metrics = m
	c := stompClient(t, p.url("/ws"))
	// Four messages in one write, so that one read is likely to take them
	// all: SUBSCRIBE, two SENDs in one message, a SEND, a SEND that the
	// subscription brings back.
	var batch []byte
	for _, msg := range []string{
		"SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\x00",
		"SEND\ndestination:/topic/b\n\nx\x00SEND\ndestination:/topic/b\n\ny\x00",
		"SEND\ndestination:/topic/b\n\nz\x00",
		"SEND\ndestination:/topic/a\n\nlast\x00",
	} {
		batch = append(batch, wstest.Frame(0x1, []byte(msg), true)...)
	}
	if err := c.WriteRaw(batch); err != nil {
		t.Fatal(err)
	}
	if msg := mustMsg(t, c, 2*time.Second); !strings.HasPrefix(msg, "MESSAGE\n") || !strings.HasSuffix(msg, "last\x00") {
		t.Fatalf("want the MESSAGE of the last SEND, got %q", msg)
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	e := p.waitSessionEnd(t, 2*time.Second)
	for series, want := range map[string]float64{
		`stompgate_frames_total{command="CONNECT",direction="client_to_upstream"}`:   1,
		`stompgate_frames_total{command="SUBSCRIBE",direction="client_to_upstream"}`: 1,
		`stompgate_frames_total{command="SEND",direction="client_to_upstream"}`:      4,
		`stompgate_frames_total{command="CONNECTED",direction="upstream_to_client"}`: 1,
		`stompgate_frames_total{command="MESSAGE",direction="upstream_to_client"}`:   1,
		`stompgate_messages_total{direction="client_to_upstream"}`:                   5,
		`stompgate_messages_total{direction="upstream_to_client"}`:                   2,
	} {
		if got := scrape(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	fields := e.ContextMap()
	if fields["client_messages"] != int64(5) || fields["upstream_messages"] != int64(2) {
		t.Errorf("log line: client_messages %v, upstream_messages %v; want 5 and 2", fields["client_messages"], fields["upstream_messages"])
	}
}

// scrape GETs /metrics from the admin handler, as Prometheus would, and
// returns the value of one series (the line's text up to the value).
func scrape(t *testing.T, m *metrics.Metrics, series string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	admin.Handler(admin.Options{Registry: m.Registry}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("series %s not found in:\n%s", series, body)
	return 0
}

// Secrets and bodies never reach the logs, at any level: a session whose
// handshake carries Authorization and a cookie, whose CONNECT carries a
// passcode, whose SEND carries a body, plus failed handshakes.
func TestLogsNeverCarrySecretsOrBodies(t *testing.T) {
	const secret = "s3cr3t-Zq9"
	brokerURL, _ := drainBroker(t)
	var buf stomptest.LockedBuffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel))
	p := newProxy(t, brokerURL, func(o *Options) {
		stompOpts(nil)(o)
		o.Logger = log
		o.AllowOrigin = func(string) bool { return false }
	})
	hdr := http.Header{
		"Authorization": {"Bearer " + secret},
		"Cookie":        {"JSESSIONID=" + secret},
	}
	c := stompDial(t, p.url("/ws?access_token="+secret), stomptest.Header(hdr))
	c.Send([]byte("CONNECT\naccept-version:1.2\nhost:x\nlogin:guest\npasscode:" + secret + "\n\n\x00"))
	mustMsg(t, c, 2*time.Second)
	c.Send([]byte("SEND\ndestination:/topic/a\n\nbody-" + secret + "\x00"))
	// A frame the scanner rejects, with the secret in a header: the
	// error path must not echo the frame either.
	c.Send([]byte("SEND\ndestination:/topic/a\nx-bad:" + secret + "\nnocolon-" + secret + "\n\nbody\x00"))
	c.NextMessage(time.Hour)
	c.Close()
	// A denied origin and a refused upstream, with the same credentials.
	hdr.Set("Origin", "https://evil.example")
	handshakeStatus(t, p.url("/ws"), hdr)
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == 0 })
	logs := buf.String()
	if !strings.Contains(logs, "session ended") {
		t.Fatalf("no session line logged:\n%s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Fatalf("a secret or body reached the logs:\n%s", logs)
	}
}

// A client that stops reading is treated as gone: once a write to it times
// out, the broker gets a DISCONNECT (and so drops the subscriptions) before
// its close.
func TestClientThatStopsReadingIsDisconnected(t *testing.T) {
	_, _, broker := connectedSession(t, func(o *Options) {
		stompOpts(nil)(o)
		o.WriteTimeout = 200 * time.Millisecond
	})
	b := broker.Conn() // writes with a deadline of its own
	msg := append([]byte("MESSAGE\ndestination:/topic/a\nsubscription:0\nmessage-id:1\n\n"), bytes.Repeat([]byte("x"), 64<<10)...)
	msg = append(msg, 0)
	got := make(chan string, 1)
	go func() {
		for {
			_, m, err := b.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			if strings.HasPrefix(string(m), "DISCONNECT\n") {
				got <- string(m)
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.SetWriteDeadline(time.Now().Add(time.Second))
		if err := b.WriteMessage(websocket.TextMessage, msg); err != nil {
			break
		}
		select {
		case d, ok := <-got:
			if !ok {
				t.Fatal("broker connection ended without a DISCONNECT")
			}
			if !strings.Contains(d, "receipt:stompgate-gone-") {
				t.Fatalf("DISCONNECT without stompgate's receipt: %q", d)
			}
			return
		default:
		}
	}
	select {
	case d, ok := <-got:
		if ok && strings.HasPrefix(d, "DISCONNECT") {
			return
		}
	case <-time.After(2 * time.Second):
	}
	t.Fatal("the broker got no DISCONNECT for a client that stopped reading")
}

// A broker message over the limit: the client is told in a STOMP ERROR
// before its close, not only by the close code.
func TestOversizedUpstreamMessageGivesStompError(t *testing.T) {
	_, c, b := connectedSession(t, func(o *Options) {
		stompOpts(nil)(o)
		o.MaxUpstreamMessageBytes = 1024
	})
	b.Send(append([]byte("MESSAGE\ndestination:/a\n\n"), bytes.Repeat([]byte("y"), 2048)...))
	var errFrame string
	for {
		m, err := readMsg(c, 2*time.Second)
		if err != nil {
			if e, _ := c.End(); e.Code != websocket.CloseInternalServerErr {
				t.Fatalf("want close 1011, got %v", err)
			}
			break
		}
		if strings.HasPrefix(m, "ERROR\n") {
			errFrame = m
		}
	}
	if !strings.Contains(errFrame, "message:upstream sent a message over 1024 bytes\n") {
		t.Fatalf("ERROR frame %q", errFrame)
	}
}
