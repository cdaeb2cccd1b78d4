package springbroker

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestOtherPathsAre404(t *testing.T) {
	e := newEnv(t, Config{})
	resp, err := http.Get(e.srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	resp, err = http.Get(e.srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET on the endpoint: status %d", resp.StatusCode)
	}
}

// AbstractHandshakeHandler.selectProtocol: first supported protocol in the
// client's order.
func TestSubprotocolEcho(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		offer []string
		want  string
	}{
		{[]string{"v12.stomp", "v11.stomp", "v10.stomp"}, "v12.stomp"},
		{[]string{"v10.stomp", "v11.stomp", "v12.stomp"}, "v10.stomp"},
		{[]string{"mqtt", "v11.stomp"}, "v11.stomp"},
		{[]string{"mqtt"}, ""},
		{nil, ""},
	}
	for _, tc := range cases {
		c := e.dial(tc.offer...)
		if got := c.conn.Subprotocol(); got != tc.want {
			t.Errorf("offer %v: got %q, want %q", tc.offer, got, tc.want)
		}
		ev := e.rec.wait(t, "open", kindIs(c.sid, EventOpen))
		if ev.Subprotocol != tc.want {
			t.Errorf("event subprotocol %q", ev.Subprotocol)
		}
		c.shutdown()
	}
}

// StompSubProtocolHandler.convertConnectAcktoStompConnected and
// SimpleBrokerMessageHandler CONNECT_ACK.
func TestConnectedFrame(t *testing.T) {
	cases := []struct {
		name   string
		hb     [2]time.Duration
		accept string
		want   string
	}{
		{"no scheduler", [2]time.Duration{}, "accept-version:1.2,1.1,1.0", "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"},
		{"configured heart-beat", [2]time.Duration{10 * time.Second, 20 * time.Second}, "accept-version:1.1,1.2", "CONNECTED\nversion:1.2\nheart-beat:10000,20000\n\n\x00"},
		{"1.1", [2]time.Duration{}, "accept-version:1.0,1.1", "CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\x00"},
		{"1.0", [2]time.Duration{}, "accept-version:1.0", "CONNECTED\nversion:1.0\nheart-beat:0,0\n\n\x00"},
		// commaDelimitedListToSet does not trim: " 1.1" and " 1.2" match nothing.
		{"spaces after commas", [2]time.Duration{}, "accept-version:1.0, 1.1, 1.2", "CONNECTED\nversion:1.0\nheart-beat:0,0\n\n\x00"},
		{"heart-beat without comma", [2]time.Duration{}, "accept-version:1.2\nheart-beat:10000", "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{HeartBeat: tc.hb})
			c := e.dial("v12.stomp")
			c.send(connectFrame(tc.accept))
			r := c.nextFrame()
			if string(r.raw) != tc.want {
				t.Fatalf("got %q, want %q", r.raw, tc.want)
			}
			if e.b.Sessions() != 1 {
				t.Fatalf("Sessions() = %d", e.b.Sessions())
			}
		})
	}
}

// The STOMP command is handled like CONNECT.
func TestStompCommandConnects(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.send("STOMP\naccept-version:1.2\nhost:x\n\n\x00")
	c.expectFrame("CONNECTED")
}

// No version in common (or no accept-version at all): convertConnectAck...
// throws, SubProtocolWebSocketHandler only logs. No CONNECTED, no ERROR, the
// session stays open and the broker knows it.
func TestConnectWithoutCommonVersion(t *testing.T) {
	for _, hdr := range []string{"accept-version:2.0", "accept-version: 1.2"} {
		e := newEnv(t, Config{})
		c := e.dial()
		c.send("CONNECT\n" + hdr + "\n\n\x00")
		c.send("DISCONNECT\nreceipt:d\n\n\x00")
		f := c.expectFrame("RECEIPT") // the first frame: no CONNECTED came before
		headersEqual(t, f.Headers, "receipt-id:d")
	}
	e := newEnv(t, Config{})
	c := e.dial()
	c.send("CONNECT\nhost:x\n\n\x00") // STOMP 1.0 style, no accept-version
	c.sync()
	if e.b.Sessions() != 1 {
		t.Fatalf("Sessions() = %d", e.b.Sessions())
	}
	c.send("DISCONNECT\nreceipt:d\n\n\x00")
	c.expectFrame("RECEIPT")
}

// Spring >= 6.2.12: a second CONNECT fails "Session already exists".
func TestSecondConnect(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.connect()
	c.send(connectFrame())
	c.expectError("Session already exists")
}

// StompHeaderAccessor.getHeartbeat uses Long.parseLong on the untrimmed
// halves: "10000, 10000" is a NumberFormatException -> ERROR + 1002.
func TestHeartbeatHeaderWithSpace(t *testing.T) {
	e := newEnv(t, Config{HeartBeat: [2]time.Duration{10 * time.Second, 10 * time.Second}})
	c := e.dial()
	c.send(connectFrame("heart-beat:10000, 10000"))
	r := c.expectError(`Error at index 0 in: " 10000"`)
	// The ERROR's headers are escaped on the wire.
	if want := "ERROR\nmessage:Error at index 0 in\\c \" 10000\"\ncontent-length:0\n\n\x00"; string(r.raw) != want {
		t.Fatalf("raw %q, want %q", r.raw, want)
	}
	e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if e.b.Sessions() != 0 {
		t.Fatalf("Sessions() = %d", e.b.Sessions())
	}
}

// Spring >= 6.2.12: anything before CONNECT — an EOL heart-beat included —
// fails "Unknown session: <id>" -> ERROR + 1002.
func TestBeforeConnect(t *testing.T) {
	e := newEnv(t, Config{})
	for _, raw := range []string{"\n", "SEND\ndestination:/topic/a\n\nx\x00", "SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\x00"} {
		c := e.dial()
		c.send(raw)
		r := c.expectError("Unknown session: " + c.sid)
		if want := "ERROR\nmessage:Unknown session\\c " + c.sid + "\ncontent-length:0\n\n\x00"; string(r.raw) != want {
			t.Fatalf("raw %q, want %q", r.raw, want)
		}
	}
	if n := e.b.Subscriptions(); n != 0 {
		t.Fatalf("Subscriptions() = %d", n)
	}
}

// DISCONNECT without receipt: DISCONNECT_ACK -> ERROR "Session closed." + 1002.
func TestDisconnectWithoutReceipt(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.connect()
	c.send("SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\x00")
	c.send("DISCONNECT\n\n\x00")
	r := c.expectError("Session closed.")
	if string(r.raw) != "ERROR\nmessage:Session closed.\ncontent-length:0\n\n\x00" {
		t.Fatalf("raw %q", r.raw)
	}
	ev := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if ev.CloseCode != websocket.CloseProtocolError {
		t.Fatalf("close event %+v", ev)
	}
	if e.b.Sessions() != 0 || e.b.Subscriptions() != 0 || e.b.Connections() != 0 {
		t.Fatalf("sessions=%d subs=%d conns=%d", e.b.Sessions(), e.b.Subscriptions(), e.b.Connections())
	}
}

// DISCONNECT with receipt: RECEIPT, the broker session and subscriptions are
// gone, but Spring does not close the WebSocket: the client is expected to.
func TestDisconnectWithReceipt(t *testing.T) {
	e := newEnv(t, Config{HeartBeat: [2]time.Duration{50 * time.Millisecond, 50 * time.Millisecond}})
	c := e.dial()
	c.connect("heart-beat:50,50")
	c.send("SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\x00")
	c.send("DISCONNECT\nreceipt:bye-1\n\n\x00")
	f := c.expectFrame("RECEIPT")
	headersEqual(t, f.Headers, "receipt-id:bye-1")
	if e.b.Sessions() != 0 || e.b.Subscriptions() != 0 || e.b.Connections() != 1 {
		t.Fatalf("sessions=%d subs=%d conns=%d", e.b.Sessions(), e.b.Subscriptions(), e.b.Connections())
	}
	// Still open: a ping is answered. No heart-beat checks any more either
	// way (the broker forgot the session).
	if err := c.conn.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.pongs:
	case <-time.After(waitLong):
		t.Fatal("no pong after RECEIPT")
	}
	// StompSubProtocolHandler still has the session: frames are accepted...
	c.sync()
	// ...but a new CONNECT is "Session already exists".
	c.send(connectFrame())
	c.expectError("Session already exists")
}

func TestDisconnectWithReceiptThenClientCloses(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.connect()
	c.send("DISCONNECT\nreceipt:r\n\n\x00")
	c.expectFrame("RECEIPT")
	c.closeNormally()
	ev := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if ev.PeerCloseCode != websocket.CloseNormalClosure || ev.CloseCode != websocket.CloseNormalClosure {
		t.Fatalf("close event %+v", ev)
	}
}

// Every decode error over the wire: ERROR with Spring's text, then 1002.
func TestDecodeErrorsCloseWith1002(t *testing.T) {
	cases := []struct{ raw, want string }{
		{"SEND\ndestination:/topic/a\r", `'\r' must be followed by '\n'`},
		{"\r", `'\r' must be followed by '\n'`},
		{"SEND\ndestination:/topic/a\ncontent-length:2\n\nabc\x00", "Frame must be terminated with a null octet"},
		{"SUBSCRIBE\nid:1\ndestination:/topic/a\n\nbody\x00", "SUBSCRIBE shouldn't have a payload: length=4, headers={}"},
		{"NOPE\n\n\x00", "No enum constant org.springframework.messaging.simp.stomp.StompCommand.NOPE"},
		{"SEND\nbogus\n\n\x00", "Illegal header: 'bogus'. A header must be of the form <name>:[<value>]."},
		{"SEND\ndestination:/a\\t\n\n\x00", `Illegal escape sequence at index 2: /a\t`},
		{"SEND\ndestination:/topic/a\ncontent-type:json\n\n{}\x00", `Invalid mime type "json": does not contain '/'`},
		{"SEND\ndestination:/topic/a\nheart-beat:1, 1\n\n\x00", `Error at index 0 in: " 1"`},
	}
	e := newEnv(t, Config{})
	for _, tc := range cases {
		c := e.dial()
		c.connect()
		c.send(tc.raw)
		c.expectError(tc.want)
		ev := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
		if ev.CloseCode != websocket.CloseProtocolError {
			t.Fatalf("%q: close event %+v", tc.raw, ev)
		}
	}
}

// BufferingStompDecoder limits (MessageSizeLimit) -> ERROR + 1002; a frame
// within the limit split over several WebSocket messages is reassembled.
func TestMessageSizeLimit(t *testing.T) {
	e := newEnv(t, Config{MessageSizeLimit: 1024})
	head := "SEND\ndestination:/topic/big\n\n"

	c := e.dial()
	c.connect()
	c.send(head + strings.Repeat("x", 1100) + "\x00")
	c.expectError("The configured STOMP buffer size limit of 1024 bytes has been exceeded")

	c = e.dial()
	c.connect()
	c.send(head + strings.Repeat("x", 600))
	c.send(strings.Repeat("x", 600))
	c.expectError("The configured STOMP buffer size limit of 1024 bytes has been exceeded")

	c = e.dial()
	c.connect()
	c.send("SEND\ndestination:/topic/big\ncontent-length:5000\n\nabc")
	c.send("d")
	c.expectError("STOMP 'content-length' header value 5000  exceeds configured buffer size limit 1024")

	c = e.dial()
	c.connect()
	c.send("SUBSCRIBE\nid:0\ndestination:/topic/big\n\n\x00")
	body := strings.Repeat("y", 900)
	frame := head + body + "\x00"
	c.send(frame[:300])
	c.send(frame[300:600])
	c.send(frame[600:])
	f := c.expectFrame("MESSAGE")
	if string(f.Body) != body {
		t.Fatalf("body %d bytes", len(f.Body))
	}
}

// One WebSocket message over the container's limit: close 1009 (Tomcat does
// the same when partial messages are not supported), no STOMP ERROR.
func TestWebSocketMessageSizeLimit(t *testing.T) {
	e := newEnv(t, Config{WebSocketMessageSizeLimit: 2048})
	c := e.dial()
	c.connect()
	c.send("SEND\ndestination:/topic/a\n\n" + strings.Repeat("x", 3000) + "\x00")
	c.expectClose(websocket.CloseMessageTooBig)
	ev := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if ev.CloseCode != websocket.CloseMessageTooBig {
		t.Fatalf("close event %+v", ev)
	}
}

// CONNECT headers are not unescaped; SEND headers are, and MESSAGE headers
// are escaped again.
func TestHeaderEscaping(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.send("CONNECT\naccept-version:1.2\nhost:a\\tb\nlogin:x\\cy\n\n\x00")
	c.expectFrame("CONNECTED")
	ev := e.rec.wait(t, "CONNECT", frameIs(c.sid, "CONNECT", EventFrame))
	headersEqual(t, ev.Frame.Headers, "accept-version:1.2", "host:a\\tb", "login:x\\cy")

	c.send("SUBSCRIBE\nid:s\\c1\ndestination:/topic/a\n\n\x00")
	c.send("SEND\ndestination:/topic/a\nx-h:a\\cb\\nc\n\nz\x00")
	r := c.nextFrame()
	if v, _ := r.frame.Header("x-h"); v != "a:b\nc" {
		t.Fatalf("x-h = %q", v)
	}
	if v, _ := r.frame.Header("subscription"); v != "s:1" {
		t.Fatalf("subscription = %q", v)
	}
	if !bytes.Contains(r.raw, []byte("\nx-h:a\\cb\\nc\n")) || !bytes.Contains(r.raw, []byte("\nsubscription:s\\c1\n")) {
		t.Fatalf("raw %q", r.raw)
	}
}

// SUBSCRIBE/UNSUBSCRIBE/SEND/MESSAGE on the simple broker prefixes; no RECEIPT
// except for DISCONNECT; SEND elsewhere is accepted and not routed.
func TestPubSub(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.dial()
	a.connect()
	a.send("SUBSCRIBE\nid:s1\ndestination:/topic/a\nreceipt:r-sub\n\n\x00")
	a.send("SUBSCRIBE\nid:s2\ndestination:/app/a\n\n\x00")   // not a broker prefix: not registered
	a.send("SUBSCRIBE\nid:s1\ndestination:/topic/b\n\n\x00") // duplicate id: putIfAbsent keeps the first
	a.sync()
	if n := e.b.Subscriptions(); n != 1 {
		t.Fatalf("Subscriptions() = %d", n)
	}

	b := e.dial()
	b.connect()
	b.send("SEND\ndestination:/app/a\n\nnot routed\x00")
	b.send("SEND\ndestination:/topic/b\n\nnot subscribed\x00")
	b.send("SEND\ndestination:/topic/a\ncontent-type:text/plain; charset=UTF-8\nx-custom:v\\c1\ncontent-length:5\nreceipt:r-send\n\nhello\x00")
	b.send("DISCONNECT\nreceipt:d1\n\n\x00")
	f := b.expectFrame("RECEIPT") // no RECEIPT for the SEND
	headersEqual(t, f.Headers, "receipt-id:d1")

	r := a.nextFrame()
	if r.frame.Command != "MESSAGE" || r.binary {
		t.Fatalf("got %s binary=%v", r.frame.Command, r.binary)
	}
	msgID, _ := r.frame.Header("message-id")
	if !strings.HasPrefix(msgID, a.sid+"-") {
		t.Fatalf("message-id %q", msgID)
	}
	headersEqual(t, r.frame.Headers,
		"destination:/topic/a",
		"content-type:text/plain;charset=UTF-8",
		"x-custom:v:1",
		"receipt:r-send",
		"subscription:s1",
		"message-id:"+msgID,
		"content-length:5")
	if string(r.frame.Body) != "hello" {
		t.Fatalf("body %q", r.frame.Body)
	}

	// application/octet-stream with a body goes out as a binary message.
	a.send("SEND\ndestination:/topic/a\ncontent-type:application/octet-stream\n\n\x01\x02\x00")
	r = a.nextFrame()
	if r.frame.Command != "MESSAGE" || !r.binary || !bytes.Equal(r.frame.Body, []byte{1, 2}) {
		t.Fatalf("got %s binary=%v body=%q", r.frame.Command, r.binary, r.frame.Body)
	}

	a.send("UNSUBSCRIBE\nid:s1\nreceipt:r-unsub\n\n\x00")
	a.sync()
	if n := e.b.Subscriptions(); n != 0 {
		t.Fatalf("Subscriptions() = %d", n)
	}
	a.send("SEND\ndestination:/topic/a\n\nafter unsubscribe\x00")
	a.send("DISCONNECT\nreceipt:d2\n\n\x00")
	f = a.expectFrame("RECEIPT") // no MESSAGE, no RECEIPT for SUBSCRIBE/UNSUBSCRIBE
	headersEqual(t, f.Headers, "receipt-id:d2")
}

// Broker.Publish: an application message through the broker channel.
func TestPublish(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	c.connect()
	c.send("SUBSCRIBE\nid:p1\ndestination:/topic/p\n\n\x00")
	c.sync()
	e.b.Publish("/app/p", []byte("ignored"))
	e.b.Publish("/topic/p", []byte("hi"))
	f := c.expectFrame("MESSAGE")
	id, _ := f.Header("message-id")
	headersEqual(t, f.Headers, "destination:/topic/p", "subscription:p1", "message-id:"+id, "content-length:2")
	if string(f.Body) != "hi" {
		t.Fatalf("body %q", f.Body)
	}
}

// Close: 1001 to every client, all goroutines end (goleak in TestMain).
func TestCloseSendsGoingAway(t *testing.T) {
	e := newEnv(t, Config{HeartBeat: [2]time.Duration{50 * time.Millisecond, 50 * time.Millisecond}})
	a := e.dial()
	a.connect("heart-beat:50,50")
	b := e.dial()
	e.b.Close()
	a.expectClose(websocket.CloseGoingAway)
	b.expectClose(websocket.CloseGoingAway)
	if e.b.Connections() != 0 || e.b.Sessions() != 0 {
		t.Fatalf("conns=%d sessions=%d", e.b.Connections(), e.b.Sessions())
	}
	e.b.Close() // idempotent
	resp, err := http.Get(e.srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", resp.StatusCode)
	}
}

// A client that never reads cannot hold Close up for long.
func TestCloseIsBounded(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dialNoRead()
	start := time.Now()
	e.b.Close()
	if d := time.Since(start); d > closeTimeout+2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	ev := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if ev.CloseCode != websocket.CloseGoingAway || ev.PeerCloseCode != 0 {
		t.Fatalf("close event %+v", ev)
	}
}

func TestNoHeartbeatTaskWithoutHeartbeat(t *testing.T) {
	cases := []struct {
		hb     [2]time.Duration
		period time.Duration
	}{
		{[2]time.Duration{}, 0},
		{[2]time.Duration{10 * time.Second, 20 * time.Second}, 10 * time.Second},
		{[2]time.Duration{0, 20 * time.Second}, 20 * time.Second},
		{[2]time.Duration{30 * time.Second, 0}, 30 * time.Second},
	}
	for _, tc := range cases {
		b := New(Config{HeartBeat: tc.hb})
		if b.period != tc.period {
			t.Errorf("%v: period %v, want %v", tc.hb, b.period, tc.period)
		}
		b.Close()
	}
}
