package e2e

// SockJS end to end (issue 19): sockjs-client 1.6.1 with @stomp/stompjs 7.5
// in Node (e2e/js/sockjs_stompjs.mjs), restricted to each transport it has
// there, through a real stompgate process serving SockJS at /ws
// (STOMPGATE_SOCKJS_PATHS), to RabbitMQ Web-STOMP (whose raw endpoint is
// /ws itself: suffix "") and to the Spring-semantics broker (its raw
// endpoint at /ws/websocket: the default suffix).
//
//	STOMPGATE_E2E=require go test -race -count=1 -run 'SockJS' ./e2e/
//
// The helpers in the first part (a stompgate process with SockJS on, the
// Spring-semantics broker at another path) are shared with the SockJS
// failure scenarios.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
)

// sockjsPrefix is where stompgate serves SockJS; the upstream's raw
// WebSocket endpoint is the prefix plus the default suffix, as Spring
// serves it under a .withSockJS() endpoint.
const (
	sockjsPrefix   = "/ws"
	sockjsUpstream = sockjsPrefix + "/websocket"
)

// ---- a stompgate process with SockJS on -----------------------------------

// sockjsGate is a real stompgate process serving SockJS at sockjsPrefix.
type sockjsGate struct {
	addr      string                  // the proxy listener, 127.0.0.1:PORT
	adminAddr string                  // the admin API, 127.0.0.1:PORT
	log       *stomptest.LockedBuffer // its JSON log (stderr)
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	exitErr   error         // cmd.Wait's error, set before exited is closed
}

// startSockJSGate builds and runs cmd/stompgate with SockJS at sockjsPrefix
// in front of upstream (an origin, ws://host:port), a 1 s close timeout,
// the iframe page's script served locally, and env on top (a later
// variable wins).
func startSockJSGate(t *testing.T, upstream string, env ...string) *sockjsGate {
	t.Helper()
	bin := buildStompgate(t)
	// The iframe page, which no Node client loads, must still not point at
	// a CDN.
	dist := filepath.Join(peers.RepoRoot(t), "e2e", "js", "node_modules", "sockjs-client", "dist")
	files := httptest.NewServer(http.FileServer(http.Dir(dist)))
	t.Cleanup(files.Close)

	addr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"STOMPGATE_UPSTREAM_URL=" + upstream,
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_ADMIN_ADDR=" + adminAddr,
		"STOMPGATE_SOCKJS_PATHS=" + sockjsPrefix,
		"STOMPGATE_SOCKJS_CLIENT_URL=" + files.URL + "/sockjs.min.js",
		"STOMPGATE_CLOSE_TIMEOUT=1s",
		"STOMPGATE_SHUTDOWN_DELAY=0s",
		"STOMPGATE_DRAIN_PERIOD=200ms",
		"STOMPGATE_SHUTDOWN_TIMEOUT=3s",
	}, env...)
	g := &sockjsGate{addr: addr, adminAddr: adminAddr, log: &stomptest.LockedBuffer{}, cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = g.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.exitErr = cmd.Wait(); close(g.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("stompgate log:\n%s", g.log.String())
		}
	})
	if !eventually(10*time.Second, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/livez")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("stompgate did not serve its admin API on %s:\n%s", adminAddr, g.log.String())
	}
	return g
}

// sockjsURL is the SockJS endpoint a sockjs-client is given.
func (g *sockjsGate) sockjsURL() string { return "http://" + g.addr + sockjsPrefix }

// sessionLines returns the fields of each "session ended" log line.
func (g *sockjsGate) sessionLines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(g.log.String(), "\n") {
		var f map[string]any
		if json.Unmarshal([]byte(l), &f) == nil && f["msg"] == "session ended" {
			out = append(out, f)
		}
	}
	return out
}

// sessionLine waits up to within for the "session ended" line of the
// session on transport (e.g. "sockjs/xhr").
func (g *sockjsGate) sessionLine(within time.Duration, transport string) (map[string]any, bool) {
	var line map[string]any
	ok := eventually(within, func() bool {
		for _, f := range g.sessionLines() {
			if f["transport"] == transport {
				line = f
				return true
			}
		}
		return false
	})
	return line, ok
}

// httpStatus is the HTTP status of a bodiless request (0 when it failed).
func httpStatus(method, url string) int {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ---- the Spring-semantics broker at another path ---------------------------

// startSpringAt is startSpring with the WebSocket endpoint at path.
func startSpringAt(t *testing.T, path string, sx, sy time.Duration) *spring {
	t.Helper()
	return startSpringWith(t, springbroker.Config{HeartBeat: [2]time.Duration{sx, sy}, Path: path})
}

// ---- sockjs_stompjs.mjs -----------------------------------------------------

// sockjsTransports are the sockjs-client transports it has in Node, with
// the name stompgate's session line gives each.
var sockjsTransports = []struct{ client, logged string }{
	{"websocket", "sockjs/websocket"},
	{"xhr-streaming", "sockjs/xhr_streaming"},
	{"xhr-polling", "sockjs/xhr"},
	{"eventsource", "sockjs/eventsource"},
}

// sockjsStompjsResult is the last line sockjs_stompjs.mjs prints. Times
// named ...At are epoch milliseconds.
type sockjsStompjsResult struct {
	Event                 string   `json:"event"`
	Transport             string   `json:"transport"`
	SockJSTransport       *string  `json:"sockjsTransport"`
	StartedAt             int64    `json:"startedAt"`
	Connected             bool     `json:"connected"`
	ConnectedAt           *int64   `json:"connectedAt"`
	ReadyAt               *int64   `json:"readyAt"`
	Version               *string  `json:"version"`
	HeartBeat             *string  `json:"heartBeat"`
	Received              []string `json:"received"`
	HeartbeatsIn          int      `json:"heartbeatsIn"`
	HeartbeatsOut         int      `json:"heartbeatsOut"`
	ServerActivityTimeout bool     `json:"serverActivityTimeout"`
	HeldMs                *int64   `json:"heldMs"`
	StompError            *string  `json:"stompError"`
	StompErrorAt          *int64   `json:"stompErrorAt"`
	CloseCode             *int     `json:"closeCode"`
	CloseReason           *string  `json:"closeReason"`
	ClosedAt              *int64   `json:"closedAt"`
	Error                 *string  `json:"error"`
}

// orNone and orMinus1 read a field the script may have left null.
func orNone(p *string) string {
	if p == nil {
		return "<none>"
	}
	return *p
}

func orMinus1[T int | int64](p *T) T {
	if p == nil {
		return -1
	}
	return *p
}

// sockjsStompjs is one run of sockjs_stompjs.mjs.
type sockjsStompjs struct {
	t *testing.T
	p *lineProc
}

// startSockJSStompjs runs sockjs_stompjs.mjs against url with opts (see the
// script), ending it after timeout at the latest.
func startSockJSStompjs(t *testing.T, url string, timeout time.Duration, opts map[string]any) *sockjsStompjs {
	t.Helper()
	node, jsDir := peers.Node(t)
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "sockjs-client", "package.json")); err != nil {
		msg := fmt.Sprintf("node package sockjs-client is not installed in %s (npm ci there, or scripts/test-deps.sh)", jsDir)
		if peers.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts["timeoutMs"] = timeout.Milliseconds()
	arg, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &sockjsStompjs{t: t, p: startLineProc(t, timeout+5*time.Second, jsDir, node, "sockjs_stompjs.mjs", url, string(arg))}
}

// next returns the script's next line, which must be event.
func (c *sockjsStompjs) next(within time.Duration, event string) sockjsStompjsResult {
	c.t.Helper()
	line, err := c.p.next(within)
	if err != nil {
		c.t.Fatalf("sockjs_stompjs.mjs: %v", err)
	}
	var r sockjsStompjsResult
	if err := json.Unmarshal(line, &r); err != nil {
		c.t.Fatalf("sockjs_stompjs.mjs printed %q: %v", line, err)
	}
	if r.Event != event {
		c.t.Fatalf("sockjs_stompjs.mjs printed %s, want event %q", line, event)
	}
	c.t.Logf("sockjs_stompjs.mjs: %s", line)
	return r
}

// sockjsBroker is a broker behind a stompgate with SockJS on.
type sockjsBroker struct {
	name     string
	upstream string   // the origin stompgate is given
	env      []string // what this broker needs on top (the suffix)
	spring   *spring  // the Spring-semantics broker, nil for RabbitMQ
}

// sockjsBrokers starts (or finds) each broker. The Spring-semantics one
// has heart-beat 1000,1000, what RabbitMQ answers to the upstream
// contract of sockjsHeartBeats, so that either broker's CONNECTED says
// 1000,1000.
func sockjsBrokers(t *testing.T) []sockjsBroker {
	origin, path := rabbit(t)
	if path != sockjsPrefix {
		t.Fatalf("RabbitMQ Web-STOMP at %s, want %s", path, sockjsPrefix)
	}
	b := startSpringAt(t, sockjsUpstream, time.Second, time.Second)
	return []sockjsBroker{
		{name: "rabbitmq", upstream: origin, env: []string{"STOMPGATE_SOCKJS_UPSTREAM_SUFFIX="}},
		{name: "spring", upstream: b.origin(), spring: b},
	}
}

// The heart-beats of both hops: the client's is stompgate's 500,500, the
// broker's 1000,1000 (what either broker answers), so the CONNECTED a
// client sees shows whose it is.
var sockjsHeartBeats = []string{
	"STOMPGATE_CLIENT_HEARTBEAT=500,500",
	"STOMPGATE_UPSTREAM_HEARTBEAT=1000,1000",
}

// Each transport × broker: CONNECT, SUBSCRIBE, SEND → MESSAGE, then three
// client heart-beat periods of silence and a second message, then
// DISCONNECT. The CONNECTED heart-beat is stompgate's, heart-beats flow on
// the SockJS transport, and the session line says stomp=true and the
// transport.
func TestSockJSStompJSRoundTrip(t *testing.T) {
	const hold = 1500 * time.Millisecond
	for _, broker := range sockjsBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			t.Parallel()
			// A polling client's close reaches no server: its session ends
			// the disconnect delay after its last poll. Kept below the
			// upstream heart-beat tolerance (3 s), or the Spring-semantics
			// broker's silence after DISCONNECT ends it first, as an
			// upstream heart-beat timeout.
			g := startSockJSGate(t, broker.upstream, slices.Concat(broker.env, sockjsHeartBeats, []string{"STOMPGATE_SOCKJS_DISCONNECT_DELAY=1s"})...)
			for _, tr := range sockjsTransports {
				t.Run(tr.client, func(t *testing.T) {
					t.Parallel()
					c := startSockJSStompjs(t, g.sockjsURL(), 15*time.Second, map[string]any{
						"transport": tr.client, "heartbeat": 500, "holdMs": hold.Milliseconds(),
						"destination": uniqueDest(t),
					})
					c.next(12*time.Second, "ready")
					r := c.next(5*time.Second, "result")
					if r.Error != nil || !r.Connected || r.StompError != nil {
						t.Fatalf("session failed: error %s, connected %v, STOMP ERROR %s", orNone(r.Error), r.Connected, orNone(r.StompError))
					}
					if got := orNone(r.SockJSTransport); got != tr.client {
						t.Errorf("sockjs-client opened %s, want %s", got, tr.client)
					}
					if got := orNone(r.HeartBeat); got != "500,500" {
						t.Errorf("CONNECTED heart-beat %s, want stompgate's 500,500 (the broker's is 1000,1000)", got)
					}
					if strings.Join(r.Received, ",") != "first,second" {
						t.Errorf("received %q, want first and second", r.Received)
					}
					// Node's timers may fire a millisecond early: allow 5%.
					if orMinus1(r.HeldMs) < hold.Milliseconds()*95/100 || r.HeartbeatsIn == 0 || r.ServerActivityTimeout {
						t.Errorf("held %d ms with %d heart-beats in, server activity timeout %v; want %v of silence with heart-beats and no timeout",
							orMinus1(r.HeldMs), r.HeartbeatsIn, r.ServerActivityTimeout, hold)
					}
					if orMinus1(r.CloseCode) != 1000 {
						t.Errorf("closed with %d (%s) after DISCONNECT, want 1000", orMinus1(r.CloseCode), orNone(r.CloseReason))
					}
					line, ok := g.sessionLine(3*time.Second, tr.logged)
					if !ok {
						t.Fatalf("no session line with transport %s", tr.logged)
					}
					if line["stomp"] != true || line["client_heart_beat"] != "500,500" || line["closed_by"] != "client" ||
						!strings.HasPrefix(fmt.Sprint(line["path"]), sockjsPrefix+"/") {
						t.Errorf("session line: stomp %v, client_heart_beat %v, closed_by %v, path %v; want true, 500,500, client, %s/…",
							line["stomp"], line["client_heart_beat"], line["closed_by"], line["path"], sockjsPrefix)
					}
					t.Logf("%s over %s: connected in %d ms, ready (2 round trips, %v held) at %d ms, closed at %d ms; heart-beats in %d, out %d; CONNECTED heart-beat %s, the broker's %v",
						broker.name, tr.client, orMinus1(r.ConnectedAt)-r.StartedAt, hold, orMinus1(r.ReadyAt)-r.StartedAt, orMinus1(r.ClosedAt)-r.StartedAt,
						r.HeartbeatsIn, r.HeartbeatsOut, orNone(r.HeartBeat), line["upstream_heart_beat"])
				})
			}
		})
	}
}

// A drain with a session open on each transport: /info answers 503 at
// once, and each client gets STOMP ERROR "server restarting, reconnect"
// then the SockJS close 1012 within SHUTDOWN_DELAY + DRAIN_PERIOD. The
// drain starts by POST /drain in front of RabbitMQ, by SIGTERM in front of
// the Spring-semantics broker (which also sees each session's DISCONNECT).
//
// Control: with SockJS passed through (STOMPGATE_SOCKJS_PATHS empty), a
// drain is a plain WebSocket close 1012 without the SockJS c[…] frame,
// which sockjs-client reports as 1002; the HTTP transports get no close
// frame at all, and /info stays 200. No broker here serves SockJS itself,
// so there is no live control.
func TestSockJSStompJSDrain(t *testing.T) {
	const (
		delay     = 200 * time.Millisecond
		period    = time.Second
		tolerance = 500 * time.Millisecond
	)
	for _, broker := range sockjsBrokers(t) {
		t.Run(broker.name, func(t *testing.T) {
			t.Parallel()
			g := startSockJSGate(t, broker.upstream, slices.Concat(broker.env, sockjsHeartBeats, []string{
				"STOMPGATE_SHUTDOWN_DELAY=" + delay.String(),
				"STOMPGATE_DRAIN_PERIOD=" + period.String(),
				"STOMPGATE_SHUTDOWN_TIMEOUT=5s",
			})...)
			clients := make([]*sockjsStompjs, len(sockjsTransports))
			for i, tr := range sockjsTransports {
				clients[i] = startSockJSStompjs(t, g.sockjsURL(), 15*time.Second, map[string]any{
					"transport": tr.client, "heartbeat": 500, "then": "wait",
					"destination": uniqueDest(t) + "-" + tr.client,
				})
			}
			for _, c := range clients {
				c.next(10*time.Second, "ready")
			}
			info := "http://" + g.addr + sockjsPrefix + "/info"
			if code := httpStatus("GET", info); code != http.StatusOK {
				t.Fatalf("/info before the drain: %d", code)
			}

			start := time.Now()
			if broker.spring == nil {
				if code := httpStatus("POST", "http://"+g.adminAddr+"/drain"); code != http.StatusAccepted {
					t.Fatalf("POST /drain: %d", code)
				}
			} else if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if !eventually(delay, func() bool { return httpStatus("GET", info) == http.StatusServiceUnavailable }) {
				t.Errorf("/info did not answer 503 within %v of the drain", delay)
			} else {
				t.Logf("/info answered 503 after %v", time.Since(start).Round(time.Millisecond))
			}

			bound := delay + period + tolerance
			for i, tr := range sockjsTransports {
				r := clients[i].next(bound+2*time.Second, "result")
				errAfter := time.UnixMilli(orMinus1(r.StompErrorAt)).Sub(start)
				closedAfter := time.UnixMilli(orMinus1(r.ClosedAt)).Sub(start)
				t.Logf("%s over %s: STOMP ERROR %q after %v, close %d (%s) after %v",
					broker.name, tr.client, orNone(r.StompError), errAfter, orMinus1(r.CloseCode), orNone(r.CloseReason), closedAfter)
				if r.Error != nil {
					t.Errorf("%s: %s", tr.client, *r.Error)
				}
				if orNone(r.StompError) != "server restarting, reconnect" || orMinus1(r.CloseCode) != 1012 {
					t.Errorf("%s: STOMP ERROR %s, close %d; want ERROR 'server restarting, reconnect' and close 1012",
						tr.client, orNone(r.StompError), orMinus1(r.CloseCode))
					continue
				}
				if orMinus1(r.StompErrorAt) > orMinus1(r.ClosedAt) {
					t.Errorf("%s: the close came %d ms before the ERROR", tr.client, orMinus1(r.StompErrorAt)-orMinus1(r.ClosedAt))
				}
				// A 50 ms allowance for the two clocks' reading of the same time.
				if closedAfter > bound || closedAfter < delay-50*time.Millisecond {
					t.Errorf("%s: closed %v after the drain started, want within [%v, %v]", tr.client, closedAfter, delay, bound)
				}
				line, ok := g.sessionLine(3*time.Second, tr.logged)
				if !ok {
					t.Errorf("no session line with transport %s", tr.logged)
					continue
				}
				if line["stomp"] != true || line["client_close_code"] != float64(1012) || !strings.HasPrefix(fmt.Sprint(line["end"]), "drain") {
					t.Errorf("%s session line: stomp %v, client_close_code %v, end %v; want true, 1012, drain",
						tr.logged, line["stomp"], line["client_close_code"], line["end"])
				}
			}

			if broker.spring != nil {
				if !eventually(3*time.Second, func() bool { return broker.spring.count(isFrame("DISCONNECT")) == len(sockjsTransports) }) {
					t.Errorf("the broker got %d DISCONNECTs, want %d", broker.spring.count(isFrame("DISCONNECT")), len(sockjsTransports))
				}
				select {
				case <-g.exited:
					if g.exitErr != nil {
						t.Errorf("stompgate exited with %v after SIGTERM", g.exitErr)
					} else {
						t.Logf("stompgate exited 0, %v after SIGTERM", time.Since(start).Round(time.Millisecond))
					}
				case <-time.After(5 * time.Second):
					t.Errorf("stompgate still running 5s after its sessions drained")
				}
			}
		})
	}
}
