package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/metrics"
)

// sockjsClient is one SockJS session, whatever its transport.
type sockjsClient interface {
	// Recv returns the client's next message; an error when the session is
	// gone (the client closed it, or was not seen for the disconnect
	// delay) or ctx ended.
	Recv(ctx context.Context) (string, error)
	// Send queues a message to the client (an a[…] frame).
	Send(msg string) error
	// Close ends the session with a c[code,"reason"] frame.
	Close(code int, reason string)
}

// runBridge carries one SockJS session over conn, the far end of the
// session's client leg: each SockJS message becomes one WebSocket text
// message to the proxy, each message the proxy writes becomes one SockJS
// message, the proxy's close frame becomes the SockJS close frame (after
// the ERROR written before it), and its pings are answered while the
// SockJS session lives. When the SockJS session ends first (the client
// closed it, or stopped polling for the disconnect delay), conn is closed
// without a close frame: the proxy sees a lost client, and the broker gets
// its DISCONNECT. It returns when both directions ended.
func runBridge(conn net.Conn, client sockjsClient, writeTimeout, closeTimeout time.Duration) {
	var bc *wsconn.Conn
	bc = wsconn.New(conn, wsconn.Client, "", nil, wsconn.Options{
		WriteTimeout: writeTimeout,
		OnPing: func(p []byte) {
			_ = bc.WriteControl(websocket.PongMessage, p, time.Time{})
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // client → proxy
		defer wg.Done()
		defer bc.Close()
		for {
			msg, err := client.Recv(ctx)
			if err != nil {
				return
			}
			if bc.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
				return
			}
		}
	}()

	// proxy → client
	var msg []byte
	err := bc.Serve(func(ev wsconn.ServeEvent) bool {
		if ev == wsconn.Parking {
			return false
		}
		for {
			p, ok, err := bc.TryPiece()
			if err != nil || !ok {
				return false
			}
			if p.First() {
				msg = msg[:0]
			}
			msg = append(msg, p.Data...)
			if p.Last() && client.Send(string(msg)) != nil {
				return true
			}
		}
	})
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		// The proxy ended the session: echo its close (RFC 6455 §5.5.1),
		// then tell the client with SockJS's own close frame.
		_ = bc.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ""), time.Now().Add(closeTimeout))
		code, reason := ce.Code, ce.Text
		if code == websocket.CloseNoStatusReceived {
			code, reason = websocket.CloseNormalClosure, ""
		}
		client.Close(code, reason)
	} else {
		client.Close(websocket.CloseInternalServerErr, "stompgate closed the session")
	}
	cancel()
	_ = bc.Close()
	wg.Wait()
	bc.Release()
}

// sockjsWebSocket is SockJS's websocket transport, served by stompgate so
// that a client's message is bounded (readLimit) before it is read.
type sockjsWebSocket struct {
	c            *websocket.Conn
	writeTimeout time.Duration

	mu      sync.Mutex // writes, closed
	closed  bool
	beat    *time.Timer
	pending []string // messages of the last frame not yet returned by Recv
}

// serveWebSocket serves the websocket transport of SockJS session id.
func (e *sockjsEndpoint) serveWebSocket(w http.ResponseWriter, r *http.Request, id string) {
	h := e.h
	up := websocket.Upgrader{
		HandshakeTimeout: h.opts.HandshakeTimeout,
		ReadBufferSize:   handshakeBufferSize,
		WriteBufferSize:  handshakeBufferSize,
		// Origins were checked by stompgate's policy already.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		h.metrics.Handshake(metrics.HandshakeClientFailed)
		e.forgetAdmitted(id)
		return
	}
	c.SetReadLimit(e.maxSendBody())
	t := &sockjsWebSocket{c: c, writeTimeout: h.opts.WriteTimeout}
	if t.write("o") != nil || !e.claim(id) {
		_ = c.Close()
		e.forgetAdmitted(id)
		return
	}
	t.heartbeat(h.opts.SockJS.HeartbeatDelay)
	e.bridge(t, r, id, "sockjs/websocket")
	t.Close(websocket.CloseNormalClosure, "")
}

// heartbeat sends an h frame every d while the session lives, so that
// intermediaries see traffic.
func (t *sockjsWebSocket) heartbeat(d time.Duration) {
	if d <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.beat = time.AfterFunc(d, func() {
		if t.write("h") == nil {
			t.mu.Lock()
			if !t.closed {
				t.beat.Reset(d)
			}
			t.mu.Unlock()
		}
	})
}

func (t *sockjsWebSocket) write(frame string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return net.ErrClosed
	}
	_ = t.c.SetWriteDeadline(time.Now().Add(t.writeTimeout))
	return t.c.WriteMessage(websocket.TextMessage, []byte(frame))
}

func (t *sockjsWebSocket) Recv(ctx context.Context) (string, error) {
	for len(t.pending) == 0 {
		_, data, err := t.c.ReadMessage()
		if err != nil {
			return "", err
		}
		if len(data) == 0 {
			continue
		}
		// A client sends a JSON array of strings, or one string.
		var msgs []string
		if err := json.Unmarshal(data, &msgs); err != nil {
			var one string
			if json.Unmarshal(data, &one) != nil {
				t.Close(websocket.CloseProtocolError, "Broken JSON encoding.")
				return "", err
			}
			msgs = []string{one}
		}
		t.pending = msgs
	}
	msg := t.pending[0]
	t.pending = t.pending[1:]
	return msg, nil
}

func (t *sockjsWebSocket) Send(msg string) error {
	b, _ := json.Marshal([]string{msg})
	return t.write("a" + string(b))
}

// Close sends c[code,"reason"] and closes the WebSocket, once.
func (t *sockjsWebSocket) Close(code int, reason string) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	reasonJSON, _ := json.Marshal(reason)
	_ = t.write("c[" + strconv.Itoa(code) + "," + string(reasonJSON) + "]")
	t.mu.Lock()
	t.closed = true
	if t.beat != nil {
		t.beat.Stop()
	}
	_ = t.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	t.mu.Unlock()
	_ = t.c.Close()
}
