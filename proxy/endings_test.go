package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zapcore"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/internal/tcpinfo"
	"github.com/stompgate/stompgate/internal/wstest"
	"github.com/stompgate/stompgate/keepalive"
)

// frozenBroker answers CONNECT with CONNECTED heart-beat:0,0 (Spring's
// simple broker without a TaskScheduler) and then neither reads nor
// writes: a process stopped with SIGSTOP, as its peer sees it (the kernel
// still accepts bytes until the buffers fill).
func frozenBroker(t *testing.T, protos []string) *upstream {
	release := make(chan struct{})
	up := newUpstream(t, protos, func(c *websocket.Conn) {
		if len(protos) > 0 && protos[0] == "v12.stomp" {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
			c.WriteMessage(websocket.TextMessage, []byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
		}
		<-release
	})
	// Registered after newUpstream's, so it runs before that cleanup
	// waits for this handler.
	t.Cleanup(func() { close(release) })
	return up
}

// A frozen broker that sends no heart-beats is found by upstream pings:
// the STOMP client gets ERROR + 1011, a pass-through client 1011, within
// UPSTREAM_PING_INTERVAL + PONG_TIMEOUT (+ 2 s).
func TestFrozenUpstreamWithoutHeartBeatsIsFound(t *testing.T) {
	const interval, pong = 300 * time.Millisecond, 300 * time.Millisecond
	opts := func(o *Options) {
		stompOpts(func(so *STOMPOptions) {
			so.Keepalive.UpstreamPingInterval = interval
			so.Keepalive.PongTimeout = pong
		})(o)
	}
	for _, tc := range []struct {
		name   string
		protos []string
	}{
		{"STOMP", []string{"v12.stomp"}},
		{"not STOMP", []string{"mqtt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := frozenBroker(t, tc.protos)
			p := newProxy(t, up.wsURL(), opts)
			c := stomptest.Dial(t, p.url("/ws"), stomptest.Subprotocols(tc.protos...), stomptest.HandshakeTimeout(2*time.Second))
			start := time.Now()
			if tc.name == "STOMP" {
				c.Send([]byte("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00"))
				if m := mustMsg(t, c, time.Second); !strings.HasPrefix(m, "CONNECTED\n") {
					t.Fatalf("got %q, want CONNECTED", m)
				}
			}
			q := c.Watch(interval + pong + 2*time.Second)
			if !q.Closed || q.End.Code != websocket.CloseInternalServerErr {
				t.Fatalf("after %v: %v, want close 1011", time.Since(start), q)
			}
			t.Logf("close %d %q after %v", q.End.Code, q.End.Text, time.Since(start).Round(time.Millisecond))
			var errFrame string
			for _, f := range q.Frames {
				if f.Command == "ERROR" {
					errFrame = f.Headers["message"]
				}
			}
			if tc.name == "STOMP" && errFrame != "upstream pong timeout after 300ms" {
				t.Fatalf("ERROR frame %q, want the verdict", errFrame)
			}
			if tc.name != "STOMP" && errFrame != "" {
				t.Fatalf("a client that is not STOMP got %q", errFrame)
			}
			e := p.waitSessionEnd(t, 2*time.Second)
			if e.ContextMap()["liveness_verdict"] != "upstream pong timeout after 300ms" {
				t.Fatalf("logged %v", e.ContextMap())
			}
		})
	}
}

// A pong answers the ping: a broker that only answers pings lives on.
func TestUpstreamPongKeepsSessionUp(t *testing.T) {
	up := newUpstream(t, []string{"mqtt"}, func(c *websocket.Conn) {
		for {
			if _, _, err := c.ReadMessage(); err != nil { // answers pings
				return
			}
		}
	})
	p := newProxy(t, up.wsURL(), stompOpts(func(so *STOMPOptions) {
		so.Keepalive.UpstreamPingInterval = 100 * time.Millisecond
		so.Keepalive.PongTimeout = 200 * time.Millisecond
	}))
	c := stomptest.Dial(t, p.url("/ws"), stomptest.Subprotocols("mqtt"), stomptest.HandshakeTimeout(2*time.Second))
	if _, err := readMsg(c, 1500*time.Millisecond); !isTimeout(err) {
		t.Fatalf("session ended: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WRITE_TIMEOUT is about progress: a broker that reads slowly but steadily
// is never cut; one that reads nothing is cut at WRITE_TIMEOUT.
func TestWriteTimeoutMeansNoProgress(t *testing.T) {
	// Scaled from the defaults (10 s, a 40 s run) to 2 s and 10 s: on
	// loopback a slow reader's acknowledgements come in lumps of up to a
	// second, so a timeout much shorter would judge the lumps, not the
	// reader.
	const writeTimeout = 2 * time.Second
	frame := func(n int) []byte {
		return append(append([]byte("SEND\ndestination:/q\n\n"), bytes.Repeat([]byte("x"), n)...), 0)
	}
	// run sends 1 MiB frames for sendFor through stompgate to a broker
	// reading rate bytes a second (0: nothing), and reports when the
	// session ended, counted from stompgate's last progress: the last time
	// bytes reached the broker's socket.
	run := func(t *testing.T, rate int, sendFor time.Duration, mod func(*Options)) (cut time.Duration, ended bool) {
		release := make(chan struct{})
		var lastArrival atomic.Int64
		up := newUpstream(t, nil, func(c *websocket.Conn) {
			nc := c.NetConn()
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.SetReadBuffer(16 << 10)
			}
			buf := make([]byte, 4<<10)
			for {
				select {
				case <-release:
					return
				default:
				}
				if rate == 0 {
					// Reads nothing; notes when bytes last arrived.
					var last int
					for {
						select {
						case <-release:
							return
						case <-time.After(10 * time.Millisecond):
						}
						if _, unread, ok := tcpinfo.PeerSilence(nc); ok && unread != last {
							last = unread
							lastArrival.Store(time.Now().UnixNano())
						}
					}
				}
				if _, err := nc.Read(buf); err != nil {
					return
				}
				time.Sleep(time.Duration(len(buf)) * time.Second / time.Duration(rate))
			}
		})
		p := newProxy(t, up.wsURL(), func(o *Options) {
			o.WriteTimeout = writeTimeout
			if mod != nil {
				mod(o)
			}
		})
		// Registered last, so it runs first: the broker stops (and closes)
		// before the proxy's cleanup waits for the session.
		t.Cleanup(func() { close(release) })
		c := dial(t, p.url("/ws"), nil)
		start := time.Now()
		lastArrival.Store(start.UnixNano())
		writerDone := make(chan struct{})
		go func() {
			defer close(writerDone)
			big := frame(1<<20 - 64) // 1 MiB frames, as the client
			c.SetWriteDeadline(start.Add(sendFor))
			for c.WriteMessage(websocket.TextMessage, big) == nil {
			}
		}()
		defer func() { c.Close(); <-writerDone }()
		// The client hears of the end when stompgate decides it (the log
		// line comes after the close handshakes).
		c.SetReadDeadline(start.Add(sendFor))
		if _, _, err := c.ReadMessage(); !isTimeout(err) {
			t.Logf("client: %v", err)
			return time.Since(time.Unix(0, lastArrival.Load())), true
		}
		t.Logf("%d bytes forwarded to the broker in %v", p.h.Sessions()[0].ClientBytes, sendFor)
		return 0, false
	}
	t.Run("slow reader is never cut", func(t *testing.T) {
		if cut, ended := run(t, 64<<10, 5*writeTimeout, nil); ended {
			t.Fatalf("a broker reading 64 KiB/s was cut after %v", cut)
		}
	})
	// The broker reads raw bytes and so answers no ping, and the pings
	// wait behind the data anyway: the progress of stompgate's writes is
	// its proof of life.
	t.Run("slow reader is alive without pongs", func(t *testing.T) {
		pings := func(o *Options) {
			// Progress shows in lumps (loopback acknowledgements, checked
			// every 250 ms while a write waits): the pong timeout leaves
			// room for several.
			o.STOMP.Keepalive = keepalive.Config{UpstreamPingInterval: 500 * time.Millisecond, PongTimeout: 1500 * time.Millisecond, IdleTimeout: -1}
		}
		if cut, ended := run(t, 64<<10, 3*writeTimeout, pings); ended {
			t.Fatalf("a broker reading 64 KiB/s, pinged every 500ms, was cut after %v", cut)
		}
	})
	t.Run("reader of nothing is cut", func(t *testing.T) {
		cut, ended := run(t, 0, writeTimeout+2*time.Second, nil)
		if !ended {
			t.Fatal("a broker reading nothing was not cut")
		}
		t.Logf("cut %v after the last bytes reached the broker's socket", cut)
		if cut < writeTimeout-time.Second || cut > writeTimeout+time.Second {
			t.Fatalf("cut %v after the last bytes reached the broker's socket, want WRITE_TIMEOUT (%v) ± 1 s", cut, writeTimeout)
		}
	})
}

// A client that stops reading under a flood is gone: from the decision on,
// stompgate reads at most 1 MiB more from the broker (what it takes to see
// a RECEIPT or close), so the broker's further messages stay with it.
func TestFloodAfterClientGoneIsNotConsumed(t *testing.T) {
	var wrote atomic.Int64
	up := newUpstream(t, []string{"v12.stomp"}, func(c *websocket.Conn) {
		c.ReadMessage() // CONNECT
		c.WriteMessage(websocket.TextMessage, []byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
		msg := append([]byte("MESSAGE\ndestination:/topic/a\nsubscription:0\nmessage-id:1\n\n"), bytes.Repeat([]byte("m"), 1<<10)...)
		msg = append(msg, 0)
		for {
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
			wrote.Add(int64(len(msg)))
		}
	})
	p := newProxy(t, up.wsURL(), func(o *Options) {
		stompOpts(nil)(o)
		o.WriteTimeout = 200 * time.Millisecond
	})
	d := websocket.Dialer{Subprotocols: []string{"v12.stomp"}, NetDial: wstest.DialReadBuffer(4096)}
	c, _, err := d.Dial(p.url("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, []byte("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00"))
	// ... and never reads again.
	e := p.waitSessionEnd(t, 5*time.Second)
	m := e.ContextMap()
	discarded, _ := m["upstream_discarded_bytes"].(int64)
	t.Logf("ended %q; read %d bytes from the broker after the decision; the broker wrote %d in all", m["end"], discarded, wrote.Load())
	// What the broker could write in all: what filled the socket buffers
	// on the way (a few MiB each on loopback) and the 1 MiB; without the
	// bound, stompgate read hundreds of MiB in the close timeout.
	if wrote.Load() > 32<<20 {
		t.Fatalf("the broker wrote %d bytes: stompgate kept consuming its flood", wrote.Load())
	}
	if discarded > maxDiscard+64<<10 {
		t.Fatalf("read %d bytes from the broker after deciding the client was gone, want at most 1 MiB", discarded)
	}
	if !strings.HasPrefix(fmt.Sprint(m["end"]), "client") || m["closed_by"] != "client" {
		t.Fatalf("end %q closed_by %v, want the client's", m["end"], m["closed_by"])
	}
}

// Before a session is known to be STOMP, every client message reaches the
// broker as it was sent: empty ones, EOL-only ones, text and binary, each
// with its own boundaries.
func TestFirstMessagesKeepTheirBoundaries(t *testing.T) {
	type msg struct {
		mt   int
		data string
	}
	sent := []msg{
		{websocket.TextMessage, ""},
		{websocket.BinaryMessage, ""},
		{websocket.TextMessage, "\n"},
		{websocket.BinaryMessage, "\r\n"},
		{websocket.TextMessage, "x"},
		{websocket.BinaryMessage, "\n"},
	}
	for _, mode := range []keepalive.Mode{keepalive.Terminate, keepalive.Passthrough} {
		t.Run(mode.String(), func(t *testing.T) {
			got := make(chan msg, 16)
			up := newUpstream(t, nil, func(c *websocket.Conn) {
				for {
					mt, b, err := c.ReadMessage()
					if err != nil {
						return
					}
					got <- msg{mt, string(b)}
				}
			})
			p := newProxy(t, up.wsURL(), stompOpts(func(so *STOMPOptions) { so.Keepalive.Mode = mode }))
			c := dial(t, p.url("/ws"), nil)
			for _, m := range sent {
				if err := c.WriteMessage(m.mt, []byte(m.data)); err != nil {
					t.Fatal(err)
				}
			}
			for i, want := range sent {
				select {
				case m := <-got:
					if m != want {
						t.Fatalf("message %d: got %d %q, want %d %q", i, m.mt, m.data, want.mt, want.data)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("message %d (%d %q) never arrived", i, want.mt, want.data)
				}
			}
		})
	}
}

// A frame over MAX_FRAME_BYTES sent in several WebSocket messages (as
// stompjs splits large frames): the client, still sending when stompgate
// closes, gets its ERROR and 1009, not a TCP reset.
func TestOversizedSplitFrameErrorArrives(t *testing.T) {
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, c, _ := connectedSession(t, func(o *Options) {
				stompOpts(nil)(o)
				o.STOMP.Limits.MaxFrameBytes = 64 << 10
			})
			frame := append([]byte("SEND\ndestination:/q\n\n"), bytes.Repeat([]byte("z"), 70<<10)...)
			frame = append(frame, 0)
			ws := c.Conn()
			go func() {
				for len(frame) > 0 {
					n := min(16<<10, len(frame))
					ws.SetWriteDeadline(time.Now().Add(time.Second))
					if ws.WriteMessage(websocket.TextMessage, frame[:n]) != nil {
						return
					}
					frame = frame[n:]
				}
			}()
			var errFrame string
			for {
				m, err := readMsg(c, 2*time.Second)
				if err != nil {
					if e, _ := c.End(); e.Code != websocket.CloseMessageTooBig {
						t.Fatalf("want close 1009, got %v (ERROR seen: %v)", err, errFrame != "")
					}
					break
				}
				if strings.HasPrefix(m, "ERROR\n") {
					errFrame = m
				}
			}
			if errFrame == "" {
				t.Fatal("no ERROR before the close")
			}
		})
	}
}

// A close never waits CLOSE_TIMEOUT and then WRITE_TIMEOUT more behind a
// blocked data write: once the end is decided, every write, a blocked one
// included, ends at the close deadline.
func TestCloseIsBoundedBehindABlockedWrite(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, nil, func(c *websocket.Conn) {
		msg := bytes.Repeat([]byte("m"), 64<<10)
		for {
			select {
			case <-release:
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			c.WriteMessage(websocket.BinaryMessage, msg)
		}
	})
	const closeTimeout = 300 * time.Millisecond
	p := newProxy(t, up.wsURL(), func(o *Options) {
		o.CloseTimeout = closeTimeout
		o.WriteTimeout = 10 * time.Second
	})
	t.Cleanup(func() { close(release) })
	d := websocket.Dialer{NetDial: wstest.DialReadBuffer(4096)}
	c, _, err := d.Dial(p.url("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client reads nothing: stompgate's write to it blocks.
	// Blocked: what stompgate read from the broker stops growing.
	var last int64
	var still time.Time
	waitFor(t, 5*time.Second, func() bool {
		s := p.h.Sessions()
		if len(s) != 1 || s[0].UpstreamBytes == 0 {
			return false
		}
		if s[0].UpstreamBytes != last {
			last, still = s[0].UpstreamBytes, time.Now()
			return false
		}
		return time.Since(still) > 200*time.Millisecond
	})
	start := time.Now()
	p.h.CloseAll(websocket.CloseGoingAway, "bye")
	e := p.waitSessionEnd(t, 5*time.Second)
	took := e.Time.Sub(start)
	t.Logf("session ended %v after the decision: %v", took.Round(time.Millisecond), e.ContextMap()["end"])
	if took > closeTimeout+500*time.Millisecond {
		t.Fatalf("session ended %v after the decision, want within CLOSE_TIMEOUT (%v)", took, closeTimeout)
	}
}

// A broker that falls silent after the client's DISCONNECT (Spring's
// broker stops its heart-beats there) has answered it: when the client,
// too, leaves without closing (a SockJS polling client stops polling), the
// session ended because the client disconnected, not because the broker
// died.
func TestSilentBrokerAfterDisconnectIsTheClients(t *testing.T) {
	up, accept := broker(t)
	p := newProxy(t, up.wsURL(), stompOpts(func(o *STOMPOptions) {
		o.UpstreamHeartBeat = inspect.HeartBeat{Send: 100 * time.Millisecond, Receive: 100 * time.Millisecond}
		o.Keepalive.Tolerance = 2
	}))
	c := stompDial(t, p.url("/ws"))
	b := accept()
	c.Send([]byte("CONNECT\naccept-version:1.2\n\n\x00"))
	mustMsg(t, b, time.Second)
	b.Send([]byte("CONNECTED\nversion:1.2\nheart-beat:100,100\n\n\x00"))
	mustMsg(t, c, time.Second)
	c.Send([]byte("DISCONNECT\nreceipt:77\n\n\x00"))
	if got := mustMsg(t, b, time.Second); !strings.HasPrefix(got, "DISCONNECT") {
		t.Fatalf("broker got %q", got)
	}
	b.Send([]byte("RECEIPT\nreceipt-id:77\n\n\x00"))
	mustMsg(t, c, time.Second)
	// Both peers now say nothing and close nothing.
	e := p.waitSessionEnd(t, 3*time.Second)
	if got := e.ContextMap()["end"]; got != "client disconnected" {
		t.Errorf("end %v, want client disconnected", got)
	}
	if got := e.ContextMap()["closed_by"]; got != "client" || e.Level != zapcore.InfoLevel {
		t.Errorf("closed_by %v at %v, want client at info", got, e.Level)
	}
}
