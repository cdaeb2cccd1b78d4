package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// politeStompUpstream is a STOMP upstream on 127.0.0.1 that answers
// CONNECT, a DISCONNECT's receipt and the close handshake at once, so that
// a drained session ends without waiting for any timeout.
func politeStompUpstream(t *testing.T) (addr string) {
	t.Helper()
	upgrader := websocket.Upgrader{Subprotocols: []string{"v12.stomp"}}
	receipt := regexp.MustCompile(`\nreceipt:([^\n]*)\n`)
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage() // answers a close frame itself
			if err != nil {
				return
			}
			var reply string
			switch {
			case strings.HasPrefix(string(msg), "CONNECT\n"):
				reply = "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"
			case strings.HasPrefix(string(msg), "DISCONNECT\n"):
				if m := receipt.FindSubmatch(msg); m != nil {
					reply = "RECEIPT\nreceipt-id:" + string(m[1]) + "\n\n\x00"
				}
			}
			if reply != "" {
				if err := c.WriteMessage(websocket.TextMessage, []byte(reply)); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return srv.Listener.Addr().String()
}

// A SockJS xhr-polling client drained by SIGTERM gets the ERROR in the
// poll that was open, and the close frame c[1012,…] with its next poll:
// the process does not exit as soon as the session ended, which left that
// poll with no listener (sockjs-client reported 1006).
func TestSockJSDrainBySignalServesTheCloseFrame(t *testing.T) {
	upAddr := politeStompUpstream(t)
	addr, admin := freeAddr(t), freeAddr(t)
	p := startStompgate(t, admin,
		"STOMPGATE_UPSTREAM_URL=ws://"+upAddr,
		"STOMPGATE_LISTEN_ADDR="+addr,
		"STOMPGATE_SOCKJS_PATHS=/ws",
		"STOMPGATE_SOCKJS_CLIENT_URL=http://127.0.0.1:1/sockjs.min.js", // never loaded here
		"STOMPGATE_SHUTDOWN_DELAY=300ms",
		"STOMPGATE_DRAIN_PERIOD=100ms",
		"STOMPGATE_CLOSE_TIMEOUT=1s",
		"STOMPGATE_SHUTDOWN_TIMEOUT=5s",
	)
	base := "http://" + addr + "/ws/000/s1/"
	post := func(transport, body string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Post(base+transport, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", transport, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("xhr", ""); code != http.StatusOK || body != "o\n" {
		t.Fatalf("open: %d %q", code, body)
	}
	if code, body := post("xhr_send", `["CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\u0000"]`); code != http.StatusNoContent {
		t.Fatalf("send: %d %q", code, body)
	}
	if code, body := post("xhr", ""); code != http.StatusOK || !strings.HasPrefix(body, `a["CONNECTED`) {
		t.Fatalf("poll for CONNECTED: %d %q", code, body)
	}

	// This poll is open when the drain reaches the session, after the
	// shutdown delay.
	type answer struct {
		code int
		body string
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Post(base+"xhr", "text/plain", nil)
		if err != nil {
			polled <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		polled <- answer{resp.StatusCode, string(b)}
	}()
	sigterm := time.Now()
	p.signal(t, syscall.SIGTERM)
	if a := <-polled; a.code != http.StatusOK || !strings.HasPrefix(a.body, `a["ERROR`) || !strings.Contains(a.body, "message:server restarting, reconnect") {
		t.Fatalf("poll during the drain: %d %q, want the drain's ERROR", a.code, a.body)
	}
	// The next poll comes a round trip later, on a new connection, as from
	// a client farther away than this one.
	time.Sleep(200 * time.Millisecond)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code, body := post("xhr", ""); code != http.StatusOK || body != "c[1012,\"server restarting, reconnect\"]\n" {
		t.Fatalf("poll after the ERROR: %d %q, want the close frame c[1012,…]", code, body)
	}
	if code := p.waitExit(t, 5*time.Second); code != 0 {
		t.Errorf("exit status %d", code)
	}
	t.Logf("exited %v after SIGTERM", time.Since(sigterm).Round(time.Millisecond))
}
