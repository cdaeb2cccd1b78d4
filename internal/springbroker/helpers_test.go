package springbroker

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLong = 5 * time.Second

// recorder collects broker events and lets tests wait for one without
// sleeping.
type recorder struct {
	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{})} }

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) all(pred func(Event) bool) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if pred(e) {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) count(pred func(Event) bool) int { return len(r.all(pred)) }

// waitN waits until n events satisfy pred and returns them.
func (r *recorder) waitN(t *testing.T, n int, what string, pred func(Event) bool) []Event {
	t.Helper()
	timer := time.NewTimer(waitLong)
	defer timer.Stop()
	for {
		r.mu.Lock()
		var got []Event
		for _, e := range r.events {
			if pred(e) {
				got = append(got, e)
			}
		}
		ch := r.notify
		r.mu.Unlock()
		if len(got) >= n {
			return got[:n]
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out waiting for %d× %s; events:\n%s", n, what, r.dump())
		}
	}
}

func (r *recorder) wait(t *testing.T, what string, pred func(Event) bool) Event {
	t.Helper()
	return r.waitN(t, 1, what, pred)[0]
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s %s %s", e.Time.Format("15:04:05.000"), e.Session[:min(8, len(e.Session))], e.Kind)
		if e.Frame != nil {
			fmt.Fprintf(&b, " %s %v", e.Frame.Command, e.Frame.Headers)
		}
		if e.Err != "" {
			fmt.Fprintf(&b, " err=%q", e.Err)
		}
		if e.Kind == EventClosed {
			fmt.Fprintf(&b, " code=%d peer=%d", e.CloseCode, e.PeerCloseCode)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func kindIs(sid string, k EventKind) func(Event) bool {
	return func(e Event) bool { return e.Session == sid && e.Kind == k }
}

func frameIs(sid, kind string, k EventKind) func(Event) bool {
	return func(e Event) bool {
		return e.Session == sid && e.Kind == k && e.Frame != nil && e.Frame.Command == kind
	}
}

type env struct {
	t   *testing.T
	b   *Broker
	srv *httptest.Server
	rec *recorder
	url string
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	rec := newRecorder()
	cfg.OnEvent = rec.on
	b := New(cfg)
	srv := httptest.NewServer(b) // 127.0.0.1
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	path := cfg.Path
	if path == "" {
		path = "/ws"
	}
	return &env{t: t, b: b, srv: srv, rec: rec, url: "ws" + strings.TrimPrefix(srv.URL, "http") + path}
}

// recv is what the test client read: a frame, a heart-beat, or the end.
type recv struct {
	at        time.Time
	heartbeat bool
	frame     *Frame
	binary    bool
	raw       []byte
	closed    bool
	code      int
	err       error
}

type client struct {
	t     *testing.T
	e     *env
	conn  *websocket.Conn
	sid   string
	in    chan recv
	pongs chan string
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
	syncN int
	// reading: readLoop runs (dial, not dialNoRead).
	reading bool
}

func (e *env) dial(protocols ...string) *client {
	e.t.Helper()
	c := e.dialNoRead(protocols...)
	c.reading = true
	go c.readLoop()
	return c
}

// dialNoRead connects but does not start reading (for Close tests).
func (e *env) dialNoRead(protocols ...string) *client {
	e.t.Helper()
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: waitLong}
	conn, _, err := d.Dial(e.url, nil)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c := &client{t: e.t, e: e, conn: conn, in: make(chan recv, 4096), pongs: make(chan string, 4096),
		quit: make(chan struct{}), done: make(chan struct{})}
	conn.SetPongHandler(func(s string) error {
		select {
		case c.pongs <- s:
		default:
		}
		return nil
	})
	local := conn.LocalAddr().String()
	c.sid = e.rec.wait(e.t, "open", func(ev Event) bool { return ev.Kind == EventOpen && ev.Remote == local }).Session
	e.t.Cleanup(c.shutdown)
	return c
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		mt, data, err := c.conn.ReadMessage()
		now := time.Now()
		if err != nil {
			r := recv{at: now, closed: true, err: err, code: websocket.CloseAbnormalClosure}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.code = ce.Code
			}
			c.push(r)
			return
		}
		msgs, rest, _, derr := decodeFrames(data)
		if derr != nil || len(rest) > 0 {
			c.push(recv{at: now, raw: data, err: fmt.Errorf("client decode: %v rest=%q", derr, rest)})
			continue
		}
		for _, m := range msgs {
			c.push(recv{at: now, heartbeat: m.heartbeat, frame: m.frame, binary: mt == websocket.BinaryMessage, raw: data})
		}
	}
}

func (c *client) push(r recv) {
	select {
	case c.in <- r:
	case <-c.quit:
	}
}

func (c *client) shutdown() {
	c.once.Do(func() {
		close(c.quit)
		_ = c.conn.Close()
	})
	if c.reading {
		<-c.done
	}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(raw)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) next() recv {
	c.t.Helper()
	select {
	case r := <-c.in:
		if r.err != nil && !r.closed {
			c.t.Fatalf("client: %v", r.err)
		}
		return r
	case <-time.After(waitLong):
		c.t.Fatalf("timed out waiting for a message from the broker; events:\n%s", c.e.rec.dump())
	}
	return recv{}
}

// nextFrame returns the next frame, skipping heart-beats.
func (c *client) nextFrame() recv {
	c.t.Helper()
	for {
		r := c.next()
		if r.closed {
			c.t.Fatalf("connection closed (code %d) while waiting for a frame", r.code)
		}
		if !r.heartbeat {
			return r
		}
	}
}

func (c *client) expectFrame(command string) *Frame {
	c.t.Helper()
	r := c.nextFrame()
	if r.frame.Command != command {
		c.t.Fatalf("got %s %v %q, want %s", r.frame.Command, r.frame.Headers, r.frame.Body, command)
	}
	return r.frame
}

// expectError expects ERROR with the message, then close 1002.
func (c *client) expectError(message string) recv {
	c.t.Helper()
	r := c.nextFrame()
	if r.frame.Command != "ERROR" {
		c.t.Fatalf("got %s %v, want ERROR", r.frame.Command, r.frame.Headers)
	}
	if got, _ := r.frame.Header("message"); got != message {
		c.t.Fatalf("ERROR message = %q, want %q", got, message)
	}
	c.expectClose(websocket.CloseProtocolError)
	return r
}

func (c *client) expectClose(code int) recv {
	c.t.Helper()
	for {
		r := c.next()
		if r.closed {
			if r.code != code {
				c.t.Fatalf("close code = %d (%v), want %d", r.code, r.err, code)
			}
			return r
		}
		if !r.heartbeat {
			c.t.Fatalf("got %s %v before close, want close %d", r.frame.Command, r.frame.Headers, code)
		}
	}
}

// connect sends CONNECT (accept-version 1.2 unless given) and expects CONNECTED.
func (c *client) connect(headers ...string) *Frame {
	c.t.Helper()
	c.send(connectFrame(headers...))
	return c.expectFrame("CONNECTED")
}

func connectFrame(headers ...string) string {
	h := strings.Join(headers, "\n")
	if !strings.Contains(h, "accept-version:") {
		h = "accept-version:1.2\n" + h
	}
	return "CONNECT\n" + strings.TrimSuffix(h, "\n") + "\nhost:localhost\n\n\x00"
}

// sync sends a SEND to a non-broker destination and waits until the broker
// has received it: everything this client sent before has been handled.
func (c *client) sync() Event {
	c.t.Helper()
	c.syncN++
	marker := fmt.Sprint(c.syncN)
	c.send("SEND\ndestination:/app/sync\nx-sync:" + marker + "\n\n\x00")
	return c.e.rec.wait(c.t, "sync "+marker, func(e Event) bool {
		if e.Session != c.sid || e.Kind != EventFrame {
			return false
		}
		v, _ := e.Frame.Header("x-sync")
		return v == marker
	})
}

// closeNormally does the client side of a close handshake.
func (c *client) closeNormally() {
	c.t.Helper()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.expectClose(websocket.CloseNormalClosure)
}

func headersEqual(t *testing.T, got []Header, want ...string) {
	t.Helper()
	var g []string
	for _, h := range got {
		g = append(g, h.Name+":"+h.Value)
	}
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("headers:\n got  %q\n want %q", g, want)
	}
}
