package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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
