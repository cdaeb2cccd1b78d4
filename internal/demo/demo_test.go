package demo

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stompgate/stompgate/internal/stomptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func serve(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	d := New(o)
	srv := httptest.NewServer(d)
	t.Cleanup(func() {
		d.Close()
		srv.Close()
	})
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// The page names the admin port, carries the ids the Chromium test reads,
// and loads nothing from elsewhere: the demo runs without a network.
func TestPage(t *testing.T) {
	srv := serve(t, Options{AdminPort: "19095"})
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(body, `data-admin-port="19095"`) {
		t.Errorf("the page does not carry the admin port")
	}
	for _, id := range []string{"transport", "state", "close", "stomp-error", "message-input", "send", "messages",
		"page-hb-sent", "page-hb-received", "sessions", "session-count", "admin-status"} {
		if !strings.Contains(body, `id="`+id+`"`) {
			t.Errorf("no element with id %q", id)
		}
	}
	// The per-session cells get ids hb-<hop>-<row> from the script.
	if !strings.Contains(body, `td.id = "hb-" + hop + "-" + key`) || !strings.Contains(body, `["sent", `) || !strings.Contains(body, `["received", `) {
		t.Errorf("the script no longer names the cells hb-<hop>-sent / -received")
	}
	external := regexp.MustCompile(`(?i)(<script[^>]+src=|<link[^>]+href="(https?:)?//|<img|@import|url\(|https://)`)
	if m := external.FindString(body); m != "" {
		t.Errorf("the page loads something from elsewhere: %q", m)
	}
}

func TestPageEscapesAdminPort(t *testing.T) {
	srv := serve(t, Options{AdminPort: `1"><script>x()</script>`})
	_, body := get(t, srv.URL+"/")
	if strings.Contains(body, `<script>x()`) {
		t.Errorf("AdminPort is not escaped:\n%s", body)
	}
}

func TestUnknownPathIs404(t *testing.T) {
	srv := serve(t, Options{AdminPort: "9095"})
	for _, path := range []string{"/nope", "/ws/x", "/ws/websocket/x", "/sockjs-client/", "/index.html"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
}

// /ws is the broker: what the page does (CONNECT, SUBSCRIBE /topic/demo,
// SEND there) gets the message back, with the broker's heart-beat.
func TestBrokerAtWS(t *testing.T) {
	srv := serve(t, Options{AdminPort: "9095", HeartBeat: [2]time.Duration{2 * time.Second, 2 * time.Second}})
	c := stomptest.Dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", stomptest.Subprotocols("v12.stomp", "v11.stomp"),
		stomptest.Header(http.Header{"Origin": {"http://localhost:8090"}}))
	if c.Conn().Subprotocol() != "v12.stomp" {
		t.Errorf("subprotocol %q", c.Conn().Subprotocol())
	}
	if f := c.Connect("accept-version", "1.2,1.1", "host", "localhost", "heart-beat", "0,0"); f.Headers["version"] != "1.2" {
		t.Fatalf("got %v, want CONNECTED version 1.2", f)
	}
	c.Subscribe("demo-0", "/topic/demo", "ack", "auto")
	c.Send([]byte("SEND\ndestination:/topic/demo\ncontent-type:text/plain;charset=utf-8\ncontent-length:5\n\nhello\x00"))
	if f := c.Expect(5*time.Second, "MESSAGE"); f.Headers["destination"] != "/topic/demo" || string(f.Body) != "hello" {
		t.Fatalf("got %v, want the MESSAGE on /topic/demo", f)
	}
}

// /ws/websocket, where stompgate's SockJS termination dials, is the same
// broker.
func TestBrokerAtWSWebsocket(t *testing.T) {
	srv := serve(t, Options{AdminPort: "9095"})
	c := stomptest.Dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/websocket", stomptest.Subprotocols("v12.stomp"))
	if f := c.Connect("accept-version", "1.2", "host", "localhost", "heart-beat", "0,0"); f.Headers["version"] != "1.2" {
		t.Fatalf("got %v, want CONNECTED version 1.2", f)
	}
}

// The page's SockJS switch loads sockjs-client from the demo, which serves
// it with its licence.
func TestSockJSClientIsServed(t *testing.T) {
	srv := serve(t, Options{AdminPort: "9095"})
	resp, body := get(t, srv.URL+SockJSClientPath)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "/* sockjs-client v1.6.1 | http://sockjs.org | MIT license */") {
		t.Fatalf("GET %s: %s, %.80q", SockJSClientPath, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("Content-Type %q", ct)
	}
	if resp, body := get(t, srv.URL+sockjsClientLicensePath); resp.StatusCode != http.StatusOK || !strings.Contains(body, "The MIT License") {
		t.Errorf("GET %s: %s, %.80q", sockjsClientLicensePath, resp.Status, body)
	}
	_, page := get(t, srv.URL+"/")
	if !strings.Contains(page, `const SOCKJS_CLIENT = "`+SockJSClientPath+`"`) {
		t.Errorf("the page does not load sockjs-client from %s", SockJSClientPath)
	}
}
