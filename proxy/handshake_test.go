package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/metrics"
)

// rawHandshake sends an upgrade request with the given protocol version
// over a new TCP connection and returns the response's status and body.
func rawHandshake(t *testing.T, addr, proto string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws %s\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", proto, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s handshake: %v", proto, err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, string(body)
}

// RFC 6455 section 4.2.1: the opening handshake must be HTTP/1.1 or later.
// An HTTP/1.0 upgrade request is answered 400, saying why, before the
// upstream is dialled, and counted as client_failed.
func TestHTTP10UpgradeIs400BeforeDial(t *testing.T) {
	var dialled atomic.Int32
	up := newUpstream(t, nil, func(c *websocket.Conn) { dialled.Add(1); echo(c) })
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) { o.Metrics = m })
	addr := strings.TrimPrefix(p.srv.URL, "http://")

	status, body := rawHandshake(t, addr, "HTTP/1.0")
	if status != http.StatusBadRequest || !strings.Contains(body, "stompgate: WebSocket handshakes need HTTP/1.1 or later") || !strings.Contains(body, "got HTTP/1.0") {
		t.Fatalf("HTTP/1.0 upgrade: %d %q, want 400 saying HTTP/1.1 is needed", status, body)
	}
	up.mu.Lock()
	reached := up.lastReq != nil
	up.mu.Unlock()
	if reached || dialled.Load() != 0 {
		t.Fatal("the upstream was dialled for an HTTP/1.0 handshake")
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="client_failed"}`); n != 1 {
		t.Errorf("client_failed = %v, want 1", n)
	}
	es := p.logs.FilterMessage("handshake refused").All()
	if len(es) != 1 || es[0].ContextMap()["status"] != int64(400) {
		t.Errorf("log lines %v, want one 'handshake refused' with status 400", es)
	}

	// The same request as HTTP/1.1 is upgraded.
	if status, body := rawHandshake(t, addr, "HTTP/1.1"); status != http.StatusSwitchingProtocols {
		t.Fatalf("HTTP/1.1 upgrade: %d %q", status, body)
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="ok"}`); n != 1 {
		t.Errorf("ok = %v, want 1", n)
	}
}
