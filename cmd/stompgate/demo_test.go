package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sockjsPoller is a SockJS xhr-polling client, as sockjs-client restricted
// to xhr-polling is: one POST …/xhr per poll, one POST …/xhr_send per
// message.
type sockjsPoller struct {
	t    *testing.T
	base string // http://host/ws/<server>/<session>/
	c    http.Client
}

func (p *sockjsPoller) post(suffix, body string) (int, string) {
	p.t.Helper()
	resp, err := p.c.Post(p.base+suffix, "text/plain", strings.NewReader(body))
	if err != nil {
		p.t.Fatalf("POST %s: %v", suffix, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *sockjsPoller) send(msg string) {
	p.t.Helper()
	b, _ := json.Marshal([]string{msg})
	if code, body := p.post("xhr_send", string(b)); code != http.StatusNoContent {
		p.t.Fatalf("xhr_send: %d %q", code, body)
	}
}

// until polls until a message contains want, and returns the frames read
// meanwhile (o, h, a[…] decoded to its messages, c[…]).
func (p *sockjsPoller) until(want string, within time.Duration) []string {
	p.t.Helper()
	var got []string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		code, body := p.post("xhr", "")
		if code != http.StatusOK {
			p.t.Fatalf("xhr: %d %q", code, body)
		}
		body = strings.TrimSuffix(body, "\n")
		if rest, ok := strings.CutPrefix(body, "a"); ok {
			var msgs []string
			if err := json.Unmarshal([]byte(rest), &msgs); err != nil {
				p.t.Fatalf("a frame %q: %v", body, err)
			}
			got = append(got, msgs...)
		} else {
			got = append(got, body)
		}
		for _, m := range got {
			if strings.Contains(m, want) {
				return got
			}
		}
	}
	p.t.Fatalf("no %q within %v; read %q", want, within, got)
	return nil
}

// `stompgate demo` serves SockJS at /ws (the page's SockJS switch): an
// xhr-polling client connects through stompgate to the embedded broker,
// subscribes, and gets back what it sends; /debug/sessions names the
// transport; and on SIGTERM the client gets c[1012,…] on its next poll,
// even when the drain ended its session between two polls.
func TestDemoSockJSXHRPolling(t *testing.T) {
	listen, admin := freeAddr(t), freeAddr(t)
	p := startProc(t, "demo", "STOMPGATE_LISTEN_ADDR="+listen, "STOMPGATE_ADMIN_ADDR="+admin)
	pollUntil(t, 10*time.Second, "the demo serves /ws/info", func() bool {
		code, body := httpGet("http://" + listen + "/ws/info")
		return code == http.StatusOK && strings.Contains(body, `"websocket":true`)
	})
	if code, body := httpGet("http://" + listen + "/sockjs-client/sockjs.min.js"); code != http.StatusOK || !strings.Contains(body, "sockjs-client v1.6.1") {
		t.Fatalf("the demo's sockjs-client: %d, %.80q", code, body)
	}
	if _, body := httpGet("http://" + listen + "/ws/iframe.html"); !strings.Contains(body, `src="/sockjs-client/sockjs.min.js"`) {
		t.Errorf("SockJS's iframe page does not load the demo's sockjs-client:\n%s", body)
	}

	c := &sockjsPoller{t: t, base: "http://" + listen + "/ws/000/demotest/", c: http.Client{Timeout: 30 * time.Second}}
	if got := c.until("o", 5*time.Second); got[0] != "o" {
		t.Fatalf("open: %q", got)
	}
	c.send("CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00")
	if got := c.until("CONNECTED", 10*time.Second); !strings.Contains(got[len(got)-1], "version:1.2") {
		t.Fatalf("CONNECTED: %q", got)
	}
	c.send("SUBSCRIBE\nid:demo-0\ndestination:/topic/demo\nack:auto\n\n\x00")
	c.send("SEND\ndestination:/topic/demo\ncontent-type:text/plain\n\nover SockJS\x00")
	if got := c.until("MESSAGE", 10*time.Second); !strings.HasSuffix(got[len(got)-1], "\n\nover SockJS\x00") {
		t.Fatalf("MESSAGE: %q", got)
	}
	_, sessions := httpGet("http://" + admin + "/debug/sessions")
	var open []struct{ Transport string }
	if err := json.Unmarshal([]byte(sessions), &open); err != nil || len(open) != 1 || open[0].Transport != "sockjs/xhr" {
		t.Errorf("/debug/sessions does not show one sockjs/xhr session (%v):\n%s", err, sessions)
	}

	// The drain ends the proxied session while the client is between
	// polls: its next poll still gets the ERROR and the close frame.
	p.signal(t, syscall.SIGTERM)
	pollUntil(t, 5*time.Second, "the drain ends the session", func() bool {
		return strings.Contains(p.out.String(), "drained: no session left")
	})
	// Only the close frame: the drain's ERROR, written while the client was
	// between polls, waits in the SockJS session's buffer, which sockjs-go
	// does not deliver once the session is closing.
	if got := c.until("c[", 10*time.Second); got[len(got)-1] != `c[1012,"server restarting, reconnect"]` {
		t.Errorf("after SIGTERM the client read %q; want c[1012,\"server restarting, reconnect\"]", got)
	}
	if code := p.waitExit(t, 15*time.Second); code != 0 {
		t.Errorf("the demo exited with %d after SIGTERM", code)
	}
}
