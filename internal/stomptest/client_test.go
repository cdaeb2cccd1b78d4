package stomptest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker answers CONNECT with CONNECTED after a heart-beat, echoes the
// next message as the body of a MESSAGE, pings, and closes with 4000 "bye".
func broker(t *testing.T) string {
	up := websocket.Upgrader{Subprotocols: []string{"v12.stomp"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
		ws.WriteMessage(websocket.TextMessage, []byte("\n"))
		ws.WriteMessage(websocket.TextMessage, []byte("CONNECTED\nversion:1.2\n\n\x00"))
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		ws.WriteMessage(websocket.TextMessage, Encode("MESSAGE", msg, "destination", "/q"))
		ws.WriteMessage(websocket.TextMessage, []byte("not a frame"))
		ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(time.Second))
		ws.SetReadDeadline(time.Now().Add(time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// modes are the client's two ways of reading.
var modes = []struct {
	name string
	opts []Option
}{{"reading in Next", nil}, {"reading in the background", []Option{InBackground()}}}

func TestClient(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := Dial(t, broker(t), append(mode.opts, Subprotocols("v12.stomp"))...)
			if c.Conn().Subprotocol() != "v12.stomp" {
				t.Fatalf("subprotocol %q", c.Conn().Subprotocol())
			}
			if f := c.Connect("accept-version", "1.2"); f.Headers["version"] != "1.2" {
				t.Fatalf("CONNECTED %v", f)
			}
			body := []byte("a\x00b")
			c.Send(body)
			if f := c.Expect(time.Second, "MESSAGE"); !bytes.Equal(f.Body, body) || f.Headers["destination"] != "/q" {
				t.Fatalf("MESSAGE %v", f)
			}
			q := c.Watch(2 * time.Second)
			if len(q.Frames) != 1 || q.Frames[0].Command != Undecodable || !q.Closed || q.End.Code != 4000 || q.End.Text != "bye" {
				t.Fatalf("watched %v (%v)", q, q.Frames)
			}
			if c.EOLs() != 1 || c.Pings() != 1 {
				t.Fatalf("%d EOLs, %d pings; want 1 and 1", c.EOLs(), c.Pings())
			}
			if _, err := c.Next(time.Second); err == nil || IsTimeout(err) {
				t.Fatalf("read after the end: %v", err)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := Dial(t, broker(t), mode.opts...)
			start := time.Now()
			if _, err := c.Next(100 * time.Millisecond); !IsTimeout(err) {
				t.Fatalf("got %v, want a timeout", err)
			}
			if took := time.Since(start); took < 100*time.Millisecond || took > time.Second {
				t.Fatalf("timed out after %v", took)
			}
			if _, ended := c.End(); ended {
				t.Fatal("a timeout ended the connection")
			}
		})
	}
}

func TestDecode(t *testing.T) {
	if f, err := Decode([]byte("CONNECTED\r\nversion:1.2\r\nheart-beat:1000,1000\r\n\r\n\x00")); err != nil || f.Command != "CONNECTED" || f.Headers["heart-beat"] != "1000,1000" {
		t.Errorf("CRLF frame: %v, %v", f, err)
	}
	f, err := Decode([]byte("MESSAGE\nk:1\nk:2\n\nbody\x00\n"))
	if err != nil || f.Command != "MESSAGE" || f.Headers["k"] != "1" || string(f.Body) != "body" {
		t.Fatalf("%v, %v", f, err)
	}
	if _, err := Decode(Encode("SEND", []byte("ab"), "destination", "/q")[:20]); err == nil {
		t.Fatal("a short body decoded")
	}
}
