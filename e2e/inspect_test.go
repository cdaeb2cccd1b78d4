package e2e

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/proxy"
)

// Frames that stress the scanner reach RabbitMQ intact through stompgate:
// a body with NUL octets (content-length), one frame split over three
// WebSocket messages, CRLF line endings.
func TestRabbitScannerEdgeCasesArriveIntact(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	dest := "/queue/stompgate-e2e-scanner"
	c.Subscribe("s1", dest, "receipt", "r1")
	c.Expect(5*time.Second, "RECEIPT")

	nul := []byte("before\x00between\x00after")
	c.SendFrame("SEND", nul, "destination", dest)
	if m := c.Expect(5*time.Second, "MESSAGE"); !bytes.Equal(m.Body, nul) {
		t.Fatalf("NUL body arrived as %q", m.Body)
	}

	split := stomptest.Encode("SEND", bytes.Repeat([]byte("split!"), 3000), "destination", dest)
	third := len(split) / 3
	c.SendSplit(split, third, 2*third)
	if m := c.Expect(5*time.Second, "MESSAGE"); len(m.Body) != 18000 {
		t.Fatalf("split frame arrived with %d body bytes, want 18000", len(m.Body))
	}

	crlf := []byte("SEND\r\ndestination:" + dest + "\r\ncontent-type:text/plain\r\n\r\ncrlf body\x00\r\n")
	c.Send(crlf)
	if m := c.Expect(5*time.Second, "MESSAGE"); string(m.Body) != "crlf body" {
		t.Fatalf("CRLF frame arrived as %q", m.Body)
	}
}

// A STOMP 1.0 session (subprotocol v10.stomp, no accept-version) works
// through stompgate, and stompgate never sends it an EOL.
func TestRabbitStomp10Session(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, func(o *proxy.Options) {
		o.STOMP.Keepalive.IdleTimeout = 600 * time.Millisecond
	})
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v10.stomp"))
	if p := c.Conn().Subprotocol(); p != "v10.stomp" {
		t.Fatalf("subprotocol %q", p)
	}
	c.SendFrame("CONNECT", nil, "login", "guest", "passcode", "guest")
	connected := c.Expect(5*time.Second, "CONNECTED")
	if v := connected.Headers["version"]; v != "" && v != "1.0" {
		t.Fatalf("CONNECTED version %q, want 1.0", v)
	}
	dest := "/queue/stompgate-e2e-v10"
	c.SendFrame("SUBSCRIBE", nil, "destination", dest)
	c.Send([]byte("SEND\ndestination:" + dest + "\n\nten\x00"))
	// Raw read: any bare EOL message within a second (> 40% of the idle
	// timeout) would be a bug for a 1.0 client.
	deadline := time.Now().Add(time.Second)
	got := false
	for time.Now().Before(deadline) {
		msg, err := c.NextMessage(time.Until(deadline))
		if err != nil {
			break
		}
		if len(bytes.Trim(msg, "\r\n")) == 0 {
			t.Fatalf("stompgate sent a STOMP 1.0 client a heart-beat EOL")
		}
		if f, _ := stomptest.Decode(msg); f.Command == "MESSAGE" && string(f.Body) == "ten" {
			got = true
		}
	}
	if !got {
		t.Fatal("the 1.0 MESSAGE did not arrive")
	}
}

// A frame over the frame limit, in WebSocket messages each under the
// message limit, gets a STOMP ERROR naming the limit and close 1009.
func TestRabbitFrameOverLimit(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, func(o *proxy.Options) {
		o.STOMP.Limits = inspect.Limits{MaxFrameBytes: 4096}
	})
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	frame := stomptest.Encode("SEND", bytes.Repeat([]byte("y"), 6000), "destination", "/queue/stompgate-e2e-limit")
	c.SendSplit(frame, 3000)
	f, err := c.Next(5 * time.Second)
	if err != nil || f.Command != "ERROR" || !strings.Contains(f.Headers["message"], "4096") {
		t.Fatalf("got %v %v, want an ERROR naming the 4096-byte limit", f, err)
	}
	_, err = c.Next(5 * time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig || ce.Text == "" {
		t.Fatalf("want close 1009 with a reason, got %v", err)
	}
}
