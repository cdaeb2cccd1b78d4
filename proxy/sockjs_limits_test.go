package proxy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Limits and bad input on SockJS's transports, each in front of a plain
// WebSocket upstream. TestMain checks that no goroutine outlives the
// tests; the descriptor counts below check each case's sockets.

// sjFrames polls session url until a close frame comes and returns every
// frame polled (o, a[…] and the c[…] last).
func sjFrames(t *testing.T, url string) []string {
	t.Helper()
	var frames []string
	for i := 0; i < 20; i++ {
		r := sjDo(t, "POST", url+"/xhr", nil, "")
		if r.code != 200 {
			t.Fatalf("poll: %d %q", r.code, r.body)
		}
		f := strings.TrimSuffix(r.body, "\n")
		frames = append(frames, f)
		if strings.HasPrefix(f, "c[") {
			return frames
		}
	}
	t.Fatalf("no close frame in %q", frames)
	return nil
}

// sjClose decodes a c[code,"reason"] frame.
func sjClose(t *testing.T, frame string) (int, string) {
	t.Helper()
	var v []any
	if !strings.HasPrefix(frame, "c") || json.Unmarshal([]byte(frame[1:]), &v) != nil || len(v) != 2 {
		t.Fatalf("not a close frame: %q", frame)
	}
	code, _ := v[0].(float64)
	reason, _ := v[1].(string)
	return int(code), reason
}

// settle waits until no session is open and the upstream dropped its
// connections, then checks that descriptors came back to fds.
func settle(t *testing.T, p *testProxy, up *upstream, fds int) {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool { return p.h.ActiveSessions() == 0 && p.h.slots.Load() == 0 })
	up.srv.CloseClientConnections()
	sjClient.CloseIdleConnections()
	waitFor(t, 2*time.Second, func() bool { return openFDs(t) <= fds })
}

func TestSockJSOversizedSendBody(t *testing.T) {
	p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxClientMessageBytes = 1000 })
	fds := openFDs(t)
	url := sjSession(p.srv.URL + "/ws")
	sjDo(t, "POST", url+"/xhr", nil, "")
	limit := p.h.sockjs[0].maxSendBody()
	big := `["` + strings.Repeat("x", int(limit)) + `"]`
	for _, tc := range []struct{ path, ctype, body string }{
		{"/xhr_send", "text/plain", big},
		{"/jsonp_send", "application/x-www-form-urlencoded", "d=" + big},
	} {
		if r := sjDo(t, "POST", url+tc.path, map[string]string{"Content-Type": tc.ctype}, tc.body); r.code != 413 {
			t.Errorf("%s: %d %q, want 413", tc.path, r.code, r.body)
		}
	}
	// The refused body is dropped; the session goes on.
	if r := sjDo(t, "POST", url+"/xhr_send", nil, `["ok"]`); r.code != 204 {
		t.Fatalf("send after 413: %d", r.code)
	}
	if got := pollAll(t, url, 1); len(got) != 1 || got[0] != "ok" {
		t.Errorf("got %q", got)
	}
	settle(t, p, up, fds)
}

// A message over MaxClientMessageBytes within an acceptable body reaches
// the session, which ends with 1009 as a WebSocket session does.
func TestSockJSMessageOverLimitIs1009(t *testing.T) {
	t.Run("xhr", func(t *testing.T) {
		p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxClientMessageBytes = 1000 })
		fds := openFDs(t)
		url := sjSession(p.srv.URL + "/ws")
		sjDo(t, "POST", url+"/xhr", nil, "")
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["`+strings.Repeat("x", 2000)+`"]`); r.code != 204 {
			t.Fatalf("send: %d %q", r.code, r.body)
		}
		frames := sjFrames(t, url)
		if code, reason := sjClose(t, frames[len(frames)-1]); code != 1009 || reason == "" {
			t.Errorf("closed with %d %q, want 1009 with a reason", code, reason)
		}
		e := p.waitSessionEnd(t, 5*time.Second)
		if e.ContextMap()["transport"] != "sockjs/xhr" {
			t.Errorf("log line %v", e.ContextMap())
		}
		settle(t, p, up, fds)
	})
	t.Run("websocket", func(t *testing.T) {
		p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxClientMessageBytes = 1000 })
		fds := openFDs(t)
		c := sjDialWS(t, p, p.srv.URL+"/ws")
		readWS(t, c)
		b, _ := json.Marshal([]string{strings.Repeat("x", 2000)})
		c.WriteMessage(websocket.TextMessage, b)
		if code, reason := sjClose(t, readWS(t, c)); code != 1009 || reason == "" {
			t.Errorf("closed with %d %q, want 1009 with a reason", code, reason)
		}
		expectWSEnd(t, c)
		c.Close()
		settle(t, p, up, fds)
	})
	t.Run("websocket frame over the read limit", func(t *testing.T) {
		// A frame larger than any acceptable message is not read at all:
		// the client gets WebSocket close 1009 and the session ends.
		p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxClientMessageBytes = 1000 })
		fds := openFDs(t)
		c := sjDialWS(t, p, p.srv.URL+"/ws")
		readWS(t, c)
		c.WriteMessage(websocket.TextMessage, []byte(`["`+strings.Repeat("x", int(p.h.sockjs[0].maxSendBody()))+`"]`))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1009 {
			t.Errorf("client got %v, want close 1009", err)
		}
		p.waitSessionEnd(t, 5*time.Second)
		c.Close()
		settle(t, p, up, fds)
	})
}

func TestSockJSBadInput(t *testing.T) {
	// Sends are not receiving requests: the session must outlive them.
	p, up := sockjsProxy(t, echo, func(o *Options) { o.SockJS.DisconnectDelay = 2 * time.Second })
	fds := openFDs(t)
	url := sjSession(p.srv.URL + "/ws")
	sjDo(t, "GET", url+"/jsonp?c=cb", nil, "")
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, path, ctype, body string
		code                    int
		text                    string
	}{
		{"broken xhr_send", url + "/xhr_send", "text/plain", `["x`, 400, "Broken JSON encoding."},
		{"not an array of strings", url + "/xhr_send", "text/plain", `[1,2]`, 400, "Broken JSON encoding."},
		{"broken jsonp_send form", url + "/jsonp_send", form, "d=%5B%22x", 400, "Broken JSON encoding."},
		{"broken jsonp_send body", url + "/jsonp_send", "text/plain", `{"a":`, 400, "Broken JSON encoding."},
		{"empty xhr_send", url + "/xhr_send", "text/plain", "", 400, "Payload expected."},
		{"xhr_send to an unknown session", p.srv.URL + "/ws/000/nosuch/xhr_send", "text/plain", `["x"]`, 404, ""},
		{"jsonp_send to an unknown session", p.srv.URL + "/ws/000/nosuch/jsonp_send", form, "d=%5B%22x%22%5D", 404, ""},
	} {
		r := sjDo(t, "POST", tc.path, map[string]string{"Content-Type": tc.ctype}, tc.body)
		if r.code != tc.code || !strings.Contains(r.body, tc.text) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, r.code, r.body, tc.code, tc.text)
		}
	}
	// No session was made by the requests for unknown ids, and the
	// session itself is unharmed.
	if n := p.h.ActiveSessions(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	if r := sjDo(t, "POST", url+"/jsonp_send", map[string]string{"Content-Type": form}, "d=%5B%22y%22%5D"); r.body != "ok" {
		t.Fatalf("send: %q", r.body)
	}
	if r := sjDo(t, "GET", url+"/jsonp?c=cb", nil, ""); r.body != "cb(\"a[\\\"y\\\"]\");\r\n" {
		t.Errorf("poll %q", r.body)
	}
	settle(t, p, up, fds)
}

// MaxConnections counts SockJS sessions: a request that would open one
// more gets 503 and no session; requests of open sessions go on; a
// session that ends gives its slot back.
func TestSockJSMaxConnections(t *testing.T) {
	p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxConnections = 2 })
	fds := openFDs(t)
	base := p.srv.URL + "/ws"
	a, b := sjSession(base), sjSession(base)
	sjDo(t, "POST", a+"/xhr", nil, "")
	ws := sjDialWS(t, p, base)
	readWS(t, ws)
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == 2 })
	for _, tc := range []struct{ method, path string }{
		{"POST", b + "/xhr"}, {"POST", b + "/xhr_streaming"}, {"GET", b + "/eventsource"},
		{"GET", b + "/htmlfile?c=cb"}, {"GET", b + "/jsonp?c=cb"},
	} {
		if r := sjDo(t, tc.method, tc.path, nil, ""); r.code != 503 {
			t.Errorf("%s %s: %d %q, want 503", tc.method, tc.path, r.code, r.body)
		}
	}
	if _, resp, err := (&websocket.Dialer{}).Dial(p.url(strings.TrimPrefix(b, p.srv.URL)+"/websocket"), nil); err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("websocket transport: %v %v, want 503", err, resp)
	}
	if r := sjDo(t, "POST", b+"/xhr_send", nil, `["x"]`); r.code != 404 {
		t.Errorf("the refused session exists: xhr_send %d", r.code)
	}
	// The open sessions are served.
	if r := sjDo(t, "POST", a+"/xhr_send", nil, `["x"]`); r.code != 204 {
		t.Errorf("open session's send: %d", r.code)
	}
	if got := pollAll(t, a, 1); len(got) != 1 {
		t.Errorf("open session's poll: %q", got)
	}
	// The websocket session ends: its slot comes back.
	ws.Close()
	waitFor(t, 5*time.Second, func() bool { return p.h.ActiveSessions() == 1 })
	if r := sjDo(t, "POST", b+"/xhr", nil, ""); r.code != 200 || r.body != "o\n" {
		t.Errorf("after a session ended: %d %q", r.code, r.body)
	}
	settle(t, p, up, fds)
}

// CORS preflights and requests the library refuses open no session, so
// they hold no slot.
func TestSockJSRefusedRequestsHoldNoSlot(t *testing.T) {
	p, up := sockjsProxy(t, echo, func(o *Options) { o.MaxConnections = 1 })
	fds := openFDs(t)
	base := p.srv.URL + "/ws"
	for _, tc := range []struct{ method, path string }{
		{"OPTIONS", "/xhr"}, {"OPTIONS", "/xhr_streaming"}, {"OPTIONS", "/jsonp"},
		{"GET", "/xhr"}, {"GET", "/xhr_streaming"}, {"POST", "/eventsource"}, {"POST", "/htmlfile?c=cb"}, {"POST", "/jsonp?c=cb"},
		{"GET", "/jsonp?c=a-b"}, {"GET", "/htmlfile?c=a-b"},
	} {
		r := sjDo(t, tc.method, sjSession(base)+tc.path, map[string]string{"Origin": "test", "Access-Control-Request-Method": "POST"}, "")
		if r.code >= 500 {
			t.Errorf("%s %s: %d", tc.method, tc.path, r.code)
		}
		if n := p.h.slots.Load(); n != 0 {
			t.Errorf("%s %s: %d slots held", tc.method, tc.path, n)
		}
	}
	if r := sjDo(t, "POST", sjSession(base)+"/xhr", nil, ""); r.code != 200 || r.body != "o\n" {
		t.Errorf("a new session: %d %q", r.code, r.body)
	}
	settle(t, p, up, fds)
}

// A client that opens a session and never comes back is gone after the
// disconnect delay: the broker leg is closed and the slot comes back.
func TestSockJSAbandonedSessionFreesItsSlot(t *testing.T) {
	upClosed := make(chan *websocket.CloseError, 1)
	p, up := sockjsProxy(t, func(c *websocket.Conn) {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		errors.As(err, &ce)
		upClosed <- ce
	}, func(o *Options) { o.MaxConnections = 1 })
	fds := openFDs(t)
	base := p.srv.URL + "/ws"
	start := time.Now()
	if r := sjDo(t, "POST", sjSession(base)+"/xhr", nil, ""); r.body != "o\n" {
		t.Fatalf("open: %q", r.body)
	}
	if r := sjDo(t, "POST", sjSession(base)+"/xhr", nil, ""); r.code != 503 {
		t.Fatalf("second session: %d, want 503", r.code)
	}
	select {
	case ce := <-upClosed:
		if ce == nil || ce.Code != 1011 {
			t.Errorf("broker got %v, want 1011", ce)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broker leg not closed")
	}
	e := p.waitSessionEnd(t, 5*time.Second)
	delay := p.h.opts.SockJS.DisconnectDelay
	if took := time.Since(start); took < delay || took > delay+p.h.opts.CloseTimeout+time.Second {
		t.Errorf("ended after %v; disconnect delay %v", took, delay)
	}
	if e.ContextMap()["closed_by"] != "client" {
		t.Errorf("log line %v", e.ContextMap())
	}
	waitFor(t, 2*time.Second, func() bool { return p.h.slots.Load() == 0 })
	if r := sjDo(t, "POST", sjSession(base)+"/xhr", nil, ""); r.code != 200 {
		t.Errorf("after the abandoned session: %d", r.code)
	}
	settle(t, p, up, fds)
}

// STOMPGATE_STOMP_STRICT applies inside SockJS: a client whose first
// frame is CONNECT is served; one that sends something else gets ERROR
// and c[1002,…].
func TestSockJSStrictSTOMP(t *testing.T) {
	strict := func(o *Options) {
		stompOpts(func(s *STOMPOptions) { s.Strict = true })(o)
		o.SockJS = SockJSOptions{Paths: []string{"/ws"}, UpstreamSuffix: "/websocket", DisconnectDelay: 300 * time.Millisecond, HeartbeatDelay: time.Minute}
	}
	const connect = "CONNECT\naccept-version:1.2\nhost:/\n\n\x00"
	t.Run("xhr CONNECT", func(t *testing.T) {
		up, accept := broker(t)
		p := newProxy(t, up.wsURL(), strict)
		url := sjSession(p.srv.URL + "/ws")
		sjDo(t, "POST", url+"/xhr", nil, "")
		body, _ := json.Marshal([]string{connect})
		if r := sjDo(t, "POST", url+"/xhr_send", nil, string(body)); r.code != 204 {
			t.Fatalf("send %d", r.code)
		}
		b := accept()
		if got := mustMsg(t, b, 2*time.Second); !strings.HasPrefix(got, "CONNECT\n") {
			t.Fatalf("broker got %q", got)
		}
		b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
		if got := pollAll(t, url, 1); len(got) != 1 || !strings.HasPrefix(got[0], "CONNECTED\n") {
			t.Errorf("client got %q", got)
		}
	})
	t.Run("websocket CONNECT", func(t *testing.T) {
		up, accept := broker(t)
		p := newProxy(t, up.wsURL(), strict)
		c := sjDialWS(t, p, p.srv.URL+"/ws")
		readWS(t, c)
		body, _ := json.Marshal([]string{connect})
		c.WriteMessage(websocket.TextMessage, body)
		b := accept()
		mustMsg(t, b, 2*time.Second)
		b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
		if got := readWS(t, c); !strings.HasPrefix(got, `a["CONNECTED\n`) {
			t.Errorf("client got %q", got)
		}
	})
	t.Run("xhr not STOMP", func(t *testing.T) {
		// As sockjs-client does, a poll is pending when the message goes.
		up, _ := broker(t)
		p := newProxy(t, up.wsURL(), strict)
		url := sjSession(p.srv.URL + "/ws")
		sjDo(t, "POST", url+"/xhr", nil, "")
		pending := make(chan sjResp, 1)
		go func() { pending <- sjDo(t, "POST", url+"/xhr", nil, "") }()
		time.Sleep(100 * time.Millisecond)
		sjDo(t, "POST", url+"/xhr_send", nil, `["hello"]`)
		if r := <-pending; !strings.HasPrefix(r.body, `a["ERROR\n`) {
			t.Errorf("pending poll got %q, want an ERROR", r.body)
		}
		frames := sjFrames(t, url)
		if code, reason := sjClose(t, frames[len(frames)-1]); code != 1002 || reason == "" {
			t.Errorf("closed with %d %q, want 1002", code, reason)
		}
	})
	t.Run("xhr not STOMP, no poll pending", func(t *testing.T) {
		// sockjs-go drops messages queued for a session with no receiving
		// request when the session closes: stompgate's close waits until
		// the next poll took the ERROR (libClient.Close).
		up, _ := broker(t)
		p := newProxy(t, up.wsURL(), strict)
		url := sjSession(p.srv.URL + "/ws")
		sjDo(t, "POST", url+"/xhr", nil, "")
		sjDo(t, "POST", url+"/xhr_send", nil, `["hello"]`)
		if frames := sjFrames(t, url); !strings.HasPrefix(frames[0], `a["ERROR\n`) {
			t.Errorf("frames %q, want an ERROR first", frames)
		}
	})
	t.Run("websocket not STOMP", func(t *testing.T) {
		up, _ := broker(t)
		p := newProxy(t, up.wsURL(), strict)
		c := sjDialWS(t, p, p.srv.URL+"/ws")
		readWS(t, c)
		c.WriteMessage(websocket.TextMessage, []byte(`["hello"]`))
		if got := readWS(t, c); !strings.HasPrefix(got, `a["ERROR\n`) {
			t.Errorf("client got %q, want an ERROR", got)
		}
		if code, _ := sjClose(t, readWS(t, c)); code != 1002 {
			t.Errorf("closed with %d, want 1002", code)
		}
		expectWSEnd(t, c)
	})
}
