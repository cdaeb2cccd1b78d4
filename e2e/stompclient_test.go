package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frame is a decoded STOMP frame, as the tests see it.
type frame struct {
	Command string
	Headers map[string]string // first occurrence wins, as the spec says
	Body    []byte
}

func (f frame) String() string {
	return fmt.Sprintf("%s %v %q", f.Command, f.Headers, f.Body)
}

// encode builds a frame; headers alternate name, value. A content-length is
// added for bodies so NUL octets survive.
func encode(command string, body []byte, headers ...string) []byte {
	var b bytes.Buffer
	b.WriteString(command + "\n")
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ":" + headers[i+1] + "\n")
	}
	if body != nil {
		b.WriteString("content-length:" + strconv.Itoa(len(body)) + "\n")
	}
	b.WriteString("\n")
	b.Write(body)
	b.WriteByte(0)
	return b.Bytes()
}

// stompConn is a deliberately simple STOMP-over-WebSocket test client that
// assumes one frame per WebSocket message and skips heart-beat EOLs.
type stompConn struct {
	t  testing.TB
	ws *websocket.Conn
}

func dialStomp(t testing.TB, url string, header http.Header, protos ...string) (*stompConn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &stompConn{t: t, ws: ws}, resp, nil
}

func (c *stompConn) send(raw []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next frame, or the error that ended the connection.
func (c *stompConn) read(within time.Duration) (frame, error) {
	c.ws.SetReadDeadline(time.Now().Add(within))
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return frame{}, err
		}
		msg = bytes.TrimLeft(msg, "\r\n")
		if len(msg) == 0 {
			continue // heart-beat
		}
		return decode(msg)
	}
}

func (c *stompConn) mustRead(within time.Duration, command string) frame {
	c.t.Helper()
	f, err := c.read(within)
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", command, err)
	}
	if f.Command != command {
		c.t.Fatalf("got %v, want %s", f, command)
	}
	return f
}

func decode(msg []byte) (frame, error) {
	head, rest, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return frame{}, errors.New("no blank line in frame")
	}
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	f := frame{Command: lines[0], Headers: map[string]string{}}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		if _, dup := f.Headers[k]; !dup {
			f.Headers[k] = v
		}
	}
	if cl, ok := f.Headers["content-length"]; ok {
		n, _ := strconv.Atoi(cl)
		if n > len(rest) {
			return frame{}, errors.New("short body")
		}
		f.Body = rest[:n]
	} else if i := bytes.IndexByte(rest, 0); i >= 0 {
		f.Body = rest[:i]
	}
	return f, nil
}

// connect sends CONNECT for RabbitMQ's default guest account and returns
// CONNECTED.
func (c *stompConn) connect(extra ...string) frame {
	c.t.Helper()
	h := append([]string{"accept-version", "1.2", "host", "/", "login", "guest", "passcode", "guest"}, extra...)
	c.send(encode("CONNECT", nil, h...))
	return c.mustRead(5*time.Second, "CONNECTED")
}
