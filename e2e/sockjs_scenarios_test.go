package e2e

// SockJS failure scenarios (issue 19), each with its control, end to end: a
// real stompgate process serving SockJS at /ws (STOMPGATE_SOCKJS_PATHS), the
// Spring-semantics broker with its raw endpoint at /ws/websocket (the
// default STOMPGATE_SOCKJS_UPSTREAM_SUFFIX), and sockjs-client 1.6.1 with
// @stomp/stompjs 7.5 in Node (e2e/js/sockjs_scenario.mjs), restricted to one
// transport. There is no SockJS broker here to run the SockJS client
// against without stompgate, so each control is the same setup with the
// one setting or peer that makes the difference, or a WebSocket client.
//
//	STOMPGATE_E2E=require go test -race -count=1 -run 'SockJSScenario' ./e2e/

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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

// sockjsGate, startSockJSGate and startSpringAt are in sockjs_test.go.

// springProcessEnv makes the test binary, run as TestSpringBrokerProcess,
// serve the Spring-semantics broker: "SX,SY" heart-beat in ms.
const springProcessEnv = "STOMPGATE_E2E_SPRING_BROKER_PROCESS"

// TestSpringBrokerProcess is not a test: startSpringProcess runs the test
// binary with only this function selected, as the broker process a test
// can freeze with SIGSTOP. It serves the broker at sockjsUpstream until it
// is killed, after printing its address.
func TestSpringBrokerProcess(t *testing.T) {
	spec := os.Getenv(springProcessEnv)
	if spec == "" {
		return
	}
	var sx, sy int
	if _, err := fmt.Sscanf(spec, "%d,%d", &sx, &sy); err != nil {
		t.Fatalf("%s=%q: %v", springProcessEnv, spec, err)
	}
	b := springbroker.New(springbroker.Config{
		HeartBeat: [2]time.Duration{time.Duration(sx) * ms, time.Duration(sy) * ms},
		Path:      sockjsUpstream,
	})
	srv := httptest.NewServer(b)
	fmt.Println(strings.TrimPrefix(srv.URL, "http://"))
	select {}
}

// springProcess is the broker in a process of its own.
type springProcess struct {
	cmd  *exec.Cmd
	addr string
}

func startSpringProcess(t *testing.T, sx, sy time.Duration) *springProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpringBrokerProcess$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d", springProcessEnv, sx.Milliseconds(), sy.Milliseconds()))
	var stderr stomptest.LockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		// A stopped process is let go on before it is killed.
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-exited
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case addr := <-lines:
		return &springProcess{cmd: cmd, addr: addr}
	case <-time.After(20 * time.Second):
		t.Fatalf("the broker process printed no address:\n%s", stderr.String())
		return nil
	}
}

// ---- the Node client ------------------------------------------------------

// sockjsEvent is one line of e2e/js/sockjs_scenario.mjs.
type sockjsEvent struct {
	Event           string `json:"event"`
	At              int64  `json:"at"` // epoch ms
	HeartBeat       string `json:"heartBeat"`
	SockJSTransport string `json:"sockjsTransport"`
	Body            string `json:"body"`
	Message         string `json:"message"`
	Code            int    `json:"code"`
	Reason          string `json:"reason"`
	HFrames         int    `json:"hFrames"`
}

func (e sockjsEvent) time() time.Time { return time.UnixMilli(e.At) }

func (e sockjsEvent) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// nodeClient is the Node client process.
type nodeClient struct {
	cmd    *exec.Cmd
	events chan sockjsEvent
	done   chan struct{}
	stderr *stomptest.LockedBuffer
}

// startNodeClient runs sockjs_scenario.mjs against url with transport
// (a sockjs-client transport, or "raw" for a plain WebSocket).
func startNodeClient(t *testing.T, url, transport, dest string) *nodeClient {
	t.Helper()
	node, jsDir := peers.Node(t)
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "sockjs-client", "package.json")); err != nil {
		if peers.Required() {
			t.Fatalf("sockjs-client is not installed in %s (npm ci there)", jsDir)
		}
		t.Skipf("sockjs-client is not installed in %s (npm ci there)", jsDir)
	}
	opts, _ := json.Marshal(map[string]any{"transport": transport, "destination": dest, "timeoutMs": 30000})
	cmd := exec.Command(node, "sockjs_scenario.mjs", url, string(opts))
	cmd.Dir = jsDir
	c := &nodeClient{cmd: cmd, events: make(chan sockjsEvent, 64), done: make(chan struct{}), stderr: &stomptest.LockedBuffer{}}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		defer close(c.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e sockjsEvent
			if bytes.HasPrefix(sc.Bytes(), []byte("{")) && json.Unmarshal(sc.Bytes(), &e) == nil {
				c.events <- e
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		c.kill()
		<-c.done
		if t.Failed() {
			t.Logf("node (%s) stderr:\n%s", transport, c.stderr.String())
		}
	})
	return c
}

// kill ends the client with SIGKILL: its sockets close, nothing is said.
func (c *nodeClient) kill() { _ = c.cmd.Process.Signal(syscall.SIGKILL) }

// next returns the client's next event, or ok false when it printed none
// within the time (or exited).
func (c *nodeClient) next(within time.Duration) (sockjsEvent, bool) {
	select {
	case e, ok := <-c.events:
		return e, ok
	case <-time.After(within):
		return sockjsEvent{}, false
	}
}

// connected waits for the client's CONNECTED.
func (c *nodeClient) connected(t *testing.T) sockjsEvent {
	t.Helper()
	e, ok := c.next(15 * time.Second)
	if !ok || e.Event != "connected" {
		t.Fatalf("want CONNECTED, got %v (ok %v); stderr:\n%s", e, ok, c.stderr.String())
	}
	return e
}

// ---------------------------------------------------------------------------
// 1. A silent SockJS client behind nginx's proxy_read_timeout.

func nginxSockJSConf(upstream string, readTimeout time.Duration) string {
	// proxy_buffering off: a streaming transport's frames go to the client
	// as they come, as every SockJS deployment behind nginx sets it.
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
        proxy_buffering off;
        proxy_read_timeout %dms;
    }
}
`, upstream, readTimeout.Milliseconds())
}

func TestSockJSScenarioSilentClientBehindNginx(t *testing.T) {
	t.Parallel()
	peers.Nginx(t)
	const timeout = time.Second
	const hold = 5 * timeout
	for _, transport := range []string{"websocket", "xhr-streaming"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			// The client asks for heart-beat 0,0 and sends nothing after
			// its SUBSCRIBE: only stompgate's SockJS h frames cross nginx.
			run := func(t *testing.T, sockjsHeartbeat time.Duration) (connected, last sockjsEvent, closed bool, dest string, b *spring, c *nodeClient) {
				b = startSpringAt(t, sockjsUpstream, 0, 0)
				g := startSockJSGate(t, b.origin(), "STOMPGATE_SOCKJS_HEARTBEAT="+sockjsHeartbeat.String(),
					"STOMPGATE_SOCKJS_DISCONNECT_DELAY=2s")
				addr := peers.StartNginx(t, nginxSockJSConf(g.addr, timeout))
				dest = uniqueDest(t)
				c = startNodeClient(t, "http://"+addr+sockjsPrefix, transport, dest)
				connected = c.connected(t)
				if connected.SockJSTransport != transport {
					t.Fatalf("sockjs-client opened %q, want %q", connected.SockJSTransport, transport)
				}
				if !eventually(5*time.Second, func() bool { return b.b.Subscriptions() == 1 }) {
					t.Fatal("the broker did not register the SUBSCRIBE")
				}
				last, ok := c.next(hold)
				return connected, last, ok, dest, b, c
			}

			t.Run("control", func(t *testing.T) {
				t.Parallel()
				// h frames every 30 s: nothing crosses nginx for its 1 s.
				connected, e, ended, dest, b, c := run(t, 30*time.Second)
				gone, ok := b.waitEvent(0, isKind(springbroker.EventClosed))
				if !ok {
					t.Fatalf("the broker's session outlived %v of silence behind nginx's %v timeout", hold, timeout)
				}
				if after := gone.Time.Sub(connected.time()); after < timeout/2 || after > 4*timeout {
					t.Fatalf("the broker's session ended %v after CONNECTED, want about nginx's %v", after, timeout)
				}
				if !ended {
					// The streaming request was cut without its end:
					// sockjs-client never learns, and what is published
					// afterwards is lost.
					b.b.Publish(dest, []byte("after the silence"))
					e, ended = c.next(2 * time.Second)
					if ended && e.Event == "message" {
						t.Fatalf("the MESSAGE reached a session whose broker leg is gone: %v", e)
					}
				}
				client := "no close event: the client still thinks it is connected"
				if ended {
					client = fmt.Sprintf("%s %d %q %v after CONNECTED", e.Event, e.Code, e.Reason, e.time().Sub(connected.time()))
				}
				t.Logf("SockJS %s, silent, through nginx (proxy_read_timeout %v) → stompgate (SOCKJS_HEARTBEAT 30s): broker session ended %v after CONNECTED (%d h frames); client: %s",
					transport, timeout, gone.Time.Sub(connected.time()).Round(ms), e.HFrames, client)
			})

			t.Run("stompgate", func(t *testing.T) {
				t.Parallel()
				// h frames every 300 ms, below nginx's 1 s.
				connected, e, ended, dest, b, c := run(t, 300*ms)
				if ended {
					t.Fatalf("the session ended %v after CONNECTED: %v", e.time().Sub(connected.time()), e)
				}
				b.b.Publish(dest, []byte("after the silence"))
				m, ok := c.next(5 * time.Second)
				if !ok || m.Event != "message" || m.Body != "after the silence" {
					t.Fatalf("after %v of silence: want the MESSAGE published, got %v (ok %v)", hold, m, ok)
				}
				t.Logf("SockJS %s through nginx (proxy_read_timeout %v) → stompgate (SOCKJS_HEARTBEAT 300ms), silent: open %v after CONNECTED, %d h frames, then MESSAGE delivered",
					transport, timeout, m.time().Sub(connected.time()), m.HFrames)
				if b.b.Sessions() != 1 {
					t.Errorf("broker holds %d sessions, want 1", b.b.Sessions())
				}
			})
		})
	}
}

// ---------------------------------------------------------------------------
// 2. The broker freezes (SIGSTOP): its kernel still takes bytes and
// connects, the broker answers nothing.

func TestSockJSScenarioFrozenBroker(t *testing.T) {
	t.Parallel()
	// The broker sends and wants heart-beats every 200 ms; stompgate asks
	// for the same upstream, so it declares the broker dead after 200 ms ×
	// HEARTBEAT_TOLERANCE 3 without a byte. The bound leaves room for the
	// ERROR, the close and a loaded machine.
	const period = 200 * ms
	const deadAfter = 3 * period
	const bound = deadAfter + 2500*ms
	transports := []string{"websocket", "xhr-streaming", "xhr-polling"}

	broker := startSpringProcess(t, period, period)
	g := startSockJSGate(t, "ws://"+broker.addr,
		"STOMPGATE_UPSTREAM_HEARTBEAT=200,200",
		"STOMPGATE_HEARTBEAT_TOLERANCE=3")

	// Control: a client straight on the broker, heart-beat 0,0 as the
	// SockJS clients ask; nothing tells it.
	direct := dialLive(t, "ws://"+broker.addr+sockjsUpstream)
	direct.Connect(guest("heart-beat", "0,0")...)
	// Control: a WebSocket client through the same stompgate (a path that
	// is not SockJS passes through to the same endpoint).
	ws := dialLive(t, "ws://"+g.addr+sockjsUpstream)
	ws.Connect(guest("heart-beat", "0,0")...)

	clients := make([]*nodeClient, len(transports))
	for i, tr := range transports {
		clients[i] = startNodeClient(t, "http://"+g.addr+sockjsPrefix, tr, uniqueDest(t))
		if e := clients[i].connected(t); e.SockJSTransport != tr {
			t.Fatalf("sockjs-client opened %q, want %q", e.SockJSTransport, tr)
		}
	}

	if err := broker.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()

	type watched struct {
		name string
		q    stomptest.Quiet
	}
	watches := make(chan watched, 2)
	go func() { watches <- watched{"direct", direct.Watch(bound)} }()
	go func() { watches <- watched{"websocket", ws.Watch(bound)} }()

	for i, c := range clients {
		errAt, closeAt := time.Duration(-1), time.Duration(-1)
		var msg string
		var code int
		for closeAt < 0 {
			e, ok := c.next(bound - time.Since(frozen) + 100*ms)
			if !ok {
				t.Fatalf("SockJS %s: no close within %v of the freeze (STOMP ERROR %q)", transports[i], bound, msg)
			}
			switch e.Event {
			case "error":
				errAt, msg = e.time().Sub(frozen), e.Message
			case "close":
				closeAt, code = e.time().Sub(frozen), e.Code
			default:
				t.Fatalf("SockJS %s: %v", transports[i], e)
			}
		}
		t.Logf("SockJS %s through stompgate, broker frozen: STOMP ERROR %q after %v, close %d after %v",
			transports[i], msg, errAt.Round(ms), code, closeAt.Round(ms))
		if errAt < 0 || !strings.Contains(msg, "upstream") {
			t.Errorf("SockJS %s: no STOMP ERROR saying the broker is gone before the close (message %q)", transports[i], msg)
		}
		if code != 1011 {
			t.Errorf("SockJS %s: close %d, want 1011", transports[i], code)
		}
		// Less than deadAfter is fine: the broker's last heart-beat came
		// before the freeze.
		if closeAt > bound {
			t.Errorf("SockJS %s: closed %v after the freeze, want within %v (dead after %v)", transports[i], closeAt, bound, deadAfter)
		}
	}
	for range 2 {
		w := <-watches
		switch w.name {
		case "direct":
			t.Logf("WebSocket client straight on the frozen broker, heart-beat 0,0: %v", w.q)
			expectQuiet(t, "a client on the frozen broker without heart-beats", w.q)
		case "websocket":
			w.q.Lasted = w.q.End.At.Sub(frozen)
			t.Logf("WebSocket client through stompgate, broker frozen: %v", w.q)
			if !w.q.Closed {
				t.Fatalf("the WebSocket client through stompgate was not told within %v", bound)
			}
			expectErrorThenClose(t, w.q, 1011)
		}
	}
}

// ---------------------------------------------------------------------------
// 3. An xhr-polling client vanishes: killed (SIGKILL: its kernel closes its
// connections, the open poll included) or frozen (SIGSTOP: its connections
// stay open, it polls no more, as when its network is gone).

func TestSockJSScenarioVanishedPollingClient(t *testing.T) {
	t.Parallel()
	const disconnectDelay, closeTimeout = time.Second, time.Second
	const sockjsHeartbeat = 300 * ms                        // ends a frozen client's open poll
	const pingInterval, pongTimeout = 300 * ms, time.Second // finds a frozen WebSocket client
	// Allowed: the h frame that ends the open poll, the disconnect delay,
	// the close timeout for the broker's RECEIPT, and slack for a loaded
	// machine.
	const bound = sockjsHeartbeat + disconnectDelay + closeTimeout + 2*time.Second

	// run makes a client of stompgate at url vanish by sig and returns when
	// the broker got the DISCONNECT, after sig; stompgate's session line
	// must say the session was ended by closedBy.
	run := func(t *testing.T, transport string, url func(g *sockjsGate) string, sig syscall.Signal, closedBy string) time.Duration {
		b := startSpringAt(t, sockjsUpstream, 0, 0)
		g := startSockJSGate(t, b.origin(),
			"STOMPGATE_SOCKJS_DISCONNECT_DELAY="+disconnectDelay.String(),
			"STOMPGATE_SOCKJS_HEARTBEAT="+sockjsHeartbeat.String(),
			"STOMPGATE_CLOSE_TIMEOUT="+closeTimeout.String(),
			"STOMPGATE_CLIENT_PING_INTERVAL="+pingInterval.String(),
			"STOMPGATE_PONG_TIMEOUT="+pongTimeout.String())
		c := startNodeClient(t, url(g), transport, uniqueDest(t))
		if e := c.connected(t); transport != "raw" && e.SockJSTransport != transport {
			t.Fatalf("sockjs-client opened %q, want %q", e.SockJSTransport, transport)
		}
		if !eventually(5*time.Second, func() bool { return b.b.Subscriptions() == 1 }) {
			t.Fatal("the broker did not register the SUBSCRIBE")
		}
		if err := c.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		gone := time.Now()
		d, ok := b.waitEvent(bound, isFrame("DISCONNECT"))
		if !ok {
			t.Fatalf("the broker got no DISCONNECT within %v of the %v", bound, sig)
		}
		took := d.Time.Sub(gone)
		if _, has := d.Frame.Header("receipt"); !has {
			t.Errorf("DISCONNECT without receipt: %v", d.Frame.Headers)
		}
		if !eventually(3*time.Second, func() bool { return b.b.Sessions() == 0 && b.b.Subscriptions() == 0 }) {
			t.Errorf("broker still holds %d sessions, %d subscriptions", b.b.Sessions(), b.b.Subscriptions())
		}
		var line map[string]any
		if !eventually(3*time.Second, func() bool {
			if lines := g.sessionLines(); len(lines) == 1 {
				line = lines[0]
			}
			return line != nil
		}) {
			t.Fatalf("no session line in stompgate's log")
		}
		if line["closed_by"] != closedBy {
			t.Errorf("session line closed_by=%v, want %s", line["closed_by"], closedBy)
		}
		wantTransport := "sockjs/xhr"
		if transport == "raw" {
			wantTransport = "websocket"
		}
		if line["transport"] != wantTransport {
			t.Errorf("session line transport=%v, want %s", line["transport"], wantTransport)
		}
		t.Logf("%s client, %s: the broker got DISCONNECT %v later; stompgate's session line: transport=%v closed_by=%v end=%q",
			transport, map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGSTOP: "SIGSTOP"}[sig], took.Round(ms), line["transport"], line["closed_by"], line["end"])
		return took
	}
	webSocket := func(g *sockjsGate) string { return "ws://" + g.addr + sockjsUpstream }
	sockJS := func(g *sockjsGate) string { return "http://" + g.addr + sockjsPrefix }

	t.Run("control", func(t *testing.T) {
		t.Parallel()
		// A WebSocket client through the same stompgate.
		t.Run("killed", func(t *testing.T) {
			t.Parallel()
			run(t, "raw", webSocket, syscall.SIGKILL, "client")
		})
		t.Run("frozen", func(t *testing.T) {
			t.Parallel()
			// Found by stompgate's pings: its pong timeout ends it.
			if took := run(t, "raw", webSocket, syscall.SIGSTOP, "proxy"); took < pongTimeout {
				t.Errorf("DISCONNECT %v after the freeze, before the pong timeout (%v)", took, pongTimeout)
			}
		})
	})

	t.Run("stompgate", func(t *testing.T) {
		t.Parallel()
		t.Run("killed", func(t *testing.T) {
			t.Parallel()
			// The open poll's connection closes with the process: a
			// request aborted by the client ends the SockJS session at
			// once, as in SockJS's reference server.
			run(t, "xhr-polling", sockJS, syscall.SIGKILL, "client")
		})
		t.Run("frozen", func(t *testing.T) {
			t.Parallel()
			// No new poll after the open one is answered: the session
			// ends after the disconnect delay.
			if took := run(t, "xhr-polling", sockJS, syscall.SIGSTOP, "client"); took < disconnectDelay {
				t.Errorf("DISCONNECT %v after the freeze, before the disconnect delay (%v)", took, disconnectDelay)
			}
		})
	})
}
