package e2e

// sockjs-client and @stomp/stompjs in headless Chromium, through the real
// stompgate binary's SockJS endpoint, on the transports only a browser has
// (eventsource, the iframe transports, jsonp-polling) and, for comparison,
// xhr-streaming and websocket. The page comes from a server of the test's
// own on 127.0.0.1, so its origin differs from stompgate's, as an
// application's page served apart from its STOMP endpoint does; the SockJS
// iframe page that stompgate serves loads sockjs-client from that server
// (STOMPGATE_SOCKJS_CLIENT_URL) so that nothing comes from the network.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
)

// sockjsBrowserTransports are the sockjs-client transports run in Chromium,
// with the transport each session's log line names. The iframe transports
// are the same receivers, driven from stompgate's iframe page.
var sockjsBrowserTransports = []struct{ name, logged string }{
	{"websocket", "sockjs/websocket"},
	{"xhr-streaming", "sockjs/xhr_streaming"},
	{"eventsource", "sockjs/eventsource"},
	{"iframe-eventsource", "sockjs/eventsource"},
	{"iframe-htmlfile", "sockjs/htmlfile"},
	{"iframe-xhr-polling", "sockjs/xhr"},
	{"jsonp-polling", "sockjs/jsonp"},
}

// sockjsClientHeartBeat is what stompgate puts in the CONNECTED it sends
// (STOMPGATE_CLIENT_HEARTBEAT): neither broker's, nor the page's offer.
const sockjsClientHeartBeat = "3000,3000"

// sockjsPage is a page on 127.0.0.1 that loads sockjs-client and the UMD
// bundle of @stomp/stompjs; sockjs_chromium.mjs drives them.
const sockjsPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>stompgate SockJS e2e</title><link rel="icon" href="data:,">
<script src="/sockjs.min.js"></script>
<script src="/stomp.umd.min.js"></script>
</head><body>sockjs-client and @stomp/stompjs, driven by sockjs_chromium.mjs</body></html>
`

// startSockJSPageServer serves the page and the two scripts from jsDir's
// node_modules.
func startSockJSPageServer(t *testing.T, jsDir string) *httptest.Server {
	t.Helper()
	files := map[string]string{
		"/sockjs.min.js":     filepath.Join(jsDir, "node_modules", "sockjs-client", "dist", "sockjs.min.js"),
		"/stomp.umd.min.js":  filepath.Join(jsDir, "node_modules", "@stomp", "stompjs", "bundles", "stomp.umd.min.js"),
		"/sockjs.min.js.map": filepath.Join(jsDir, "node_modules", "sockjs-client", "dist", "sockjs.min.js.map"),
	}
	for path, file := range files {
		if _, err := os.Stat(file); err != nil {
			if peers.Required() {
				t.Fatalf("%s: %v (npm ci in %s)", path, err, jsDir)
			}
			t.Skipf("%s: %v (npm ci in %s)", path, err, jsDir)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(sockjsPage))
	})
	for path, file := range files {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeFile(w, r, file)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// browserGate is the stompgate binary serving SockJS under /ws.
type browserGate struct {
	addr, admin string
	logs        *stomptest.LockedBuffer
	cmd         *exec.Cmd
	exited      chan error
	stopped     bool
}

// startBrowserGate runs the binary in front of upstream (an origin) with
// SockJS under /ws, the upstream suffix given, and extra settings.
func startBrowserGate(t *testing.T, bin, upstream, suffix, clientURL string, extra ...string) *browserGate {
	t.Helper()
	g := &browserGate{addr: freeAddr(t), admin: freeAddr(t), logs: &stomptest.LockedBuffer{}, exited: make(chan error, 1)}
	g.cmd = exec.Command(bin)
	g.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"STOMPGATE_UPSTREAM_URL=" + upstream,
		"STOMPGATE_LISTEN_ADDR=" + g.addr,
		"STOMPGATE_ADMIN_ADDR=" + g.admin,
		"STOMPGATE_SOCKJS_PATHS=/ws",
		"STOMPGATE_SOCKJS_UPSTREAM_SUFFIX=" + suffix,
		"STOMPGATE_SOCKJS_CLIENT_URL=" + clientURL,
		"STOMPGATE_SOCKJS_DISCONNECT_DELAY=2s",
		"STOMPGATE_CLIENT_HEARTBEAT=" + sockjsClientHeartBeat,
		"STOMPGATE_CLOSE_TIMEOUT=1s",
		"STOMPGATE_LOG_LEVEL=debug",
	}, extra...)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		if !g.stopped {
			g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("stompgate output:\n%s", g.logs.String())
		}
	})
	if !eventually(10*time.Second, func() bool {
		resp, err := http.Get("http://" + g.addr + "/ws/info")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("stompgate did not answer /ws/info on %s within 10s", g.addr)
	}
	return g
}

// sessionLines returns the "session ended" lines logged so far.
func (g *browserGate) sessionLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(g.logs.String()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "session ended" {
			lines = append(lines, m)
		}
	}
	return lines
}

// waitSessionLines waits until n sessions have ended.
func (g *browserGate) waitSessionLines(t *testing.T, n int, within time.Duration) []map[string]any {
	t.Helper()
	var lines []map[string]any
	if !eventually(within, func() bool { lines = g.sessionLines(); return len(lines) >= n }) {
		t.Errorf("%d sessions ended within %v, want %d", len(lines), within, n)
	}
	return lines
}

// stop sends SIGTERM and expects the process to exit 0 within 10 s.
func (g *browserGate) stop(t *testing.T) {
	t.Helper()
	g.stopped = true
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		if err != nil {
			t.Errorf("stompgate exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.exited
		t.Errorf("stompgate did not stop within 10s of SIGTERM")
	}
}

// sockjsSeen is what one page saw of its session (sockjs_chromium.mjs).
type sockjsSeen struct {
	Transport  string `json:"transport"` // what sockjs-client chose
	HeartBeat  string `json:"heartBeat"` // CONNECTED's heart-beat
	Server     string `json:"server"`
	Version    string `json:"version"`
	Received   string `json:"received"`
	StompError string `json:"stompError"`
	Close      *struct {
		Code     int    `json:"code"`
		Reason   string `json:"reason"`
		WasClean bool   `json:"wasClean"`
	} `json:"close"`
	Errors []string `json:"errors"`
}

type sockjsBrowserPage struct {
	Transport          string     `json:"transport"`
	Body               string     `json:"body"`
	RoundTripMs        int        `json:"roundTripMs"`
	Requests           []string   `json:"requests"`
	BadResponses       []string   `json:"badResponses"`
	PageErrors         []string   `json:"pageErrors"`
	Connect            sockjsSeen `json:"connect"`
	End                sockjsSeen `json:"end"`
	ClosedMsAfterDrain *int       `json:"closedMsAfterDrain"`
}

type sockjsBrowserResult struct {
	OK      bool                `json:"ok"`
	Browser string              `json:"browser"`
	Pages   []sockjsBrowserPage `json:"pages"`
	Drain   *struct {
		Status int `json:"status"`
	} `json:"drain"`
	Error *string `json:"error"`
}

// runSockJSChromium runs sockjs_chromium.mjs with opts and returns what it
// printed.
func runSockJSChromium(t *testing.T, node, jsDir string, opts map[string]any) sockjsBrowserResult {
	t.Helper()
	arg, _ := json.Marshal(opts)
	p := startLineProc(t, 100*time.Second, jsDir, node, "sockjs_chromium.mjs", string(arg))
	line, err := p.next(95 * time.Second)
	if err != nil {
		t.Fatalf("sockjs_chromium.mjs: %v", err)
	}
	var r sockjsBrowserResult
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("sockjs_chromium.mjs printed %q: %v", line, err)
	}
	if !r.OK || r.Error != nil {
		msg := "no error given"
		if r.Error != nil {
			msg = *r.Error
		}
		t.Fatalf("sockjs_chromium.mjs failed: %s\n%s", msg, line)
	}
	<-p.done
	return r
}

// describePage is one line of what a page saw, for the test's log.
func describePage(p sockjsBrowserPage) string {
	b, _ := json.Marshal(map[string]any{
		"chosen": p.Connect.Transport, "heart-beat": p.Connect.HeartBeat, "version": p.Connect.Version,
		"received": p.Connect.Received == p.Body, "roundTripMs": p.RoundTripMs, "requests": p.Requests, "badResponses": p.BadResponses,
		"stompError": p.End.StompError, "close": p.End.Close, "closedMsAfterDrain": p.ClosedMsAfterDrain,
		"errors": append(append([]string{}, p.Connect.Errors...), p.PageErrors...),
	})
	return string(b)
}

// sockjsBrowserBroker is a broker the browser reaches through stompgate.
type sockjsBrowserBroker struct {
	upstream, suffix string // stompgate's upstream origin and SockJS suffix
	destination      string
}

// springForSockJS is the Spring-semantics broker with its endpoint where
// Spring serves the raw WebSocket of a .withSockJS() endpoint /ws:
// /ws/websocket.
// Like a Spring application that lists its page's origin in
// setAllowedOrigins, it accepts pageOrigin as well as its own: stompgate
// passes the browser's Origin on.
func springForSockJS(t *testing.T, pageOrigin string) sockjsBrowserBroker {
	b := startSpringWith(t, springbroker.Config{
		Path:      "/ws/websocket",
		HeartBeat: [2]time.Duration{10 * time.Second, 10 * time.Second},
		CheckOrigin: func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || o == pageOrigin || o == "http://"+r.Host
		},
	})
	return sockjsBrowserBroker{upstream: b.origin(), suffix: "/websocket", destination: uniqueDest(t)}
}

func rabbitForSockJS(t *testing.T, _ string) sockjsBrowserBroker {
	origin, path := rabbit(t)
	if path != "/ws" {
		t.Skipf("RabbitMQ Web-STOMP serves %s, not /ws", path)
	}
	return sockjsBrowserBroker{upstream: origin, suffix: "", destination: uniqueDest(t)}
}

// checkConnected checks what every page saw up to its round trip: the
// transport it was restricted to, stompgate's heart-beat in CONNECTED, and
// its own message back.
func checkConnected(t *testing.T, r sockjsBrowserResult) {
	t.Helper()
	if len(r.Pages) != len(sockjsBrowserTransports) {
		t.Fatalf("%d pages reported, want %d", len(r.Pages), len(sockjsBrowserTransports))
	}
	for i, p := range r.Pages {
		want := sockjsBrowserTransports[i].name
		t.Logf("%-18s %s", p.Transport, describePage(p))
		if p.Connect.Transport != want {
			t.Errorf("%s: sockjs-client used %q", want, p.Connect.Transport)
		}
		if p.Connect.HeartBeat != sockjsClientHeartBeat {
			t.Errorf("%s: CONNECTED heart-beat %q, want stompgate's %s", want, p.Connect.HeartBeat, sockjsClientHeartBeat)
		}
		if p.Connect.Received != p.Body {
			t.Errorf("%s: received %q, want its own message %q", want, p.Connect.Received, p.Body)
		}
		if len(p.Connect.Errors) > 0 || len(p.PageErrors) > 0 {
			t.Errorf("%s: errors in the page: %q %q", want, p.Connect.Errors, p.PageErrors)
		}
	}
}

// checkTransports checks that the session lines name each page's transport,
// in the order the sessions ran.
func checkTransports(t *testing.T, lines []map[string]any) {
	t.Helper()
	var got, want []string
	for _, l := range lines {
		got = append(got, l["transport"].(string))
	}
	for _, tr := range sockjsBrowserTransports {
		want = append(want, tr.logged)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("session lines name transports %q, want %q", got, want)
	}
}

func testSockJSBrowserRoundTrip(t *testing.T, broker func(*testing.T, string) sockjsBrowserBroker) {
	node, jsDir := peers.Node(t)
	demoChromium(t, jsDir)
	pages := startSockJSPageServer(t, jsDir)
	b := broker(t, pages.URL)
	bin := buildStompgate(t)
	g := startBrowserGate(t, bin, b.upstream, b.suffix, pages.URL+"/sockjs.min.js")

	var names []string
	for _, tr := range sockjsBrowserTransports {
		names = append(names, tr.name)
	}
	r := runSockJSChromium(t, node, jsDir, map[string]any{
		"page":        pages.URL + "/page.html",
		"sockjs":      "http://" + g.addr + "/ws",
		"transports":  names,
		"destination": b.destination,
	})
	t.Logf("Chromium %s", r.Browser)
	checkConnected(t, r)
	// stomp.js's DISCONNECT, then sockjs-client's own close.
	for _, p := range r.Pages {
		if c := p.End.Close; c == nil || c.Code != 1000 {
			t.Errorf("%s: after stomp.js deactivated the session ended with %+v, want close 1000", p.Transport, c)
		}
	}
	lines := g.waitSessionLines(t, len(sockjsBrowserTransports), 10*time.Second)
	for _, l := range lines {
		t.Logf("session line: transport=%v closed_by=%v end=%v client_close_code=%v", l["transport"], l["closed_by"], l["end"], l["client_close_code"])
	}
	checkTransports(t, lines)
	g.stop(t)
	if logs := g.logs.String(); strings.Contains(logs, "through stompgate (") {
		t.Errorf("a message body is in stompgate's log")
	}
}

// Each browser transport, to the Spring-semantics broker at its raw
// endpoint /ws/websocket: CONNECT, SUBSCRIBE, SEND → MESSAGE.
func TestSockJSBrowserSpring(t *testing.T) { testSockJSBrowserRoundTrip(t, springForSockJS) }

// Each browser transport, to RabbitMQ Web-STOMP (/ws, suffix "").
func TestSockJSBrowserRabbit(t *testing.T) { testSockJSBrowserRoundTrip(t, rabbitForSockJS) }

// POST /drain with a page open on every browser transport: each gets the
// STOMP ERROR and SockJS close 1012 within DRAIN_PERIOD, and /info answers
// 503.
func TestSockJSBrowserDrain(t *testing.T) {
	const drainPeriod = 2 * time.Second
	node, jsDir := peers.Node(t)
	demoChromium(t, jsDir)
	pages := startSockJSPageServer(t, jsDir)
	b := springForSockJS(t, pages.URL)
	bin := buildStompgate(t)
	g := startBrowserGate(t, bin, b.upstream, b.suffix, pages.URL+"/sockjs.min.js",
		"STOMPGATE_SHUTDOWN_DELAY=0s",
		"STOMPGATE_DRAIN_PERIOD="+drainPeriod.String(),
		"STOMPGATE_SHUTDOWN_TIMEOUT=10s",
	)

	var names []string
	for _, tr := range sockjsBrowserTransports {
		names = append(names, tr.name)
	}
	r := runSockJSChromium(t, node, jsDir, map[string]any{
		"page":          pages.URL + "/page.html",
		"sockjs":        "http://" + g.addr + "/ws",
		"transports":    names,
		"destination":   b.destination,
		"drainURL":      adminURL(g.admin, "/drain"),
		"closeWithinMs": (drainPeriod + 8*time.Second).Milliseconds(),
	})
	t.Logf("Chromium %s", r.Browser)
	checkConnected(t, r)
	if r.Drain == nil || r.Drain.Status != http.StatusAccepted {
		t.Errorf("POST /drain: %+v, want 202", r.Drain)
	}
	// The drain closes each session at a random moment in DRAIN_PERIOD
	// (SHUTDOWN_DELAY is 0); a polling client learns of it on its pending
	// poll, at once.
	bound := drainPeriod + 500*time.Millisecond
	for _, p := range r.Pages {
		if p.End.StompError != "server restarting, reconnect" {
			t.Errorf("%s: STOMP ERROR %q, want \"server restarting, reconnect\"", p.Transport, p.End.StompError)
		}
		if c := p.End.Close; c == nil || c.Code != 1012 || c.Reason != "server restarting, reconnect" {
			t.Errorf("%s: SockJS close %+v, want 1012 \"server restarting, reconnect\"", p.Transport, c)
		}
		if p.ClosedMsAfterDrain == nil || time.Duration(*p.ClosedMsAfterDrain)*time.Millisecond > bound {
			t.Errorf("%s: closed %v ms after POST /drain, want within %v", p.Transport, p.ClosedMsAfterDrain, bound)
		}
	}
	if body := httpBody("http://" + g.addr + "/ws/info"); !strings.Contains(body, "draining") {
		t.Errorf("/ws/info while draining: %q, want the 503", body)
	}
	lines := g.waitSessionLines(t, len(sockjsBrowserTransports), 10*time.Second)
	got := map[string]int{}
	for _, l := range lines {
		t.Logf("session line: transport=%v closed_by=%v end=%v client_close_code=%v", l["transport"], l["closed_by"], l["end"], l["client_close_code"])
		got[l["transport"].(string)]++
		if code, _ := l["client_close_code"].(float64); code != 1012 {
			t.Errorf("%v: client_close_code %v, want 1012", l["transport"], l["client_close_code"])
		}
	}
	want := map[string]int{}
	for _, tr := range sockjsBrowserTransports {
		want[tr.logged]++
	}
	if !bytes.Equal(mustJSON(got), mustJSON(want)) {
		t.Errorf("drained sessions by transport %v, want %v", got, want)
	}
	g.stop(t)
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }
