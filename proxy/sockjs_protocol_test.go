package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The cases below follow the public SockJS protocol test suite
// (sockjs-protocol 0.3.3), run against stompgate's SockJS endpoint /ws in
// front of a plain WebSocket echo upstream. Where stompgate differs from
// the suite on purpose, or a case does not apply, the test says so and
// asserts what stompgate does instead.

// sjResp is one answered SockJS request.
type sjResp struct {
	code   int
	header http.Header
	body   string
}

// sjDo sends one request; header values "" are sent empty.
func sjDo(t *testing.T, method, url string, header map[string]string, body string) sjResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := sjClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sjResp{resp.StatusCode, resp.Header, string(b)}
}

// sjClient keeps no connection between requests, so that no idle
// connection outlives a test.
var sjClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// sjStream is a streaming SockJS response read piece by piece.
type sjStream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

func sjOpenStream(t *testing.T, method, url string, header map[string]string) *sjStream {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := sjClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	s := &sjStream{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	t.Cleanup(s.close)
	return s
}

// until reads up to and including delim, within a few seconds.
func (s *sjStream) until(delim string) string {
	s.t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for !strings.HasSuffix(b.String(), delim) {
			c, err := s.r.ReadByte()
			if err != nil {
				break
			}
			b.WriteByte(c)
		}
		got <- b.String()
	}()
	select {
	case v := <-got:
		return v
	case <-time.After(5 * time.Second):
		s.close()
		s.t.Fatalf("no %q within 5s", delim)
		return ""
	}
}

// ended reports whether the response ends here (nothing more to read).
func (s *sjStream) ended() bool {
	s.t.Helper()
	done := make(chan error, 1)
	go func() { _, err := s.r.ReadByte(); done <- err }()
	select {
	case err := <-done:
		return errors.Is(err, io.EOF)
	case <-time.After(5 * time.Second):
		s.close()
		<-done
		return false
	}
}

func (s *sjStream) close() { s.resp.Body.Close() }

// sjPending sends a request that waits for an answer (a poll on a quiet
// session) and returns once the server holds it; calling the result
// aborts it, as a network failure would.
func sjPending(t *testing.T, method, url string) (abort func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := sjClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the server has the request
	abort = func() { cancel(); <-done }
	t.Cleanup(abort)
	return abort
}

// goAwayUpstream closes every connection at once with 3000 "Go away!",
// as the suite's "close" service does.
func goAwayUpstream(c *websocket.Conn) {
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(3000, "Go away!"), time.Now().Add(time.Second))
	c.ReadMessage()
}

var sjSessionSeq int

// sjSession is a fresh session URL under base.
func sjSession(base string) string {
	sjSessionSeq++
	return fmt.Sprintf("%s/000/s%d-%d", base, sjSessionSeq, time.Now().UnixNano())
}

func noSpaces(s string) string { return strings.ReplaceAll(s, " ", "") }

const sjNotCached = "no-store, no-cache, must-revalidate, max-age=0"

// checkCORS is the suite's verify_cors for an Origin the client sent.
func checkCORS(t *testing.T, r sjResp, origin string) {
	t.Helper()
	if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
		t.Errorf("Access-Control-Allow-Origin %q, want %q", got, origin)
	}
	if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Access-Control-Allow-Credentials %q, want true", got)
	}
}

// checkOptions is the suite's verify_options: a cacheable preflight answer.
func checkOptions(t *testing.T, url, methods string) {
	t.Helper()
	r := sjDo(t, "OPTIONS", url, map[string]string{"Origin": "test", "Access-Control-Request-Method": methods}, "")
	if r.code != 204 && r.code != 200 {
		t.Fatalf("OPTIONS %s: %d", url, r.code)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "public") || !regexp.MustCompile(`max-age=[1-9][0-9]{6}`).MatchString(cc) {
		t.Errorf("Cache-Control %q", cc)
	}
	if r.header.Get("Expires") == "" {
		t.Error("no Expires")
	}
	if age, _ := strconv.Atoi(r.header.Get("Access-Control-Max-Age")); age <= 1000000 {
		t.Errorf("Access-Control-Max-Age %d", age)
	}
	for _, m := range strings.Split(methods, ",") {
		if !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), strings.TrimSpace(m)) {
			t.Errorf("Access-Control-Allow-Methods %q lacks %s", r.header.Get("Access-Control-Allow-Methods"), m)
		}
	}
	if r.body != "" {
		t.Errorf("body %q", r.body)
	}
	checkCORS(t, r, "test")
}

// pollAll polls session url until want messages came back and returns
// them in order.
func pollAll(t *testing.T, url string, want int) []string {
	t.Helper()
	var got []string
	for i := 0; len(got) < want && i < 20; i++ {
		r := sjDo(t, "POST", url+"/xhr", nil, "")
		if r.code != 200 || !strings.HasPrefix(r.body, "a[") {
			t.Fatalf("poll: %d %q", r.code, r.body)
		}
		var batch []string
		if err := json.Unmarshal([]byte(strings.TrimSuffix(r.body[1:], "\n")), &batch); err != nil {
			t.Fatalf("poll %q: %v", r.body, err)
		}
		got = append(got, batch...)
	}
	return got
}

func TestSockJSProtocolBaseURLGreeting(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	for _, path := range []string{"/ws", "/ws/"} {
		r := sjDo(t, "GET", p.srv.URL+path, nil, "")
		if r.code != 200 || noSpaces(r.header.Get("Content-Type")) != "text/plain;charset=UTF-8" || r.body != "Welcome to SockJS!\n" || r.header.Get("Set-Cookie") != "" {
			t.Errorf("GET %s: %d %q %q", path, r.code, r.header, r.body)
		}
	}
	// The suite wants 404 for other paths under the base URL. stompgate
	// serves only SockJS's own paths and passes every other one to the
	// upstream, which answers it (here 200 "plain <path>").
	for _, suffix := range []string{"/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"} {
		r := sjDo(t, "GET", p.srv.URL+"/ws"+suffix, nil, "")
		if r.code != 200 || r.body != "plain /ws"+suffix {
			t.Errorf("GET /ws%s: %d %q, want the upstream's answer", suffix, r.code, r.body)
		}
	}
}

var sjIframeBody = regexp.MustCompile(`^<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function\(\){SockJS.bootstrap_iframe\(\);};
  </script>
  <script src="([^"]*)"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>$`)

func TestSockJSProtocolIframePage(t *testing.T) {
	const script = "/static/sockjs.min.js"
	p, _ := sockjsProxy(t, echo, func(o *Options) { o.SockJS.ClientScriptURL = script })
	for _, suffix := range []string{"/iframe.html", "/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html", "/iframe-0.1.2abc-dirty.2144.html",
		"/iframe-a.html?t=1234", "/iframe-0.1.2.html?t=123414", "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123"} {
		r := sjDo(t, "GET", p.srv.URL+"/ws"+suffix, nil, "")
		if r.code != 200 || noSpaces(r.header.Get("Content-Type")) != "text/html;charset=UTF-8" {
			t.Errorf("%s: %d %q", suffix, r.code, r.header.Get("Content-Type"))
			continue
		}
		cc := r.header.Get("Cache-Control")
		if !strings.Contains(cc, "public") || !regexp.MustCompile(`max-age=[1-9][0-9]{6}`).MatchString(cc) || r.header.Get("Expires") == "" || r.header.Get("ETag") == "" || r.header.Get("Last-Modified") != "" || r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s: caching headers %q", suffix, r.header)
		}
		if m := sjIframeBody.FindStringSubmatch(strings.TrimSpace(r.body)); m == nil || m[1] != script {
			t.Errorf("%s: body %q", suffix, r.body)
		}
	}
	// Malformed iframe URLs are not SockJS's: the upstream answers them.
	for _, suffix := range []string{"/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html"} {
		if r := sjDo(t, "GET", p.srv.URL+"/ws"+suffix, nil, ""); r.body != "plain /ws"+suffix {
			t.Errorf("%s: %d %q, want the upstream's answer", suffix, r.code, r.body)
		}
	}
	// Cacheability: a stable ETag, and 304 for If-None-Match.
	r1 := sjDo(t, "GET", p.srv.URL+"/ws/iframe.html", nil, "")
	r2 := sjDo(t, "GET", p.srv.URL+"/ws/iframe.html", nil, "")
	if etag := r1.header.Get("ETag"); etag == "" || etag != r2.header.Get("ETag") {
		t.Fatalf("ETags %q %q", etag, r2.header.Get("ETag"))
	}
	r := sjDo(t, "GET", p.srv.URL+"/ws/iframe.html", map[string]string{"If-None-Match": r1.header.Get("ETag")}, "")
	if r.code != 304 || r.header.Get("Content-Type") != "" || r.body != "" {
		t.Errorf("If-None-Match: %d %q %q", r.code, r.header.Get("Content-Type"), r.body)
	}
}

func TestSockJSProtocolInfo(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	info := p.srv.URL + "/ws/info"
	t.Run("basic", func(t *testing.T) {
		r := sjDo(t, "GET", info, map[string]string{"Origin": "test"}, "")
		if r.code != 200 || noSpaces(r.header.Get("Content-Type")) != "application/json;charset=UTF-8" || r.header.Get("Set-Cookie") != "" {
			t.Fatalf("%d %q", r.code, r.header)
		}
		if cc := r.header.Get("Cache-Control"); cc != sjNotCached || r.header.Get("Expires") != "" || r.header.Get("Last-Modified") != "" {
			t.Errorf("caching headers %q", r.header)
		}
		checkCORS(t, r, "test")
		var data map[string]any
		if err := json.Unmarshal([]byte(r.body), &data); err != nil {
			t.Fatal(err)
		}
		origins, _ := data["origins"].([]any)
		entropy, _ := data["entropy"].(float64)
		if data["websocket"] != true || data["cookie_needed"] != false || len(origins) != 1 || origins[0] != "*:*" || entropy != float64(int64(entropy)) {
			t.Errorf("info %s", r.body)
		}
	})
	t.Run("entropy", func(t *testing.T) {
		var e [2]any
		for i := range e {
			var data map[string]any
			json.Unmarshal([]byte(sjDo(t, "GET", info, nil, "").body), &data)
			e[i] = data["entropy"]
		}
		if e[0] == nil || e[0] == e[1] {
			t.Errorf("entropy %v then %v", e[0], e[1])
		}
	})
	t.Run("options", func(t *testing.T) { checkOptions(t, info, "OPTIONS, GET") })
	t.Run("options null origin", func(t *testing.T) {
		r := sjDo(t, "OPTIONS", info, map[string]string{"Origin": "null", "Access-Control-Request-Method": "POST"}, "")
		if (r.code != 204 && r.code != 200) || r.body != "" || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%d %q %q", r.code, r.header, r.body)
		}
		// The suite wants no Access-Control-Allow-Credentials with "*";
		// sockjs-go sends "true", which browsers ignore for "*".
	})
}

func TestSockJSProtocolSessionURLs(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	for _, part := range []string{"/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"} {
		if r := sjDo(t, "POST", base+part+"/xhr", nil, ""); r.code != 200 || r.body != "o\n" {
			t.Errorf("%s: %d %q", part, r.code, r.body)
		}
	}
	// Invalid session paths are not SockJS's: the upstream answers them.
	for _, suffix := range []string{"//", "/a./a", "/a/a.", "/./.", "/", "///"} {
		for _, method := range []string{"GET", "POST"} {
			path := "/ws" + suffix + "/xhr"
			if r := sjDo(t, method, p.srv.URL+path, nil, ""); r.body != "plain "+path {
				t.Errorf("%s %s: %d %q, want the upstream's answer", method, path, r.code, r.body)
			}
		}
	}
	// The server id is the load balancer's: the session is the same.
	id := fmt.Sprintf("ignoring-%d", time.Now().UnixNano())
	if r := sjDo(t, "POST", base+"/000/"+id+"/xhr", nil, ""); r.body != "o\n" {
		t.Fatalf("open: %q", r.body)
	}
	if r := sjDo(t, "POST", base+"/000/"+id+"/xhr_send", nil, `["a"]`); r.code != 204 || r.body != "" {
		t.Fatalf("send: %d %q", r.code, r.body)
	}
	if r := sjDo(t, "POST", base+"/999/"+id+"/xhr", nil, ""); r.code != 200 || r.body != "a[\"a\"]\n" {
		t.Errorf("poll via another server id: %d %q", r.code, r.body)
	}
}

func TestSockJSProtocolFraming(t *testing.T) {
	t.Run("simple session", func(t *testing.T) {
		p, _ := sockjsProxy(t, echo, nil)
		url := sjSession(p.srv.URL + "/ws")
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.code != 200 || r.body != "o\n" {
			t.Fatalf("open: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["a"]`); r.code != 204 || r.body != "" {
			t.Fatalf("send: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.code != 200 || r.body != "a[\"a\"]\n" {
			t.Fatalf("poll: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", p.srv.URL+"/ws/000/bad_session/xhr_send", nil, `["a"]`); r.code != 404 {
			t.Errorf("send to an unknown session: %d", r.code)
		}
		// A second receiving request on the session gets 2010.
		cancel := sjPending(t, "POST", url+"/xhr")
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.code != 200 || r.body != "c[2010,\"Another connection still open\"]\n" {
			t.Errorf("second receiver: %d %q", r.code, r.body)
		}
		cancel()
	})
	t.Run("close session", func(t *testing.T) {
		// The upstream closes with 3000 "Go away!": the client gets that
		// close frame, and again on each request until the session is gone.
		p, _ := sockjsProxy(t, goAwayUpstream, nil)
		url := sjSession(p.srv.URL + "/ws")
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.body != "o\n" {
			t.Fatalf("open: %q", r.body)
		}
		for i := 0; i < 2; i++ {
			if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.code != 200 || r.body != "c[3000,\"Go away!\"]\n" {
				t.Errorf("poll %d: %d %q", i, r.code, r.body)
			}
		}
	})
}

// sjDialWS opens SockJS's websocket transport of a fresh session.
func sjDialWS(t *testing.T, p *testProxy, base string) *websocket.Conn {
	t.Helper()
	c := dial(t, p.url(strings.TrimPrefix(sjSession(base), p.srv.URL)+"/websocket"), nil)
	return c
}

func readWS(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// expectWSEnd reads until the connection ends, which it must within 5s.
func expectWSEnd(t *testing.T, c *websocket.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err == nil {
			t.Logf("then %q", b)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open")
		}
		return
	}
}

func TestSockJSProtocolWebsocketHTTPErrors(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	url := p.srv.URL + "/ws/0/0/websocket"
	// Plain GET and a Connection other than Upgrade are refused with 400
	// (gorilla's wording, not the suite's 'Can "Upgrade" only to
	// "WebSocket".'), before any session or upstream connection.
	for _, h := range []map[string]string{nil, {"Upgrade": "WebSocket", "Connection": "close"}} {
		if r := sjDo(t, "GET", url, h, ""); r.code != 400 {
			t.Errorf("GET %v: %d %q", h, r.code, r.body)
		}
	}
	// POST: gorilla answers 405 with a body and no Allow header, where
	// the suite wants an empty 405 with Allow (or 400 when the
	// upgrade headers are missing, as gorilla checks those first).
	for _, h := range []map[string]string{{"Upgrade": "WebSocket", "Connection": "Upgrade"}, nil} {
		if r := sjDo(t, "POST", url, h, ""); r.code != 405 && r.code != 400 {
			t.Errorf("POST %v: %d %q", h, r.code, r.body)
		}
	}
	if n := p.h.ActiveSessions(); n != 0 || p.h.slots.Load() != 0 {
		t.Errorf("%d sessions, %d slots held after refused handshakes", n, p.h.slots.Load())
	}
}

func TestSockJSProtocolWebsocket(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	t.Run("transport", func(t *testing.T) {
		c := sjDialWS(t, p, base)
		if got := readWS(t, c); got != "o" {
			t.Fatalf("open %q", got)
		}
		c.WriteMessage(websocket.TextMessage, nil) // ignored
		c.WriteMessage(websocket.TextMessage, []byte(`["a"]`))
		if got := readWS(t, c); got != `a["a"]` {
			t.Fatalf("echo %q", got)
		}
		// A single JSON string is a message too (sockjs-node accepts it).
		c.WriteMessage(websocket.TextMessage, []byte(`"b"`))
		if got := readWS(t, c); got != `a["b"]` {
			t.Fatalf("echo %q", got)
		}
	})
	t.Run("close", func(t *testing.T) {
		pc, _ := sockjsProxy(t, goAwayUpstream, nil)
		c := sjDialWS(t, pc, pc.srv.URL+"/ws")
		if got := readWS(t, c); got != "o" {
			t.Fatalf("open %q", got)
		}
		if got := readWS(t, c); got != `c[3000,"Go away!"]` {
			t.Fatalf("close frame %q", got)
		}
		expectWSEnd(t, c)
	})
	t.Run("headers sanity", func(t *testing.T) {
		// Only RFC 6455 (version 13) is served; hybi-07/08 (7, 8) are
		// refused with 400 by gorilla: no browser in use speaks them.
		for _, tc := range []struct {
			version, connection string
			want                int
		}{{"13", "Upgrade", 101}, {"13", "keep-alive, Upgrade", 101}, {"8", "Upgrade", 400}, {"7", "keep-alive, Upgrade", 400}} {
			conn, err := net.Dial("tcp", p.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET %s/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: %s\r\nSec-WebSocket-Version: %s\r\nSec-WebSocket-Origin: http://asd\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
				strings.TrimPrefix(sjSession("/ws"), ""), tc.connection, tc.version)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("version %s, Connection %q: %d, want %d", tc.version, tc.connection, resp.StatusCode, tc.want)
			}
			if tc.want == 101 && (resp.Header.Get("Sec-Websocket-Accept") != "HSmrc0sMlYUkAGmm5OPpG2HaGWk=" ||
				strings.ToLower(resp.Header.Get("Connection")) != "upgrade" || strings.ToLower(resp.Header.Get("Upgrade")) != "websocket" || resp.Header.Get("Content-Length") != "") {
				t.Errorf("101 headers %q", resp.Header)
			}
			resp.Body.Close()
			conn.Close()
		}
	})
	t.Run("broken json", func(t *testing.T) {
		c := sjDialWS(t, p, base)
		readWS(t, c)
		c.WriteMessage(websocket.TextMessage, []byte(`["a`))
		if got := readWS(t, c); got != `c[1002,"Broken JSON encoding."]` {
			t.Errorf("got %q", got)
		}
		expectWSEnd(t, c)
	})
	t.Run("reuse session id", func(t *testing.T) {
		// The websocket transport's session is its connection: two at once
		// may share an id, and an id may be used again.
		url := p.url(strings.TrimPrefix(sjSession(base), p.srv.URL) + "/websocket")
		c1, c2 := dial(t, url, nil), dial(t, url, nil)
		readWS(t, c1)
		readWS(t, c2)
		c1.WriteMessage(websocket.TextMessage, []byte(`["a"]`))
		c2.WriteMessage(websocket.TextMessage, []byte(`["b"]`))
		if a, b := readWS(t, c1), readWS(t, c2); a != `a["a"]` || b != `a["b"]` {
			t.Errorf("got %q and %q", a, b)
		}
		c1.Close()
		c2.Close()
		c3 := dial(t, url, nil)
		readWS(t, c3)
		c3.WriteMessage(websocket.TextMessage, []byte(`["c"]`))
		if got := readWS(t, c3); got != `a["c"]` {
			t.Errorf("reused id: %q", got)
		}
	})
}

func TestSockJSProtocolXhrPolling(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	t.Run("options", func(t *testing.T) {
		for _, suffix := range []string{"/xhr", "/xhr_send"} {
			checkOptions(t, base+"/abc/abc"+suffix, "OPTIONS, POST")
		}
	})
	t.Run("transport", func(t *testing.T) {
		url := sjSession(base)
		origin := map[string]string{"Origin": "test"}
		r := sjDo(t, "POST", url+"/xhr", origin, "")
		if r.code != 200 || r.body != "o\n" || noSpaces(r.header.Get("Content-Type")) != "application/javascript;charset=UTF-8" || r.header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("open: %d %q %q", r.code, r.header, r.body)
		}
		checkCORS(t, r, "test")
		r = sjDo(t, "POST", url+"/xhr_send", origin, `["x"]`)
		if r.code != 204 || r.body != "" || r.header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("send: %d %q %q", r.code, r.header, r.body)
		}
		// The suite wants Content-Type text/plain on the 204; net/http
		// drops it from 204 answers.
		checkCORS(t, r, "test")
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.body != "a[\"x\"]\n" {
			t.Errorf("poll: %q", r.body)
		}
	})
	t.Run("invalid session", func(t *testing.T) {
		if r := sjDo(t, "POST", sjSession(base)+"/xhr_send", nil, `["x"]`); r.code != 404 {
			t.Errorf("%d %q", r.code, r.body)
		}
	})
	t.Run("invalid json", func(t *testing.T) {
		// The suite says 500; stompgate (and sockjs-go) answer 400, which
		// sockjs-client treats the same (a failed send).
		url := sjSession(base)
		sjDo(t, "POST", url+"/xhr", nil, "")
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["x`); r.code != 400 || !strings.Contains(r.body, "Broken JSON encoding.") {
			t.Errorf("broken: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", url+"/xhr_send", nil, ""); r.code != 400 || !strings.Contains(r.body, "Payload expected.") {
			t.Errorf("empty: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["a"]`); r.code != 204 {
			t.Errorf("send: %d %q", r.code, r.body)
		}
		if r := sjDo(t, "POST", url+"/xhr", nil, ""); r.body != "a[\"a\"]\n" {
			t.Errorf("poll: %q", r.body)
		}
	})
	t.Run("content types", func(t *testing.T) {
		url := sjSession(base)
		sjDo(t, "POST", url+"/xhr", nil, "")
		ctypes := []string{"text/plain", "T", "application/json", "application/xml", "", "application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml"}
		for _, ct := range ctypes {
			if r := sjDo(t, "POST", url+"/xhr_send", map[string]string{"Content-Type": ct}, `["a"]`); r.code != 204 || r.body != "" {
				t.Errorf("%q: %d %q", ct, r.code, r.body)
			}
		}
		// Each message makes its own round trip through the upstream, so
		// they may come back over more than one poll.
		if got := pollAll(t, url, len(ctypes)); strings.Join(got, "") != strings.Repeat("a", len(ctypes)) {
			t.Errorf("got %q", got)
		}
	})
	t.Run("request headers cors", func(t *testing.T) {
		for _, tc := range []struct{ req, want string }{{"a, b, c", "a, b, c"}, {"", ""}, {"-", ""}} {
			h := map[string]string{"Origin": "test", "Access-Control-Request-Method": "POST"}
			if tc.req != "-" {
				h["Access-Control-Request-Headers"] = tc.req
			}
			r := sjDo(t, "OPTIONS", sjSession(base)+"/xhr", h, "")
			if r.code != 204 && r.code != 200 {
				t.Fatalf("%d", r.code)
			}
			checkCORS(t, r, "test")
			if got := r.header.Get("Access-Control-Allow-Headers"); got != tc.want {
				t.Errorf("request headers %q: allowed %q", tc.req, got)
			}
		}
	})
}

func TestSockJSProtocolXhrStreaming(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	t.Run("options", func(t *testing.T) { checkOptions(t, base+"/abc/abc/xhr_streaming", "OPTIONS, POST") })
	t.Run("transport", func(t *testing.T) {
		url := sjSession(base)
		s := sjOpenStream(t, "POST", url+"/xhr_streaming", map[string]string{"Origin": "test"})
		r := sjResp{s.resp.StatusCode, s.resp.Header, ""}
		if r.code != 200 || noSpaces(r.header.Get("Content-Type")) != "application/javascript;charset=UTF-8" || r.header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("%d %q", r.code, r.header)
		}
		checkCORS(t, r, "test")
		if got := s.until("\n"); got != strings.Repeat("h", 2048)+"\n" {
			t.Fatalf("prelude %q", got)
		}
		if got := s.until("\n"); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["x"]`); r.code != 204 {
			t.Fatalf("send %d", r.code)
		}
		if got := s.until("\n"); got != "a[\"x\"]\n" {
			t.Errorf("message %q", got)
		}
	})
	t.Run("response limit", func(t *testing.T) {
		// stompgate's limit is sockjs's default, 128 KiB (the suite's test
		// server has 4 KiB): 4 KiB messages end the response after 32.
		url := sjSession(base)
		s := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		s.until("\n")
		if got := s.until("\n"); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		msg := `"` + strings.Repeat("x", 4096) + `"`
		for i := 0; i < 32; i++ {
			if r := sjDo(t, "POST", url+"/xhr_send", nil, "["+msg+"]"); r.code != 204 {
				t.Fatalf("send %d: %d", i, r.code)
			}
			if got := s.until("\n"); got != "a["+msg+"]\n" {
				t.Fatalf("message %d: %d bytes", i, len(got))
			}
		}
		if !s.ended() {
			t.Fatal("response not ended after 128 KiB")
		}
		// The session goes on in a new request.
		s2 := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		s2.until("\n")
		sjDo(t, "POST", url+"/xhr_send", nil, `["y"]`)
		if got := s2.until("\n"); got != "a[\"y\"]\n" {
			t.Errorf("next response %q", got)
		}
	})
}

func TestSockJSProtocolEventSource(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	t.Run("transport", func(t *testing.T) {
		url := sjSession(base)
		s := sjOpenStream(t, "GET", url+"/eventsource", nil)
		if s.resp.StatusCode != 200 || noSpaces(s.resp.Header.Get("Content-Type")) != "text/event-stream;charset=UTF-8" || s.resp.Header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("%d %q", s.resp.StatusCode, s.resp.Header)
		}
		if got := s.until("\r\n"); got != "\r\n" {
			t.Fatalf("prelude %q", got)
		}
		if got := s.until("\r\n\r\n"); got != "data: o\r\n\r\n" {
			t.Fatalf("open %q", got)
		}
		sjDo(t, "POST", url+"/xhr_send", nil, `["x"]`)
		if got := s.until("\r\n\r\n"); got != "data: a[\"x\"]\r\n\r\n" {
			t.Errorf("message %q", got)
		}
		if r := sjDo(t, "POST", url+"/xhr_send", nil, `["  \u0000\n\r "]`); r.code != 204 {
			t.Fatalf("send %d", r.code)
		}
		if got := s.until("\r\n\r\n"); got != `data: a["  \u0000\n\r "]`+"\r\n\r\n" {
			t.Errorf("escaped message %q", got)
		}
	})
	t.Run("response limit", func(t *testing.T) {
		url := sjSession(base)
		s := sjOpenStream(t, "GET", url+"/eventsource", nil)
		s.until("\r\n")
		s.until("\r\n\r\n")
		msg := `"` + strings.Repeat("x", 128<<10) + `"`
		sjDo(t, "POST", url+"/xhr_send", nil, "["+msg+"]")
		if got := s.until("\r\n\r\n"); got != "data: a["+msg+"]\r\n\r\n" {
			t.Fatalf("message: %d bytes", len(got))
		}
		if !s.ended() {
			t.Error("response not ended after 128 KiB")
		}
	})
}

var sjHtmlfileHead = `<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.callback;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>`

func TestSockJSProtocolHtmlFile(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	t.Run("transport", func(t *testing.T) {
		url := sjSession(base)
		s := sjOpenStream(t, "GET", url+"/htmlfile?c=%63allback", nil)
		if s.resp.StatusCode != 200 || noSpaces(s.resp.Header.Get("Content-Type")) != "text/html;charset=UTF-8" || s.resp.Header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("%d %q", s.resp.StatusCode, s.resp.Header)
		}
		if head := s.until("\r\n\r\n"); strings.TrimSpace(head) != sjHtmlfileHead || len(head) <= 1024 {
			t.Fatalf("head (%d bytes) %q", len(head), head)
		}
		if got := s.until("</script>\r\n"); got != "<script>\np(\"o\");\n</script>\r\n" {
			t.Fatalf("open %q", got)
		}
		sjDo(t, "POST", url+"/xhr_send", nil, `["x"]`)
		if got := s.until("</script>\r\n"); got != "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n" {
			t.Errorf("message %q", got)
		}
	})
	t.Run("no callback", func(t *testing.T) {
		// The suite says 500; sockjs-go answers 400. Either way no session.
		p, _ := sockjsProxy(t, echo, nil)
		r := sjDo(t, "GET", p.srv.URL+"/ws/a/a/htmlfile", nil, "")
		if r.code != 400 || !strings.Contains(r.body, `"callback" parameter required`) {
			t.Errorf("%d %q", r.code, r.body)
		}
		if p.h.slots.Load() != 0 {
			t.Errorf("%d slots held", p.h.slots.Load())
		}
	})
	t.Run("response limit", func(t *testing.T) {
		url := sjSession(base)
		s := sjOpenStream(t, "GET", url+"/htmlfile?c=callback", nil)
		s.until("\r\n\r\n")
		s.until("</script>\r\n")
		msg := strings.Repeat("x", 128<<10)
		sjDo(t, "POST", url+"/xhr_send", nil, `["`+msg+`"]`)
		if got := s.until("</script>\r\n"); got != "<script>\np(\"a[\\\""+msg+"\\\"]\");\n</script>\r\n" {
			t.Fatalf("message: %d bytes", len(got))
		}
		if !s.ended() {
			t.Error("response not ended after 128 KiB")
		}
	})
}

func TestSockJSProtocolJsonPolling(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	base := p.srv.URL + "/ws"
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	t.Run("transport", func(t *testing.T) {
		url := sjSession(base)
		r := sjDo(t, "GET", url+"/jsonp?c=%63allback", nil, "")
		if r.code != 200 || noSpaces(r.header.Get("Content-Type")) != "application/javascript;charset=UTF-8" || r.header.Get("Cache-Control") != sjNotCached || r.body != "callback(\"o\");\r\n" {
			t.Fatalf("open: %d %q %q", r.code, r.header, r.body)
		}
		r = sjDo(t, "POST", url+"/jsonp_send", form, "d=%5B%22x%22%5D")
		if r.code != 200 || r.body != "ok" || noSpaces(r.header.Get("Content-Type")) != "text/plain;charset=UTF-8" || r.header.Get("Cache-Control") != sjNotCached {
			t.Fatalf("send: %d %q %q", r.code, r.header, r.body)
		}
		if r := sjDo(t, "GET", url+"/jsonp?c=%63allback", nil, ""); r.body != "callback(\"a[\\\"x\\\"]\");\r\n" {
			t.Errorf("poll %q", r.body)
		}
	})
	t.Run("no callback", func(t *testing.T) {
		r := sjDo(t, "GET", base+"/a/a/jsonp", nil, "")
		if r.code != 500 || !strings.Contains(r.body, `"callback" parameter required`) {
			t.Errorf("%d %q", r.code, r.body)
		}
	})
	t.Run("invalid json", func(t *testing.T) {
		// 400 where the suite says 500, as for xhr_send.
		url := sjSession(base)
		if r := sjDo(t, "GET", url+"/jsonp?c=x", nil, ""); r.body != "x(\"o\");\r\n" {
			t.Fatalf("open %q", r.body)
		}
		if r := sjDo(t, "POST", url+"/jsonp_send", form, "d=%5B%22x"); r.code != 400 || !strings.Contains(r.body, "Broken JSON encoding.") {
			t.Errorf("broken: %d %q", r.code, r.body)
		}
		for _, data := range []string{"", "d=", "p=p"} {
			if r := sjDo(t, "POST", url+"/jsonp_send", form, data); r.code != 400 || !strings.Contains(r.body, "Payload expected.") {
				t.Errorf("%q: %d %q", data, r.code, r.body)
			}
		}
		if r := sjDo(t, "POST", url+"/jsonp_send", form, "d=%5B%22b%22%5D"); r.body != "ok" {
			t.Errorf("send %q", r.body)
		}
		if r := sjDo(t, "GET", url+"/jsonp?c=x", nil, ""); r.body != "x(\"a[\\\"b\\\"]\");\r\n" {
			t.Errorf("poll %q", r.body)
		}
	})
	t.Run("content types", func(t *testing.T) {
		url := sjSession(base)
		sjDo(t, "GET", url+"/jsonp?c=x", nil, "")
		if r := sjDo(t, "POST", url+"/jsonp_send", form, "d=%5B%22abc%22%5D"); r.body != "ok" {
			t.Errorf("form %q", r.body)
		}
		if r := sjDo(t, "POST", url+"/jsonp_send", map[string]string{"Content-Type": "text/plain"}, `["%61bc"]`); r.body != "ok" {
			t.Errorf("body %q", r.body)
		}
		var got []string
		for i := 0; len(got) < 2 && i < 10; i++ {
			r := sjDo(t, "GET", url+"/jsonp?c=x", nil, "")
			var frame string
			if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(r.body, "x("), ");\r\n")), &frame); err != nil || !strings.HasPrefix(frame, "a") {
				t.Fatalf("poll %q", r.body)
			}
			var batch []string
			json.Unmarshal([]byte(frame[1:]), &batch)
			got = append(got, batch...)
		}
		if strings.Join(got, ",") != "abc,%61bc" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("close", func(t *testing.T) {
		pc, _ := sockjsProxy(t, goAwayUpstream, nil)
		url := sjSession(pc.srv.URL + "/ws")
		if r := sjDo(t, "GET", url+"/jsonp?c=x", nil, ""); r.body != "x(\"o\");\r\n" {
			t.Fatalf("open %q", r.body)
		}
		for i := 0; i < 2; i++ {
			if r := sjDo(t, "GET", url+"/jsonp?c=x", nil, ""); r.body != "x(\"c[3000,\\\"Go away!\\\"]\");\r\n" {
				t.Errorf("poll %d %q", i, r.body)
			}
		}
	})
}

// JSESSIONID cookies are off: stompgate sets no cookie, and /info says
// none is needed. Sticky sessions key on the /<server>/<session>/ path or
// a cookie the load balancer sets (docs/deploy).
func TestSockJSProtocolJsessionIDCookieOff(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	r := sjDo(t, "GET", p.srv.URL+"/ws/info", nil, "")
	if r.header.Get("Set-Cookie") != "" || !strings.Contains(r.body, `"cookie_needed":false`) {
		t.Errorf("info: %q %q", r.header, r.body)
	}
	url := sjSession(p.srv.URL + "/ws")
	for _, path := range []string{"/xhr", "/xhr_send"} {
		if r := sjDo(t, "POST", url+path, map[string]string{"Cookie": "JSESSIONID=abcdef"}, `["x"]`); r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s sets %q", path, r.header.Get("Set-Cookie"))
		}
	}
}

// RawWebsocket: stompgate does not serve SockJS's raw /websocket entry
// point; <prefix>/websocket is proxied to the upstream, where Spring
// serves its raw STOMP endpoint.
func TestSockJSProtocolRawWebsocketIsProxied(t *testing.T) {
	p, up := sockjsProxy(t, echo, nil)
	c := dial(t, p.url("/ws/websocket"), nil)
	c.WriteMessage(websocket.TextMessage, []byte("Hello world!\uffff"))
	if got := readWS(t, c); got != "Hello world!\uffff" {
		t.Errorf("echo %q", got)
	}
	up.mu.Lock()
	path := up.lastReq.URL.Path
	up.mu.Unlock()
	if path != "/ws/websocket" {
		t.Errorf("upstream saw %s", path)
	}
	c.Close()
	if e := p.waitSessionEnd(t, 5*time.Second); e.ContextMap()["transport"] != "websocket" {
		t.Errorf("transport %v", e.ContextMap()["transport"])
	}
}

// JSONEncoding: any string survives the round trip. Go's encoder escapes
// fewer characters than the suite's server_killer list (it sends U+200C,
// U+FFF0 and the like verbatim, as valid JSON); sockjs-client decodes
// either.
func TestSockJSProtocolJSONEncoding(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	var b strings.Builder
	for _, rg := range [][2]rune{{0x01, 0x1f}, {0x7f, 0x9f}, {0x200c, 0x200f}, {0x2028, 0x202f}, {0x2060, 0x206f}, {0x0600, 0x0604}, {0xfff0, 0xffff}} {
		for r := rg[0]; r <= rg[1]; r++ {
			b.WriteRune(r)
		}
	}
	want := b.String()
	url := sjSession(p.srv.URL + "/ws")
	sjDo(t, "POST", url+"/xhr", nil, "")
	payload, _ := json.Marshal([]string{want})
	if r := sjDo(t, "POST", url+"/xhr_send", nil, string(payload)); r.code != 204 {
		t.Fatalf("send %d %q", r.code, r.body)
	}
	if got := pollAll(t, url, 1); len(got) != 1 || got[0] != want {
		t.Errorf("round trip changed the string")
	}
}

func TestSockJSProtocolHandlingClose(t *testing.T) {
	t.Run("close frame", func(t *testing.T) {
		p, _ := sockjsProxy(t, goAwayUpstream, nil)
		url := sjSession(p.srv.URL + "/ws")
		r1 := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		r1.until("\n")
		if got := r1.until("\n"); got != "o\n" {
			t.Fatalf("open %q", got)
		}
		if got := r1.until("\n"); got != "c[3000,\"Go away!\"]\n" {
			t.Fatalf("close %q", got)
		}
		r2 := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		r2.until("\n")
		if got := r2.until("\n"); got != "c[3000,\"Go away!\"]\n" {
			t.Errorf("second request %q", got)
		}
		if !r1.ended() || !r2.ended() {
			t.Error("responses not ended after the close frame")
		}
	})
	t.Run("close request", func(t *testing.T) {
		p, _ := sockjsProxy(t, echo, nil)
		url := sjSession(p.srv.URL + "/ws")
		r1 := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		r1.until("\n")
		r1.until("\n")
		r2 := sjOpenStream(t, "POST", url+"/xhr_streaming", nil)
		r2.until("\n")
		if got := r2.until("\n"); got != "c[2010,\"Another connection still open\"]\n" {
			t.Errorf("second receiver %q", got)
		}
		if !r2.ended() {
			t.Error("second response not ended")
		}
	})
	for _, transport := range []string{"xhr_streaming", "xhr"} {
		t.Run("abort "+transport, func(t *testing.T) {
			// A receiving request cut by the network ends the session (the
			// broker leg goes too); the next request opens a new one.
			p, _ := sockjsProxy(t, echo, nil)
			url := sjSession(p.srv.URL + "/ws")
			if transport == "xhr" {
				sjDo(t, "POST", url+"/xhr", nil, "")
			}
			if transport == "xhr_streaming" {
				r1 := sjOpenStream(t, "POST", url+"/"+transport, nil)
				r1.until("\n")
				r1.until("\n")
				r1.close()
			} else {
				sjPending(t, "POST", url+"/xhr")()
			}
			p.waitSessionEnd(t, 5*time.Second)
			r3 := sjOpenStream(t, "POST", url+"/"+transport, nil)
			if transport == "xhr_streaming" {
				r3.until("\n")
			}
			if got := r3.until("\n"); got != "o\n" && got != "c[1002,\"Connection interrupted\"]\n" {
				t.Errorf("after the abort %q", got)
			}
		})
	}
}

// Http10 and Http11: the greeting over one connection (keep-alive), and
// a streaming response closed by the session's end.
func TestSockJSProtocolHTTP10And11(t *testing.T) {
	p, _ := sockjsProxy(t, echo, nil)
	conn, err := net.Dial("tcp", p.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1", "HTTP/1.1"} {
		fmt.Fprintf(conn, "GET /ws %s\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n", proto)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "Welcome to SockJS!\n" || resp.Header.Get("Transfer-Encoding") != "" || resp.ContentLength != 19 {
			t.Errorf("%s: %d %q %q", proto, resp.StatusCode, resp.Header, body)
		}
		if c := strings.ToLower(resp.Header.Get("Connection")); c != "keep-alive" && c != "" {
			t.Errorf("%s: Connection %q", proto, c)
		}
	}

	pc, _ := sockjsProxy(t, goAwayUpstream, nil)
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
		conn, err := net.Dial("tcp", pc.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "POST %s/xhr_streaming %s\r\nHost: x\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", sjSession("/ws"), proto)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "" || (proto == "HTTP/1.0") != (len(resp.TransferEncoding) == 0) {
			t.Errorf("%s: %d %q %v", proto, resp.StatusCode, resp.Header, resp.TransferEncoding)
		}
		body, _ := io.ReadAll(resp.Body)
		if want := strings.Repeat("h", 2048) + "\no\nc[3000,\"Go away!\"]\n"; string(body) != want {
			t.Errorf("%s: body %q", proto, body)
		}
	}
}
