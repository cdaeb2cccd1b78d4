package stomptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/wstest"
)

// writeTimeout bounds each data write, so that a test whose peer stopped
// reading fails instead of hanging.
const writeTimeout = 5 * time.Second

// Option configures Dial and Wrap.
type Option func(*options)

type options struct {
	dialer     websocket.Dialer
	header     http.Header
	noPongs    bool
	background bool
}

// Subprotocols offers these WebSocket subprotocols, in order.
func Subprotocols(p ...string) Option { return func(o *options) { o.dialer.Subprotocols = p } }

// Header adds these headers to the handshake request.
func Header(h http.Header) Option { return func(o *options) { o.header = h } }

// HandshakeTimeout bounds the handshake (5 s unless set).
func HandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.dialer.HandshakeTimeout = d }
}

// ReceiveBuffer gives the client's socket a receive buffer of n bytes: a
// client that then stops reading fills it quickly, so the peer's writes to
// it block.
func ReceiveBuffer(n int) Option {
	return func(o *options) { o.dialer.NetDial = wstest.DialReadBuffer(n) }
}

// TLS dials wss:// URLs with this configuration.
func TLS(cfg *tls.Config) Option { return func(o *options) { o.dialer.TLSClientConfig = cfg } }

// WithoutPongs makes the client count pings but never answer them: a client
// that is gone (frozen process, dead network) as the WebSocket layer sees it.
// Pings are only read while the client reads.
func WithoutPongs() Option { return func(o *options) { o.noPongs = true } }

// InBackground starts a reader goroutine that runs for the whole
// connection: it answers pings and queues messages even while the test is
// not waiting for one, so a quiet period does not break the connection.
// Without it the client reads only inside Next, NextMessage and Watch, as a
// client that stops reading must.
func InBackground() Option { return func(o *options) { o.background = true } }

// Client is a STOMP-over-WebSocket client for tests. Its methods that take
// no error return fail the test instead; it is closed when the test ends.
// Reads are the test goroutine's (or the background reader's); writes may
// come from any goroutine.
type Client struct {
	tb testing.TB
	ws *websocket.Conn

	wmu sync.Mutex // serialises data writes

	eols  atomic.Int64 // heart-beat messages (EOLs only, or empty) read
	pings atomic.Int64

	// The rest is for reading. Without a background reader, end and ended
	// belong to the test's goroutine. With one, queue, next and notify are
	// under mu, and end is set before done is closed.
	background bool
	mu         sync.Mutex
	queue      [][]byte
	next       int
	notify     chan struct{} // cap 1, poked on every message
	done       chan struct{}
	end        End
	ended      bool

	closeOnce sync.Once
}

// End is how a client's connection ended.
type End struct {
	// Code is the close code received, or 1006 when the connection ended
	// without a close frame (as a browser reports it).
	Code int
	Text string
	Err  error // what the read returned
	At   time.Time
}

// Dial opens a WebSocket connection to url, failing the test if it cannot.
func Dial(tb testing.TB, url string, opts ...Option) *Client {
	tb.Helper()
	c, resp, err := TryDial(tb, url, opts...)
	if err != nil {
		tb.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	return c
}

// TryDial is Dial for tests of a failing handshake: it returns the
// response and error instead of failing.
func TryDial(tb testing.TB, url string, opts ...Option) (*Client, *http.Response, error) {
	tb.Helper()
	o := options{dialer: websocket.Dialer{HandshakeTimeout: 5 * time.Second}}
	for _, f := range opts {
		f(&o)
	}
	ws, resp, err := o.dialer.Dial(url, o.header)
	if err != nil {
		return nil, resp, err
	}
	return wrap(tb, ws, o), resp, nil
}

// Wrap makes a client of a connection the test already has, such as the
// server side of one; it is closed when the test ends. Only WithoutPongs
// and InBackground apply.
func Wrap(tb testing.TB, ws *websocket.Conn, opts ...Option) *Client {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return wrap(tb, ws, o)
}

func wrap(tb testing.TB, ws *websocket.Conn, o options) *Client {
	c := &Client{tb: tb, ws: ws, background: o.background}
	ws.SetPingHandler(func(data string) error {
		c.pings.Add(1)
		if o.noPongs {
			return nil
		}
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || IsTimeout(err) {
			return nil
		}
		return err
	})
	if c.background {
		c.notify, c.done = make(chan struct{}, 1), make(chan struct{})
		go c.readLoop()
	}
	tb.Cleanup(c.Close)
	return c
}

// Conn is the underlying connection, for what the client does not cover.
// A test that reads from it must not also use the client's reads.
func (c *Client) Conn() *websocket.Conn { return c.ws }

// Close closes the connection and waits for the background reader, if any.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.ws.Close()
		if !c.background {
			return
		}
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			c.tb.Errorf("client reader did not end within 5s of closing the connection")
		}
	})
}

// EOLs is how many heart-beat messages (only EOLs, or empty) the client
// has read.
func (c *Client) EOLs() int64 { return c.eols.Load() }

// Pings is how many WebSocket pings the client has read.
func (c *Client) Pings() int64 { return c.pings.Load() }

// ---- writing ----------------------------------------------------------------

// WriteMessage sends one WebSocket message of type mt.
func (c *Client) WriteMessage(mt int, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	defer c.ws.SetWriteDeadline(time.Time{})
	return c.ws.WriteMessage(mt, data)
}

// WriteRaw writes b to the socket as it is: WebSocket frames the test
// built itself (wstest.Frame), several of them in one write, say.
func (c *Client) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	nc := c.ws.NetConn()
	nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	defer nc.SetWriteDeadline(time.Time{})
	_, err := nc.Write(b)
	return err
}

// Send sends raw as one text message.
func (c *Client) Send(raw []byte) {
	c.tb.Helper()
	if err := c.WriteMessage(websocket.TextMessage, raw); err != nil {
		c.tb.Fatalf("write: %v", err)
	}
}

// SendFrame sends the frame Encode builds, as one text message.
func (c *Client) SendFrame(command string, body []byte, headers ...string) {
	c.tb.Helper()
	c.Send(Encode(command, body, headers...))
}

// SendSplit sends raw as several text messages, cut at the offsets given.
func (c *Client) SendSplit(raw []byte, at ...int) {
	c.tb.Helper()
	from := 0
	for _, to := range at {
		c.Send(raw[from:to])
		from = to
	}
	c.Send(raw[from:])
}

// HeartBeat sends one STOMP heart-beat (an EOL).
func (c *Client) HeartBeat() error { return c.WriteMessage(websocket.TextMessage, []byte("\n")) }

// Ping sends a WebSocket ping.
func (c *Client) Ping(data string) error {
	return c.ws.WriteControl(websocket.PingMessage, []byte(data), time.Now().Add(time.Second))
}

// SendClose sends a close frame with code and reason.
func (c *Client) SendClose(code int, reason string) error {
	return c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

// Connect sends CONNECT with exactly these headers (name, value pairs) and
// returns the CONNECTED that must follow within 5 s.
func (c *Client) Connect(headers ...string) Frame {
	c.tb.Helper()
	c.SendFrame("CONNECT", nil, headers...)
	return c.Expect(5*time.Second, "CONNECTED")
}

// Subscribe sends SUBSCRIBE with id, destination and the headers given.
func (c *Client) Subscribe(id, destination string, headers ...string) {
	c.tb.Helper()
	c.SendFrame("SUBSCRIBE", nil, append([]string{"id", id, "destination", destination}, headers...)...)
}

// ---- reading ----------------------------------------------------------------

// ErrTimeout is what the reads return when nothing came in time, with a
// background reader; without one they return the connection's own timeout
// error. IsTimeout is true of both.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "stomptest: timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// IsTimeout reports whether err is a read or write timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// read is the one place messages come off the socket.
func (c *Client) read() ([]byte, error) {
	_, msg, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(msg, "\r\n")) == 0 {
		c.eols.Add(1)
	}
	return msg, nil
}

// endWith records how the connection ended.
func endWith(err error) End {
	e := End{Code: websocket.CloseAbnormalClosure, Err: err, At: time.Now()}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		e.Code, e.Text = ce.Code, ce.Text
	}
	return e
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		msg, err := c.read()
		if err != nil {
			c.end = endWith(err)
			return
		}
		c.mu.Lock()
		c.queue = append(c.queue, msg)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// NextMessage returns the next WebSocket message as it came, heart-beats
// included, waiting up to within; once the connection has ended, it
// returns the error that ended it.
func (c *Client) NextMessage(within time.Duration) ([]byte, error) {
	if !c.background {
		if c.ended {
			return nil, c.end.Err
		}
		c.ws.SetReadDeadline(time.Now().Add(within))
		msg, err := c.read()
		if err != nil && !IsTimeout(err) {
			c.end, c.ended = endWith(err), true
		}
		return msg, err
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		if msg, ok := c.dequeue(); ok {
			return msg, nil
		}
		select {
		case <-c.notify:
		case <-c.done:
			if msg, ok := c.dequeue(); ok {
				return msg, nil
			}
			return nil, c.end.Err
		case <-timer.C:
			if msg, ok := c.dequeue(); ok {
				return msg, nil
			}
			return nil, ErrTimeout
		}
	}
}

func (c *Client) dequeue() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == len(c.queue) {
		return nil, false
	}
	msg := c.queue[c.next]
	c.queue[c.next] = nil
	c.next++
	return msg, true
}

// Next returns the next frame, skipping heart-beats, waiting up to within
// in all. A message that does not decode comes back as a frame whose
// command is Undecodable. Once the connection has ended, Next returns the
// error that ended it.
func (c *Client) Next(within time.Duration) (Frame, error) {
	deadline := time.Now().Add(within)
	for {
		msg, err := c.NextMessage(time.Until(deadline))
		if err != nil {
			return Frame{}, err
		}
		if msg = bytes.TrimLeft(msg, "\r\n"); len(msg) > 0 {
			return decodeOrUndecodable(msg), nil
		}
	}
}

// Expect returns the next frame, failing the test unless it comes within
// the time given and has this command.
func (c *Client) Expect(within time.Duration, command string) Frame {
	c.tb.Helper()
	f, err := c.Next(within)
	if err != nil {
		c.tb.Fatalf("waiting %v for %s: %v", within, command, err)
	}
	if f.Command != command {
		c.tb.Fatalf("got %v, want %s", f, command)
	}
	return f
}

// End reports how the connection ended, once a read has seen it end.
func (c *Client) End() (End, bool) {
	if !c.background {
		return c.end, c.ended
	}
	select {
	case <-c.done:
		return c.end, true
	default:
		return End{}, false
	}
}

// ExpectClose fails the test unless the next message is the close, with
// code, within the time given.
func (c *Client) ExpectClose(within time.Duration, code int) End {
	c.tb.Helper()
	msg, err := c.NextMessage(within)
	if err == nil {
		c.tb.Fatalf("got %q, want close %d", msg, code)
	}
	e, ok := c.End()
	if !ok || e.Code != code {
		c.tb.Fatalf("want close %d, got %v", code, err)
	}
	return e
}

// Quiet is what a client saw during a window in which it watched.
type Quiet struct {
	Frames []Frame
	Closed bool
	End    End
	Lasted time.Duration // how long the window lasted (shorter if closed)
}

// Watch collects the frames that arrive within window, or until the
// connection ends. Heart-beats and pings are only counted.
func (c *Client) Watch(window time.Duration) Quiet {
	start := time.Now()
	deadline := start.Add(window)
	var q Quiet
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			q.End, q.Closed = c.End()
			break
		}
		q.Frames = append(q.Frames, f)
	}
	q.Lasted = time.Since(start)
	return q
}

func (q Quiet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %v:", q.Lasted.Round(time.Millisecond))
	for _, f := range q.Frames {
		fmt.Fprintf(&b, " %s(message=%q)", f.Command, f.Headers["message"])
	}
	if q.Closed {
		fmt.Fprintf(&b, " closed %d %q", q.End.Code, q.End.Text)
	} else {
		b.WriteString(" still open")
	}
	return b.String()
}
