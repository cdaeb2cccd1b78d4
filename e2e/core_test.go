// Package e2e runs stompgate against real peers on 127.0.0.1: RabbitMQ
// Web-STOMP, nginx, Debian's python3 websockets and @stomp/stompjs. Each test
// skips with a reason when its peer is absent, unless STOMPGATE_E2E=require
// (set by `make test`), so CI cannot pass by skipping.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/proxy"
)

// gate is stompgate running in-process on 127.0.0.1 in front of upstream.
type gate struct {
	h    *proxy.Handler
	srv  *httptest.Server
	logs *observer.ObservedLogs
}

func startGate(t testing.TB, upstream string, mod func(*proxy.Options)) *gate {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	opts := proxy.Options{Upstream: u, CloseTimeout: time.Second, PreserveHost: true, Logger: zap.New(core)}
	if mod != nil {
		mod(&opts)
	}
	h, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{h: h, srv: httptest.NewServer(h), logs: logs}
	t.Cleanup(func() {
		g.srv.CloseClientConnections()
		g.srv.Close()
		h.Wait()
	})
	return g
}

// url returns the ws:// URL of path on stompgate.
func (g *gate) url(path string) string {
	return "ws" + strings.TrimPrefix(g.srv.URL, "http") + path
}

// rabbit returns RabbitMQ Web-STOMP's origin (the upstream URL for
// stompgate) and its endpoint path.
func rabbit(t testing.TB) (origin, path string) {
	u, err := url.Parse(peers.RabbitMQWebSTOMP(t))
	if err != nil {
		t.Fatal(err)
	}
	path = u.Path
	u.Path = ""
	return u.String(), path
}

func TestRabbitRoundTripThroughStompgate(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	if p := c.Conn().Subprotocol(); p != "v12.stomp" {
		t.Errorf("subprotocol %q, want v12.stomp chosen by RabbitMQ", p)
	}
	connected := c.Connect(guest()...)
	if connected.Headers["version"] != "1.2" {
		t.Errorf("CONNECTED %v", connected)
	}
	dest := "/queue/stompgate-e2e-" + t.Name()
	c.Subscribe("s1", dest, "receipt", "r1")
	c.Expect(5*time.Second, "RECEIPT")

	// Text frames, a binary WebSocket message, and a 512 KiB body.
	big := bytes.Repeat([]byte("stompgate!"), 512<<10/10)
	bodies := [][]byte{[]byte("hello"), []byte("via binary"), big}
	for i, body := range bodies {
		raw := stomptest.Encode("SEND", body, "destination", dest)
		mt := websocket.TextMessage
		if i == 1 {
			mt = websocket.BinaryMessage
		}
		if err := c.WriteMessage(mt, raw); err != nil {
			t.Fatal(err)
		}
		m := c.Expect(10*time.Second, "MESSAGE")
		if !bytes.Equal(m.Body, body) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(m.Body), len(body))
		}
	}
	// RabbitMQ 3.10 answers DISCONNECT with close 1000 "STOMP died" and no
	// RECEIPT (seen directly, without stompgate); newer versions send the
	// RECEIPT first. Either must reach the client intact.
	c.SendFrame("DISCONNECT", nil, "receipt", "bye")
	o := observe(c, 2*time.Second)
	if o.CloseCode != websocket.CloseNormalClosure && (len(o.Frames) == 0 || !strings.HasPrefix(o.Frames[0], "RECEIPT")) {
		t.Fatalf("after DISCONNECT: %+v, want RECEIPT or close 1000", o)
	}
}

// outcome is what a client observes after a frame: the frames received and
// how (and whether) the connection closed within a window.
type outcome struct {
	Frames    []string
	CloseCode int // 0 = still open at the end of the window, -1 = TCP closed without a close frame
}

func observe(c *stomptest.Client, window time.Duration) outcome {
	var o outcome
	q := c.Watch(window)
	for _, f := range q.Frames {
		o.Frames = append(o.Frames, f.Command+" message:"+f.Headers["message"])
	}
	var ce *websocket.CloseError
	switch {
	case !q.Closed:
	case errors.As(q.End.Err, &ce):
		o.CloseCode = ce.Code
	default:
		o.CloseCode = -1
	}
	return o
}

// A wrong passcode makes RabbitMQ send ERROR; the client must see the same
// ERROR frame and the same close behaviour as without stompgate.
func TestRabbitBadPasscodeSameAsDirect(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	run := func(url string) outcome {
		c := stomptest.Dial(t, url, stomptest.Subprotocols("v12.stomp"))
		c.SendFrame("CONNECT", nil, "accept-version", "1.2", "host", "/", "login", "guest", "passcode", "wrong")
		return observe(c, 1500*time.Millisecond)
	}
	direct := run(origin + path)
	proxied := run(g.url(path))
	t.Logf("direct: %+v; through stompgate: %+v", direct, proxied)
	if len(direct.Frames) == 0 || !strings.HasPrefix(direct.Frames[0], "ERROR") {
		t.Fatalf("RabbitMQ did not answer a bad passcode with ERROR: %+v", direct)
	}
	if !equalOutcome(direct, proxied) {
		t.Fatalf("through stompgate %+v, direct %+v", proxied, direct)
	}
}

func equalOutcome(a, b outcome) bool {
	if a.CloseCode != b.CloseCode || len(a.Frames) != len(b.Frames) {
		return false
	}
	for i := range a.Frames {
		if a.Frames[i] != b.Frames[i] {
			return false
		}
	}
	return true
}

func TestRabbitUnknownPathIs404(t *testing.T) {
	origin, _ := rabbit(t)
	g := startGate(t, origin, nil)
	_, resp, err := stomptest.TryDial(t, g.url("/no-such-endpoint"), stomptest.Subprotocols("v12.stomp"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("want RabbitMQ's 404, got %v %v", resp, err)
	}
}

func TestRefusedUpstreamIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := startGate(t, "ws://"+addr, nil)
	_, resp, err := stomptest.TryDial(t, g.url("/ws"), stomptest.Subprotocols("v12.stomp"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("want 502 before the upgrade, got %v %v", resp, err)
	}
}

// A plain GET reaches RabbitMQ's listener and its answer comes back as is.
func TestRabbitPlainHTTPPassedThrough(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	get := func(base string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ds, db := get(strings.Replace(origin, "ws://", "http://", 1))
	ps, pb := get(g.srv.URL)
	if ds != ps || db != pb {
		t.Fatalf("direct %d %q, through stompgate %d %q", ds, db, ps, pb)
	}
	http.DefaultClient.CloseIdleConnections()
}

// Killing the client's TCP connection releases stompgate's upstream
// connection within CLOSE_TIMEOUT + 1 s.
func TestRabbitClientKilledReleasesUpstream(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	port := mustPort(t, origin)
	before := established(t, port)
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	if n := established(t, port); n != before+1 {
		t.Fatalf("%d connections to RabbitMQ, want %d", n, before+1)
	}
	start := time.Now()
	c.Conn().NetConn().Close()
	limit := time.Second + time.Second // CloseTimeout + 1 s
	for established(t, port) > before {
		if time.Since(start) > limit {
			t.Fatalf("upstream connection still open after %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("upstream released %v after the client's TCP was killed", time.Since(start).Round(time.Millisecond))
}

// established counts ESTABLISHED TCP connections on 127.0.0.1 to port, from
// /proc/net/tcp (state 01).
func established(t testing.TB, port string) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp")
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[2], ":"+port) && fs[3] == "01" {
			n++
		}
	}
	return n
}

// mustPort returns origin's port as /proc/net/tcp writes it (hex).
func mustPort(t testing.TB, origin string) string {
	u, _ := url.Parse(origin)
	n, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("no port in %s", origin)
	}
	return fmt.Sprintf("%04X", n)
}

// Debian's python3 websockets, a client nobody here wrote, through stompgate
// to RabbitMQ.
func TestPythonClientThroughStompgate(t *testing.T) {
	py := peers.Python3Websockets(t)
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	out, err := exec.Command(py, filepath.Join("python", "stomp_roundtrip.py"), g.url(path)).CombinedOutput()
	if err != nil {
		t.Fatalf("python client failed: %v\n%s", err, out)
	}
	var res struct {
		Subprotocol  string `json:"subprotocol"`
		Connected    string `json:"connected"`
		Body         string `json:"body"`
		Disconnected bool   `json:"disconnected"`
	}
	if err := json.Unmarshal(lastLine(out), &res); err != nil {
		t.Fatalf("bad output: %v\n%s", err, out)
	}
	if res.Subprotocol != "v12.stomp" || res.Connected != "1.2" || res.Body != "hello from python\x00with a NUL" || !res.Disconnected {
		t.Fatalf("python saw %+v", res)
	}
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}
