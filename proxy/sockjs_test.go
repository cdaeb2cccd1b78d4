package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sockjsProxy is a proxy serving SockJS under /ws in front of upstream,
// whose raw endpoint is /ws/websocket (Spring's layout).
func sockjsProxy(t *testing.T, onConn func(*websocket.Conn), mod func(*Options)) (*testProxy, *upstream) {
	t.Helper()
	up := newUpstream(t, []string{"v12.stomp"}, onConn)
	p := newProxy(t, up.wsURL(), func(o *Options) {
		o.SockJS = SockJSOptions{Paths: []string{"/ws"}, UpstreamSuffix: "/websocket", DisconnectDelay: 300 * time.Millisecond, HeartbeatDelay: time.Minute}
		if mod != nil {
			mod(o)
		}
	})
	return p, up
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An xhr-polling SockJS session carries messages both ways to a plain
// WebSocket upstream at the prefix plus the suffix.
func TestSockJSXHRPollingEcho(t *testing.T) {
	p, up := sockjsProxy(t, echo, nil)
	if code, body := httpDo(t, "GET", p.srv.URL+"/ws/info", ""); code != 200 || !strings.Contains(body, `"websocket":true`) {
		t.Fatalf("/info: %d %s", code, body)
	}
	base := p.srv.URL + "/ws/000/s1/"
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	if code, body := httpDo(t, "POST", base+"xhr_send", `["hello"]`); code != 204 {
		t.Fatalf("send: %d %q", code, body)
	}
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || body != "a[\"hello\"]\n" {
		t.Fatalf("poll: %d %q", code, body)
	}
	up.mu.Lock()
	path, proto := up.lastReq.URL.Path, up.lastReq.Header.Get("Sec-Websocket-Protocol")
	up.mu.Unlock()
	if path != "/ws/websocket" || !strings.Contains(proto, "v12.stomp") {
		t.Errorf("upstream request %s with subprotocols %q; want /ws/websocket offering v12.stomp", path, proto)
	}
	// The client stops polling: after the disconnect delay it is gone.
	e := p.waitSessionEnd(t, 5*time.Second)
	if got := e.ContextMap()["transport"]; got != "sockjs/xhr" {
		t.Errorf("transport %v, want sockjs/xhr", got)
	}
	if got := e.ContextMap()["closed_by"]; got != "client" {
		t.Errorf("closed_by %v, want client", got)
	}
	if got := e.ContextMap()["path"]; got != "/ws/000/s1/xhr" {
		t.Errorf("path %v, want the one the client asked for, /ws/000/s1/xhr", got)
	}
}

// A polling client whose session a drain ended gets the close frame
// c[1012,…] on its next request, the one after the request that carried
// the session's last messages: the session id stays known to admission
// for the disconnect delay, as the library keeps the session to answer it,
// so that request is not refused as a new session while draining (503,
// which sockjs-client reports as 1006).
func TestSockJSDrainedPollingClientGetsCloseFrame(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws/000/s1/"
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if !p.h.Drain(ctx, DrainOptions{}) {
		t.Fatal("the drain did not end the session")
	}
	p.waitSessionEnd(t, time.Second)
	code, body := httpDo(t, "POST", base+"xhr", "")
	if want := "c[1012,\"" + DrainMessage + "\"]\n"; code != 200 || body != want {
		t.Fatalf("poll after the drain ended the session: %d %q, want 200 %q", code, body, want)
	}
	// The library drops the ended session the disconnect delay after that
	// request.
	waitLibrarySessionsGone(t)
}

// Clients that poll again as soon as a poll returned, while messages keep
// coming, are never told c[2010,"Another connection still open"], which
// would end their sessions: the library lets go of the previous poll in a
// goroutine of its own, after the response, and stompgate tries such a
// refused poll again.
func TestSockJSPollingAtOnceIsNotRefused(t *testing.T) {
	for _, tc := range []struct {
		transport      string
		poll, send     string // method and path below the session
		opened, answer string // prefix of the opening poll's answer, and of later ones
	}{
		{"xhr", "POST xhr", "xhr_send", "o\n", "a["},
		{"jsonp", "GET jsonp?c=cb", "jsonp_send", `cb("o");`, `cb("a[`},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			const sessions, polls = 8, 150
			p, _ := sockjsProxy(t, echo, nil)
			method, poll, _ := strings.Cut(tc.poll, " ")
			var wg sync.WaitGroup
			refused := make(chan string, sessions)
			for n := range sessions {
				base := fmt.Sprintf("%s/ws/000/s%d/", p.srv.URL, n)
				if code, body := httpDo(t, method, base+poll, ""); code != 200 || !strings.HasPrefix(body, tc.opened) {
					t.Fatalf("open: %d %q", code, body)
				}
				stop := make(chan struct{})
				wg.Add(2)
				go func() { // the sender
					defer wg.Done()
					client := &http.Client{Timeout: 5 * time.Second}
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Millisecond):
						}
						if resp, err := client.Post(base+tc.send, "text/plain", strings.NewReader(`["x"]`)); err == nil {
							resp.Body.Close()
						}
					}
				}()
				go func() { // the poller
					defer wg.Done()
					defer close(stop)
					client := &http.Client{Timeout: 5 * time.Second}
					for i := range polls {
						req, _ := http.NewRequest(method, base+poll, nil)
						resp, err := client.Do(req)
						if err != nil {
							refused <- fmt.Sprintf("session %d, poll %d: %v", n, i, err)
							return
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if !strings.HasPrefix(string(b), tc.answer) {
							refused <- fmt.Sprintf("session %d, poll %d: %q", n, i, b)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(refused)
			for r := range refused {
				t.Error(r)
			}
			waitLibrarySessionsGone(t)
		})
	}
}

// waitLibrarySessionsGone waits until the library dropped every session,
// the disconnect delay after its last request.
func waitLibrarySessionsGone(t *testing.T) {
	t.Helper()
	waitFor(t, 3*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("sockjs.(*Handler).sessionByRequest"))
	})
}

// A WebSocket upgrade at the SockJS prefix itself is not SockJS (whose raw
// transport is <prefix>/<server>/<session>/websocket): it is proxied as a
// plain WebSocket session, so that WebSocket clients of a broker whose
// SockJS and raw endpoints share a path (RabbitMQ Web-STOMP's /ws) keep
// working when SockJS is turned on.
func TestSockJSPrefixWebSocketUpgradeIsProxied(t *testing.T) {
	p, up := sockjsProxy(t, echo, func(o *Options) { o.SockJS.UpstreamSuffix = "" })
	for _, path := range []string{"/ws", "/ws/"} {
		c := dial(t, p.url(path), nil, "v12.stomp")
		if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hello" {
			t.Fatalf("%s: read %q, %v; want the echo", path, msg, err)
		}
		c.Close()
		up.mu.Lock()
		got := up.lastReq.URL.Path
		up.mu.Unlock()
		if got != path {
			t.Errorf("upstream path %q, want %q", got, path)
		}
	}
	if code, body := httpDo(t, "GET", p.srv.URL+"/ws", ""); code != 200 || !strings.Contains(body, "Welcome to SockJS!") {
		t.Errorf("GET /ws: %d %q; want SockJS's greeting", code, body)
	}
}

// A drain that ends an xhr-polling session while its client is between
// polls: the client's next poll gets the c[1012,…] the proxy wrote, not a
// 503 for a new session on a draining instance. (The echo upstream sends
// no CONNECTED, so no ERROR comes first; TestDemoSockJSXHRPolling in
// cmd/stompgate shows both against a STOMP broker.)
func TestSockJSDrainBetweenPollsDeliversTheCloseFrame(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws/000/s1/"
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	if code, body := httpDo(t, "POST", base+"xhr_send", `["CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\u0000"]`); code != 204 {
		t.Fatalf("send: %d %q", code, body)
	}
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || !strings.HasPrefix(body, `a["CONNECT\n`) {
		t.Fatalf("poll: %d %q", code, body) // the echo upstream answers CONNECT with CONNECT
	}
	if !p.h.Drain(context.Background(), DrainOptions{}) {
		t.Fatal("the drain did not end the session")
	}
	var got []string
	for len(got) < 4 && !strings.HasPrefix(strings.Join(got, ""), "c[") {
		code, body := httpDo(t, "POST", base+"xhr", "")
		if code != 200 {
			t.Fatalf("poll after the drain: %d %q; read before: %q", code, body, got)
		}
		got = append(got, body)
		if strings.HasPrefix(body, "c[") {
			break
		}
	}
	all := strings.Join(got, "")
	if !strings.HasSuffix(all, "c[1012,\"server restarting, reconnect\"]\n") {
		t.Errorf("after the drain the client read %q; want c[1012,\"server restarting, reconnect\"]", got)
	}
}

// The session's path is the one the client asked for, prefix included,
// whatever the transport.
func TestSockJSSessionPathKeepsThePrefix(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws/000/s2/"
	httpDo(t, "POST", base+"xhr", "")
	e := p.waitSessionEnd(t, 5*time.Second)
	if got := e.ContextMap()["path"]; got != "/ws/000/s2/xhr" {
		t.Errorf("path %v, want /ws/000/s2/xhr", got)
	}
}

// A polling client polls again as soon as a poll has brought messages. The
// library detaches a finished poll asynchronously, so the next poll may
// find it still attached and get c[2010,"Another connection still open"],
// which ends the client's session. The next poll here is pipelined on the
// same connection: the server reads it the moment the previous one is
// answered, as a browser's next poll may arrive.
func TestSockJSPollAgainAtOnce(t *testing.T) {
	const messages = 200
	p, _ := sockjsProxy(t, func(c *websocket.Conn) {
		for i := range messages {
			if c.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(i))) != nil {
				return
			}
			time.Sleep(500 * time.Microsecond)
		}
		c.ReadMessage() // until the client is gone
	}, nil)
	for _, transport := range []string{"xhr", "jsonp"} {
		t.Run(transport, func(t *testing.T) {
			conn, err := net.Dial("tcp", p.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			req := "POST /ws/000/poll-" + transport + "/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
			if transport == "jsonp" {
				req = "GET /ws/000/poll-" + transport + "/jsonp?c=cb HTTP/1.1\r\nHost: x\r\n\r\n"
			}
			br := bufio.NewReader(conn)
			if _, err := io.WriteString(conn, req+req); err != nil {
				t.Fatal(err)
			}
			last := -1
			for last < messages-1 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after message %d: %v", last, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body := strings.NewReplacer(`\"`, `"`, "cb(", "", ");", "", "\r", "", "\n", "").Replace(string(b))
				if strings.HasPrefix(body, `"c[`) || strings.HasPrefix(body, "c[") {
					t.Fatalf("after message %d a poll got %s", last, b)
				}
				var msgs []string
				if rest, ok := strings.CutPrefix(strings.Trim(body, `"`), "a"); ok {
					if err := json.Unmarshal([]byte(rest), &msgs); err != nil {
						t.Fatalf("poll body %q: %v", b, err)
					}
				}
				for _, m := range msgs {
					n, _ := strconv.Atoi(m)
					if n != last+1 {
						t.Fatalf("message %s after %d", m, last)
					}
					last = n
				}
				// One poll stays pipelined behind the one being served.
				if last < messages-1 {
					if _, err := io.WriteString(conn, req); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// A drain ends a polling client's session with c[1012,…], which the client
// gets on its next poll: that poll belongs to the ended session and is not
// refused as a new one (503 while draining).
func TestSockJSDrainReachesPollingClient(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws/000/drained/"
	if code, body := httpDo(t, "POST", base+"xhr", ""); code != 200 || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	p.h.StartDraining()
	go p.h.Drain(context.Background(), DrainOptions{})
	p.waitSessionEnd(t, 5*time.Second)
	code, body := httpDo(t, "POST", base+"xhr", "")
	if code != 200 || !strings.HasPrefix(body, "c[1012,") {
		t.Fatalf("poll after the drain: %d %q, want c[1012,…]", code, body)
	}
}
