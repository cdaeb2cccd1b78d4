package main

// Tests that run stompgate as a real process: the test binary re-executes
// itself with STOMPGATE_TEST_HELPER set, and then runs main's run (the
// whole serve path, configured by the environment, with real signals),
// `stompgate demo` (demo_test.go), or a small upstream HTTP server, or the Spring-semantics STOMP broker
// (frozen_test.go), either of which a test can freeze with SIGSTOP.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/internal/wstest"
)

const helperEnv = "STOMPGATE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "stompgate":
		os.Exit(run(nil, os.Stdout, os.Stderr))
	case "demo":
		os.Exit(demoCommand(os.Stdout, os.Stderr))
	case "upstream":
		os.Exit(helperUpstream())
	case "springbroker":
		os.Exit(helperSpringBroker())
	}
	os.Exit(m.Run())
}

// helperUpstream serves HTTP on 127.0.0.1 and prints its address: every
// request gets 400, as a WebSocket endpoint answers a plain GET.
func helperUpstream() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "Can \"Upgrade\" only to \"WebSocket\".", http.StatusBadRequest)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	_ = srv.Serve(ln)
	return 0
}

// proc is a helper process started by the test.
type proc struct {
	cmd    *exec.Cmd
	out    *stomptest.LockedBuffer // stdout and stderr
	exited chan struct{}
	err    error // set when exited is closed
}

// startProc re-executes the test binary as a helper; the process is
// killed at the end of the test if it still runs.
func startProc(t *testing.T, mode string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append([]string{helperEnv + "=" + mode, "PATH=" + os.Getenv("PATH")}, env...)
	p := &proc{cmd: cmd, out: &stomptest.LockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill() // also ends a stopped process
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s process output:\n%s", mode, p.out.String())
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("signal %v: %v", s, err)
	}
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitExit waits for the process to exit and returns its exit status.
func (p *proc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("still running after %v", within)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

// startStompgate runs stompgate with the given STOMPGATE_* settings (plus
// a quick close timeout unless set) and waits until its admin server
// answers.
func startStompgate(t *testing.T, adminAddr string, env ...string) *proc {
	t.Helper()
	p := startProc(t, "stompgate", append([]string{"STOMPGATE_ADMIN_ADDR=" + adminAddr}, env...)...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := httpGet("http://" + adminAddr + "/livez"); code == http.StatusOK {
			return p
		}
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("stompgate did not serve its admin API on %s:\n%s", adminAddr, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpGet returns the status and body of a GET, or 0 and the error.
func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// freeAddr returns an address for a child process to bind
// (wstest.FreeAddr).
func freeAddr(t *testing.T) string { return wstest.FreeAddr(t) }

// pollUntil polls cond every 20ms until it holds, for at most within, and
// returns how long that took; it fails the test when cond never held.
func pollUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// With STOMPGATE_READY_CHECKS_UPSTREAM=true, /readyz proves that the
// upstream answers: a real upstream process frozen with SIGSTOP, whose
// kernel still completes TCP connects, turns /readyz 503 within the
// check's 2s deadline plus the 1s cache; after SIGCONT it turns 200 again.
func TestReadyzFailsWhileUpstreamIsFrozen(t *testing.T) {
	up := startProc(t, "upstream")
	pollUntil(t, 10*time.Second, "the upstream's address", func() bool { return strings.Contains(up.out.String(), "\n") })
	upAddr, _, _ := strings.Cut(up.out.String(), "\n")
	adminAddr := freeAddr(t)
	startStompgate(t, adminAddr,
		"STOMPGATE_UPSTREAM_URL=ws://"+upAddr+"/ws",
		"STOMPGATE_LISTEN_ADDR="+freeAddr(t),
		"STOMPGATE_READY_CHECKS_UPSTREAM=true",
	)
	readyz := func() (int, string) { return httpGet("http://" + adminAddr + "/readyz") }
	pollUntil(t, 5*time.Second, "/readyz 200 with the upstream answering", func() bool { code, _ := readyz(); return code == http.StatusOK })

	up.signal(t, syscall.SIGSTOP)
	frozen := time.Now()
	// What a TCP connect check saw: success.
	c, err := net.DialTimeout("tcp", upAddr, time.Second)
	if err != nil {
		t.Fatalf("TCP connect to the frozen upstream: %v (the test would not show the fault)", err)
	}
	c.Close()
	var body string
	took := pollUntil(t, 5*time.Second, "/readyz 503 with the upstream frozen", func() bool {
		var code int
		code, body = readyz()
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "no HTTP answer") {
		t.Errorf("/readyz body %q", body)
	}
	if took > 4*time.Second {
		t.Errorf("/readyz turned 503 %v after the freeze, want about 3s (2s deadline + 1s cache)", took)
	}
	t.Logf("upstream frozen: /readyz 503 after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(body))

	up.signal(t, syscall.SIGCONT)
	took = pollUntil(t, 5*time.Second, "/readyz 200 after SIGCONT", func() bool { code, _ := readyz(); return code == http.StatusOK })
	t.Logf("upstream thawed: /readyz 200 after %v (frozen for %v)", took.Round(time.Millisecond), time.Since(frozen).Round(time.Millisecond))
}

// stompUpstream is an in-process STOMP-over-WebSocket broker on 127.0.0.1:
// it answers CONNECT with CONNECTED, then reads and drops everything
// without ever answering a close frame, so a session it holds ends only
// when stompgate's CLOSE_TIMEOUT aborts it (a drain then lasts that long).
// handshakes counts the requests that reached it.
func stompUpstream(t *testing.T) (addr string, handshakes *atomic.Int32) {
	t.Helper()
	handshakes = &atomic.Int32{}
	upgrader := websocket.Upgrader{Subprotocols: []string{"v12.stomp"}}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Counted before the 101 is written, so a client that has its own
		// 101 finds its handshake counted.
		handshakes.Add(1)
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.Close()
		if _, _, err := c.ReadMessage(); err != nil { // CONNECT
			return
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00")); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c.NetConn())
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return srv.Listener.Addr().String(), handshakes
}

// stompSession opens a STOMP session through stompgate at addr and waits
// for its CONNECTED.
func stompSession(t *testing.T, addr string) *stomptest.Client {
	t.Helper()
	c := stomptest.Dial(t, "ws://"+addr+"/ws", stomptest.Subprotocols("v12.stomp"))
	c.Connect("accept-version", "1.2", "host", "/", "heart-beat", "0,0")
	return c
}

// Request headers are bounded by STOMPGATE_MAX_REQUEST_HEADER_BYTES (64 KiB
// by default) on the client listener of the real serve path: a handshake
// with 100 KiB of headers gets 431 and never reaches the upstream (Go's
// default of 1 MiB let it through, to be forwarded upstream), one with
// 32 KiB is upgraded.
func TestRequestHeaderLimitIs431(t *testing.T) {
	upAddr, handshakes := stompUpstream(t)
	addr := freeAddr(t)
	startStompgate(t, freeAddr(t),
		"STOMPGATE_UPSTREAM_URL=ws://"+upAddr,
		"STOMPGATE_LISTEN_ADDR="+addr,
	)
	handshake := func(headerBytes int) int {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v12.stomp\r\n"
		for i := 0; len(req) < headerBytes; i++ {
			req += fmt.Sprintf("X-Filler-%d: %s\r\n", i, strings.Repeat("a", 1000))
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatalf("writing %d bytes of headers: %v", len(req), err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%d bytes of headers: %v", len(req), err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := handshake(100 << 10); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KiB of headers: status %d, want 431", got)
	}
	if n := handshakes.Load(); n != 0 {
		t.Fatalf("the upstream saw %d handshakes after the 431", n)
	}
	if got := handshake(32 << 10); got != http.StatusSwitchingProtocols {
		t.Fatalf("32 KiB of headers: status %d, want 101", got)
	}
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("the upstream saw %d handshakes, want 1", n)
	}
}

// A draining stompgate closes its client listener after SHUTDOWN_DELAY
// instead of when its last session ends: 2.5s after SIGTERM (delay 1s),
// with a session still draining, a second stompgate has bound the same
// address and serves a handshake; the first still closes its session with
// ERROR and 1012, serves /livez and a 503 /readyz until it exits, and exits
// 0.
func TestDrainFreesListenAddress(t *testing.T) {
	upAddr, _ := stompUpstream(t)
	addr, admin1, admin2 := freeAddr(t), freeAddr(t), freeAddr(t)
	settings := []string{
		"STOMPGATE_UPSTREAM_URL=ws://" + upAddr,
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_SHUTDOWN_DELAY=1s",
		"STOMPGATE_DRAIN_PERIOD=500ms",
		// The upstream never answers stompgate's close: the session lasts
		// until CLOSE_TIMEOUT after its drain moment, 4s after SIGTERM at
		// the earliest, well past the second stompgate's start.
		"STOMPGATE_CLOSE_TIMEOUT=3s",
		"STOMPGATE_SHUTDOWN_TIMEOUT=10s",
	}
	first := startStompgate(t, admin1, settings...)
	c := stompSession(t, addr)
	ended := make(chan stomptest.Quiet, 1)
	go func() { ended <- c.Watch(time.Hour) }()

	first.signal(t, syscall.SIGTERM)
	sigterm := time.Now()
	// The listener closes after SHUTDOWN_DELAY: connects are refused.
	closedAfter := pollUntil(t, 2500*time.Millisecond, "the first stompgate's listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if closedAfter < time.Second {
		t.Errorf("listener closed %v after SIGTERM, before SHUTDOWN_DELAY (1s)", closedAfter)
	}

	second := startStompgate(t, admin2, settings...)
	stompSession(t, addr)
	served := time.Since(sigterm)
	if served > 2500*time.Millisecond {
		t.Errorf("the second stompgate served a handshake %v after SIGTERM, want within 2.5s", served)
	}
	// The first is still draining its session.
	if !first.running() {
		t.Fatalf("the first stompgate exited before its session was drained:\n%s", first.out.String())
	}
	if code, _ := httpGet("http://" + admin1 + "/livez"); code != http.StatusOK {
		t.Errorf("first /livez while draining: %d", code)
	}
	if code, body := httpGet("http://" + admin1 + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("first /readyz while draining: %d %s", code, body)
	}
	if _, metrics := httpGet("http://" + admin1 + "/metrics"); !strings.Contains(metrics, "stompgate_sessions_active 1") {
		t.Errorf("the first stompgate's session is gone %v after SIGTERM", time.Since(sigterm))
	}
	t.Logf("listener closed %v after SIGTERM; the second stompgate served a handshake %v after SIGTERM, while the first drained",
		closedAfter.Round(time.Millisecond), served.Round(time.Millisecond))

	select {
	case q := <-ended:
		if last := len(q.Frames) - 1; !q.Closed || q.End.Code != 1012 || last < 0 || q.Frames[last].Command != "ERROR" ||
			q.Frames[last].Headers["message"] != "server restarting, reconnect" {
			t.Errorf("drained client saw %v, want ERROR 'server restarting, reconnect' then 1012", q)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the drained client was not closed")
	}
	if code := first.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("first stompgate exited %d", code)
	}
	t.Logf("first stompgate exited %v after SIGTERM", time.Since(sigterm).Round(time.Millisecond))
	if out := first.out.String(); !strings.Contains(out, "closing the proxy listener") || !strings.Contains(out, `"msg":"session ended"`) {
		t.Errorf("first stompgate's log lacks the listener close or the session end:\n%s", out)
	}
	if !second.running() {
		t.Errorf("the second stompgate exited:\n%s", second.out.String())
	}
}
