package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is an in-process WebSocket server on 127.0.0.1 whose behaviour
// each test scripts through onConn.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	lastReq *http.Request
	conns   chan *websocket.Conn
}

func newUpstream(t *testing.T, protos []string, onConn func(*websocket.Conn)) *upstream {
	t.Helper()
	u := &upstream{conns: make(chan *websocket.Conn, 16)}
	up := websocket.Upgrader{Subprotocols: protos, CheckOrigin: func(*http.Request) bool { return true }}
	var wg tracker
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.lastReq = r.Clone(context.Background())
		u.mu.Unlock()
		if r.URL.Path == "/missing" {
			w.Header().Set("X-Broker", "yes")
			http.Error(w, "no such endpoint", http.StatusNotFound)
			return
		}
		if !websocket.IsWebSocketUpgrade(r) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "plain "+r.URL.Path)
			return
		}
		c, err := up.Upgrade(w, r, http.Header{"Set-Cookie": {"sticky=1"}})
		if err != nil {
			return
		}
		wg.add(1)
		defer wg.add(-1)
		defer c.Close()
		u.conns <- c
		if onConn != nil {
			onConn(c)
		}
	}))
	t.Cleanup(func() {
		u.srv.CloseClientConnections()
		u.srv.Close()
		wg.wait()
	})
	return u
}

func (u *upstream) wsURL() *url.URL {
	p, _ := url.Parse("ws" + strings.TrimPrefix(u.srv.URL, "http"))
	return p
}

func echo(c *websocket.Conn) {
	for {
		mt, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, b); err != nil {
			return
		}
	}
}

type testProxy struct {
	h    *Handler
	srv  *httptest.Server
	logs *observer.ObservedLogs
}

func newProxy(t *testing.T, target *url.URL, mod func(*Options)) *testProxy {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	opts := Options{Upstream: target, CloseTimeout: 500 * time.Millisecond, DialTimeout: 2 * time.Second, PreserveHost: true, Logger: zap.New(core)}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{h: h, srv: httptest.NewServer(h), logs: logs}
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		h.Wait()
	})
	return p
}

func (p *testProxy) url(path string) string {
	return "ws" + strings.TrimPrefix(p.srv.URL, "http") + path
}

func dial(t *testing.T, url string, h http.Header, protos ...string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 2 * time.Second}
	c, resp, err := d.Dial(url, h)
	if err != nil {
		t.Fatalf("dial %s: %v (resp %v)", url, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSessionEnd waits for the single session's end log line.
func (p *testProxy) waitSessionEnd(t *testing.T, within time.Duration) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if es := p.logs.FilterMessage("session ended").All(); len(es) > 0 {
			return es[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no session end within %v", within)
	return observer.LoggedEntry{}
}

func TestRoundTripTextBinaryLarge(t *testing.T) {
	up := newUpstream(t, []string{"v12.stomp"}, echo)
	p := newProxy(t, up.wsURL(), nil)
	c := dial(t, p.url("/ws"), nil, "v12.stomp", "v11.stomp")
	if got := c.Subprotocol(); got != "v12.stomp" {
		t.Errorf("subprotocol = %q, want the upstream's choice v12.stomp", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 512<<10/16)
	for _, m := range []struct {
		mt   int
		data []byte
	}{{websocket.TextMessage, []byte("hello")}, {websocket.BinaryMessage, []byte{0, 1, 2, 0xff}}, {websocket.TextMessage, big}, {websocket.TextMessage, nil}} {
		if err := c.WriteMessage(m.mt, m.data); err != nil {
			t.Fatal(err)
		}
		mt, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if mt != m.mt || !bytes.Equal(got, m.data) {
			t.Fatalf("got type %d len %d, want type %d len %d", mt, len(got), m.mt, len(m.data))
		}
	}
}

func TestForwardsHeadersAndJoinsPath(t *testing.T) {
	up := newUpstream(t, nil, echo)
	base := up.wsURL()
	base.Path = "/base"
	p := newProxy(t, base, nil)
	h := http.Header{
		"Cookie":          {"JSESSIONID=abc"},
		"Authorization":   {"Bearer t"},
		"Origin":          {"http://app.example"},
		"User-Agent":      {"test-agent"},
		"Accept-Language": {"fr"},
		"X-Custom":        {"kept"},
		"X-Forwarded-For": {"6.6.6.6"},
	}
	c := dial(t, p.url("/ws?token=1"), h)
	c.Close()
	up.mu.Lock()
	r := up.lastReq
	up.mu.Unlock()
	if r.URL.Path != "/base/ws" || r.URL.RawQuery != "token=1" {
		t.Errorf("upstream got %s?%s, want /base/ws?token=1", r.URL.Path, r.URL.RawQuery)
	}
	for k, want := range map[string]string{"Cookie": "JSESSIONID=abc", "Authorization": "Bearer t", "Origin": "http://app.example", "User-Agent": "test-agent", "Accept-Language": "fr", "X-Custom": "kept", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("upstream header %s = %q, want %q", k, got, want)
		}
	}
	if want := strings.TrimPrefix(p.srv.URL, "http://"); r.Host != want {
		t.Errorf("Host = %q, want the client's %q (PreserveHost)", r.Host, want)
	}
}

// Cookies the broker sets in its 101 (sticky sessions) reach the client.
func TestUpgradeSetCookieReachesClient(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), nil)
	c, resp, err := websocket.DefaultDialer.Dial(p.url("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := resp.Header.Get("Set-Cookie"); got != "sticky=1" {
		t.Fatalf("Set-Cookie = %q, want the broker's sticky=1", got)
	}
}

func TestEndToEndDropsHopByHop(t *testing.T) {
	h := endToEnd(http.Header{
		"Connection":             {"Upgrade, X-Drop"},
		"X-Drop":                 {"hop"},
		"Upgrade":                {"websocket"},
		"Sec-Websocket-Key":      {"k"},
		"Sec-Websocket-Protocol": {"v12.stomp"},
		"Keep-Alive":             {"5"},
		"Cookie":                 {"a=b"},
	})
	if len(h) != 1 || h.Get("Cookie") != "a=b" {
		t.Fatalf("endToEnd kept %v", h)
	}
}

func TestTrustedProxyExtendsForwardedFor(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), func(o *Options) {
		o.TrustedProxy = func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }
	})
	c := dial(t, p.url("/ws"), http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Proto": {"https"}})
	c.Close()
	up.mu.Lock()
	r := up.lastReq
	up.mu.Unlock()
	if got := r.Header.Get("X-Forwarded-For"); got != "6.6.6.6, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the trusted chain extended", got)
	}
	if got := r.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's https", got)
	}
}

func TestUpstreamStatusReachesClient(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), nil)
	_, resp, err := websocket.DefaultDialer.Dial(p.url("/missing"), nil)
	if err == nil {
		t.Fatal("dial succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Broker") != "yes" {
		t.Fatalf("want the broker's 404 with its headers, got %v", resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "no such endpoint") {
		t.Errorf("body = %q, want the broker's", body)
	}
}

func TestUpstreamRefusedIs502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now: connection refused
	target, _ := url.Parse("ws://" + addr + "/ws")
	p := newProxy(t, target, nil)
	_, resp, err := websocket.DefaultDialer.Dial(p.url("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("want 502, got %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "upstream unreachable") {
		t.Errorf("body = %q", body)
	}
	if p.logs.FilterMessage("upstream dial failed").Len() != 1 {
		t.Error("no log line for the failed dial")
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	// A listener that accepts but never answers the upgrade.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	target, _ := url.Parse("ws://" + ln.Addr().String() + "/ws")
	p := newProxy(t, target, func(o *Options) { o.DialTimeout = 200 * time.Millisecond })
	start := time.Now()
	_, resp, err := websocket.DefaultDialer.Dial(p.url("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("want 504, got %v %v", resp, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("504 took %v, dial timeout is 200ms", took)
	}
}

func TestPlainHTTPPassThrough(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), nil)
	resp, err := http.Get(p.srv.URL + "/info?t=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "plain /info" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()
}

// closeRecordingUpstream is a broker whose connections each read one
// message and report the close it ended with (nil: it was not a close).
func closeRecordingUpstream(t *testing.T) (*upstream, <-chan *websocket.CloseError) {
	got := make(chan *websocket.CloseError, 1)
	up := newUpstream(t, nil, func(c *websocket.Conn) {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		errors.As(err, &ce)
		got <- ce
	})
	return up, got
}

func TestClientCloseIsForwarded(t *testing.T) {
	up, got := closeRecordingUpstream(t)
	p := newProxy(t, up.wsURL(), nil)
	c := dial(t, p.url("/ws"), nil)
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye now"), time.Now().Add(time.Second))
	select {
	case ce := <-got:
		if ce == nil || ce.Code != 4001 || ce.Text != "bye now" {
			t.Fatalf("upstream got %v, want 4001 bye now", ce)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("upstream saw no close")
	}
	e := p.waitSessionEnd(t, 2*time.Second)
	if e.ContextMap()["closed_by"] != "client" || e.ContextMap()["client_close_code"] != int64(4001) {
		t.Errorf("log line: %v", e.ContextMap())
	}
}

func TestUpstreamCloseIsForwardedAndNoStatusMapped(t *testing.T) {
	for _, tc := range []struct {
		payload  []byte
		wantCode int
		wantText string
	}{
		{websocket.FormatCloseMessage(1008, "policy says no"), 1008, "policy says no"},
		{nil, 1000, ""}, // 1005 (no status) → 1000
		// 1015 may not travel in a close frame: the upstream broke
		// RFC 6455, and the client must not get 1015 from stompgate.
		{websocket.FormatCloseMessage(1015, ""), 1011, "upstream sent invalid WebSocket frames (invalid close code 1015)"},
	} {
		up := newUpstream(t, nil, func(c *websocket.Conn) {
			c.WriteControl(websocket.CloseMessage, tc.payload, time.Now().Add(time.Second))
			c.ReadMessage()
		})
		p := newProxy(t, up.wsURL(), nil)
		c := dial(t, p.url("/ws"), nil)
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != tc.wantCode || ce.Text != tc.wantText {
			t.Errorf("client got %v, want %d %q", err, tc.wantCode, tc.wantText)
		}
	}
}

func TestUpstreamLostIs1011(t *testing.T) {
	up := newUpstream(t, nil, func(c *websocket.Conn) {
		c.NetConn().Close() // TCP gone without a close frame
	})
	p := newProxy(t, up.wsURL(), nil)
	c := dial(t, p.url("/ws"), nil)
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1011 || !strings.Contains(ce.Text, "upstream connection lost") {
		t.Fatalf("client got %v, want 1011 naming the upstream", err)
	}
}

// Killing the client's TCP connection must release the upstream connection
// within CloseTimeout + 1 s, and leave no goroutine or descriptor behind.
func TestClientLostReleasesUpstream(t *testing.T) {
	up, gotClose := closeRecordingUpstream(t)
	p := newProxy(t, up.wsURL(), nil)
	fds := openFDs(t)
	c := dial(t, p.url("/ws"), nil)
	start := time.Now()
	c.NetConn().Close()
	select {
	case ce := <-gotClose:
		if ce == nil || ce.Code != 1011 || ce.Text != "client connection lost" {
			t.Errorf("upstream got %v, want 1011 client connection lost", ce)
		}
	case <-time.After(p.h.opts.CloseTimeout + time.Second):
		t.Fatal("upstream not released in time")
	}
	p.waitSessionEnd(t, p.h.opts.CloseTimeout+time.Second)
	if took := time.Since(start); took > p.h.opts.CloseTimeout+time.Second {
		t.Errorf("session took %v to end", took)
	}
	p.h.Wait()
	up.srv.CloseClientConnections()
	waitFor(t, time.Second, func() bool { return openFDs(t) <= fds })
}

// An upstream that never answers our close frame is aborted at CloseTimeout.
func TestCloseHandshakeIsBounded(t *testing.T) {
	up := newUpstream(t, nil, func(c *websocket.Conn) {
		c.SetCloseHandler(func(int, string) error { return nil }) // never echo
		time.Sleep(3 * time.Second)
	})
	p := newProxy(t, up.wsURL(), func(o *Options) { o.CloseTimeout = 300 * time.Millisecond })
	c := dial(t, p.url("/ws"), nil)
	start := time.Now()
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	p.waitSessionEnd(t, 2*time.Second)
	if took := time.Since(start); took > 300*time.Millisecond+500*time.Millisecond {
		t.Errorf("session ended after %v, close timeout is 300ms", took)
	}
}

func TestOversizedMessageGets1009WithReason(t *testing.T) {
	upClosed := make(chan *websocket.CloseError, 1)
	up := newUpstream(t, nil, func(c *websocket.Conn) {
		for {
			_, _, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				errors.As(err, &ce)
				upClosed <- ce
				return
			}
		}
	})
	p := newProxy(t, up.wsURL(), func(o *Options) { o.MaxMessageBytes = 1000 })
	c := dial(t, p.url("/ws"), nil)
	if err := c.WriteMessage(websocket.TextMessage, make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(websocket.TextMessage, make([]byte, 5000))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1009 || ce.Text == "" {
		t.Fatalf("client got %v, want 1009 with a reason", err)
	}
	select {
	case ce := <-upClosed:
		if ce == nil || ce.Code != 1001 {
			t.Errorf("upstream got %v, want 1001", ce)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("upstream not closed")
	}
}

func TestPingsAreAnsweredByTheProxy(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), nil)
	c := dial(t, p.url("/ws"), nil)
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	go c.ReadMessage()
	c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second))
	select {
	case s := <-pong:
		if s != "p1" {
			t.Errorf("pong payload %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no pong")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tracker counts running handlers; unlike sync.WaitGroup it may be
// incremented from zero while someone waits.
type tracker struct {
	mu   sync.Mutex
	n    int
	cond *sync.Cond
}

func (t *tracker) add(d int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cond == nil {
		t.cond = sync.NewCond(&t.mu)
	}
	t.n += d
	t.cond.Broadcast()
}

func (t *tracker) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cond == nil {
		t.cond = sync.NewCond(&t.mu)
	}
	for t.n > 0 {
		t.cond.Wait()
	}
}
