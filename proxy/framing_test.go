package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/wstest"
)

// A broker may send its first frame in the same TCP segment as its 101.
// gorilla's Dialer reads it into its own buffer with the response; stompgate
// reads frames itself, so it must recover those bytes (handshakeConn).
func TestBrokerFrameRightAfter101ReachesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		// One write: the 101 and an unmasked text frame "hello".
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n\x81\x05hello",
			wstest.AcceptKey(req.Header.Get("Sec-WebSocket-Key")))
		c.Read(make([]byte, 512)) // until the proxy closes
	}()
	p := newProxy(t, &url.URL{Scheme: "ws", Host: ln.Addr().String()}, nil)
	c := dial(t, p.url("/ws"), nil)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	mt, msg, err := c.ReadMessage()
	if err != nil || mt != websocket.TextMessage || string(msg) != "hello" {
		t.Fatalf("client got %d %q %v, want the broker's first frame", mt, msg, err)
	}
}

// A client that breaks RFC 6455 (here: an unmasked frame) gets close 1002
// naming the fault; the broker gets 1001. gorilla used to treat such a
// client as lost.
func TestClientFramingErrorGets1002(t *testing.T) {
	up, got := closeRecordingUpstream(t)
	p := newProxy(t, up.wsURL(), nil)
	c, br := rawClient(t, p)
	if _, err := c.Write([]byte("\x81\x02hi")); err != nil { // no mask bit
		t.Fatal(err)
	}
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 0x88 {
		t.Fatalf("want a close frame, got %x %v", hdr, err)
	}
	payload := make([]byte, hdr[1]&0x7f)
	if _, err := io.ReadFull(br, payload); err != nil || len(payload) < 2 {
		t.Fatalf("close payload %q %v", payload, err)
	}
	if code := binary.BigEndian.Uint16(payload); code != websocket.CloseProtocolError || !strings.Contains(string(payload[2:]), "unmasked") {
		t.Fatalf("client got close %d %q, want 1002 naming the unmasked frame", code, payload[2:])
	}
	select {
	case ce := <-got:
		if ce == nil || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("broker got %v, want 1001", ce)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the broker saw no close")
	}
	e := p.waitSessionEnd(t, 2*time.Second)
	if e.ContextMap()["closed_by"] != "proxy" || !strings.Contains(e.ContextMap()["end"].(string), "invalid WebSocket frames") {
		t.Errorf("log line: %v", e.ContextMap())
	}
}

// rawClient opens a WebSocket to p by hand, so that a test can write bytes
// no WebSocket library would.
func rawClient(t *testing.T, p *testProxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(p.url(""), "ws://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c, br
}

// A client's last message and its FIN often arrive together: the read that
// returns the message leaves nothing for the poller to report, and a pump
// that parks after a short read (wsconn's hangup watch) must still see the
// end. The broker gets the message, then the session ends at once, well
// before any liveness deadline.
func TestClientMessageThenFINEndsSession(t *testing.T) {
	for i := range 10 {
		got := make(chan string, 2)
		up := newUpstream(t, nil, func(c *websocket.Conn) {
			for {
				_, msg, err := c.ReadMessage()
				if err != nil {
					got <- "end"
					return
				}
				got <- string(msg)
			}
		})
		p := newProxy(t, up.wsURL(), nil)
		c, _ := rawClient(t, p)
		// A first message, once forwarded, means the pump has read and is
		// parked (or about to) when the last one comes with the FIN.
		for _, m := range []string{"first", "last words"} {
			if _, err := c.Write(wstest.Frame(0x1, []byte(m), true)); err != nil {
				t.Fatal(err)
			}
			if m == "first" {
				if m := recvWithin(t, got, 2*time.Second); m != "first" {
					t.Fatalf("round %d: broker got %q, want %q", i, m, "first")
				}
			}
		}
		c.Close()
		for _, want := range []string{"last words", "end"} {
			if m := recvWithin(t, got, 2*time.Second); m != want {
				t.Fatalf("round %d: broker got %q, want %q", i, m, want)
			}
		}
		p.waitSessionEnd(t, 2*time.Second)
	}
}

func recvWithin(t *testing.T, ch <-chan string, d time.Duration) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(d):
		t.Fatalf("nothing within %v", d)
		return ""
	}
}
