package springbroker

import (
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Read side: server {0, 100ms}, client heart-beat:100,0 ->
// readInterval = max(100,100)*3 = 300ms, task every 100ms.
var readCfg = Config{HeartBeat: [2]time.Duration{0, 100 * time.Millisecond}}

const readInterval = 300 * time.Millisecond

// lastActivity returns the time of the last frame or heart-beat the broker
// received from the session before the given time.
func lastActivity(e *env, sid string, before time.Time) time.Time {
	var last time.Time
	for _, ev := range e.rec.all(func(ev Event) bool {
		return ev.Session == sid && (ev.Kind == EventFrame || ev.Kind == EventHeartbeat) && ev.Time.Before(before)
	}) {
		last = ev.Time
	}
	return last
}

// (now - lastReadTime) > readInterval -> ERROR "Session closed." + 1002.
func TestReadTimeout(t *testing.T) {
	e := newEnv(t, readCfg)
	c := e.dial()
	f := c.connect("heart-beat:100,0")
	headersEqual(t, f.Headers, "version:1.2", "heart-beat:0,100")
	c.expectError("Session closed.")
	to := e.rec.wait(t, "read timeout", kindIs(c.sid, EventReadTimeout))
	idle := to.Time.Sub(lastActivity(e, c.sid, to.Time))
	if idle <= readInterval {
		t.Fatalf("timed out after %v idle, read interval %v", idle, readInterval)
	}
	closed := e.rec.wait(t, "closed", kindIs(c.sid, EventClosed))
	if closed.CloseCode != websocket.CloseProtocolError {
		t.Fatalf("close event %+v", closed)
	}
	if e.b.Sessions() != 0 {
		t.Fatalf("Sessions() = %d", e.b.Sessions())
	}
}

// No read check when the client promises nothing (cx=0) — or the server
// asks for nothing (sy=0): the session outlives several intervals.
func TestNoReadCheckWithoutPromise(t *testing.T) {
	e := newEnv(t, readCfg)
	idle := e.dial()
	idle.connect("heart-beat:0,0")
	// A second session that does time out, as a clock: by the time it is
	// dropped, the first one has been idle for longer than 300ms too.
	clock := e.dial()
	clock.connect("heart-beat:100,0")
	clock.expectError("Session closed.")
	idle.sync()
	if n := e.rec.count(kindIs(idle.sid, EventReadTimeout)); n != 0 {
		t.Fatal("session without promised heart-beats timed out")
	}
}

// Every STOMP message counts, EOL heart-beats included.
func TestEOLHeartbeatsKeepSessionAlive(t *testing.T) {
	e := newEnv(t, readCfg)
	c := e.dial()
	connected := time.Now()
	c.connect("heart-beat:100,0")
	// 20 x 50ms > 3 read intervals; at half the client's promised period,
	// so a tick delayed by a loaded machine still arrives within the read
	// interval.
	const n, every = 20, 50 * time.Millisecond
	tick := time.NewTicker(every)
	for i := 0; i < n; i++ {
		<-tick.C
		c.send("\n")
	}
	tick.Stop()
	e.rec.waitN(t, n, "heart-beats", kindIs(c.sid, EventHeartbeat))
	c.expectError("Session closed.")
	to := e.rec.wait(t, "read timeout", kindIs(c.sid, EventReadTimeout))
	if to.Time.Sub(connected) < n*every {
		t.Fatalf("timed out %v after CONNECT, while heart-beats were still sent", to.Time.Sub(connected))
	}
	if idle := to.Time.Sub(lastActivity(e, c.sid, to.Time)); idle <= readInterval {
		t.Fatalf("idle %v", idle)
	}
}

// EOLs following a frame in the same WebSocket message are swallowed
// (skipEol): no heart-beat message, but the frame itself is activity — and a
// SEND to a non-broker prefix counts too.
func TestFrameWithTrailingEOLsCountsButIsNoHeartbeat(t *testing.T) {
	e := newEnv(t, readCfg)
	c := e.dial()
	connected := time.Now()
	c.connect("heart-beat:100,0")
	const n, every = 20, 50 * time.Millisecond // as above: margin for a loaded machine
	tick := time.NewTicker(every)
	for i := 0; i < n; i++ {
		<-tick.C
		c.send("SEND\ndestination:/app/x\n\nhi\x00\n\n\r\n")
	}
	tick.Stop()
	e.rec.waitN(t, n, "SEND frames", frameIs(c.sid, "SEND", EventFrame))
	c.expectError("Session closed.")
	to := e.rec.wait(t, "read timeout", kindIs(c.sid, EventReadTimeout))
	if to.Time.Sub(connected) < n*every {
		t.Fatalf("timed out %v after CONNECT, while frames were still sent", to.Time.Sub(connected))
	}
	if hb := e.rec.count(kindIs(c.sid, EventHeartbeat)); hb != 0 {
		t.Fatalf("%d heart-beat messages decoded from frame+EOL messages", hb)
	}
}

// WebSocket pings are answered but never count as activity.
func TestPingsDoNotCountAsActivity(t *testing.T) {
	e := newEnv(t, readCfg)
	c := e.dial()
	c.connect("heart-beat:100,0")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if c.conn.WriteControl(websocket.PingMessage, []byte("keepalive"), time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	c.expectError("Session closed.")
	close(stop)
	wg.Wait()
	to := e.rec.wait(t, "read timeout", kindIs(c.sid, EventReadTimeout))
	if idle := to.Time.Sub(lastActivity(e, c.sid, to.Time)); idle <= readInterval {
		t.Fatalf("idle %v", idle)
	}
	if n := e.rec.count(func(ev Event) bool {
		return ev.Session == c.sid && ev.Kind == EventPing && ev.Time.Before(to.Time)
	}); n < 3 {
		t.Fatalf("only %d pings before the timeout", n)
	}
	select {
	case <-c.pongs:
	default:
		t.Fatal("pings were not answered")
	}
}

// A MESSAGE from the application (broker channel) is nobody's read activity
// (spring-projects/spring-framework#24737).
func TestPublishDoesNotCountAsRead(t *testing.T) {
	e := newEnv(t, readCfg)
	c := e.dial()
	c.connect("heart-beat:100,0")
	c.send("SUBSCRIBE\nid:0\ndestination:/topic/t\n\n\x00")
	c.sync()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.b.Publish("/topic/t", []byte("tick"))
			}
		}
	}()
	messages := 0
	for {
		r := c.nextFrame()
		if r.frame.Command == "MESSAGE" {
			messages++
			continue
		}
		if r.frame.Command != "ERROR" {
			t.Fatalf("got %s", r.frame.Command)
		}
		if m, _ := r.frame.Header("message"); m != "Session closed." {
			t.Fatalf("ERROR %q", m)
		}
		break
	}
	c.expectClose(websocket.CloseProtocolError)
	close(stop)
	wg.Wait()
	if messages < 3 {
		t.Fatalf("only %d MESSAGEs before the timeout", messages)
	}
	to := e.rec.wait(t, "read timeout", kindIs(c.sid, EventReadTimeout))
	if idle := to.Time.Sub(lastActivity(e, c.sid, to.Time)); idle <= readInterval {
		t.Fatalf("idle %v", idle)
	}
}

// Write side: server {50ms, 0} (task every 50ms), client heart-beat:0,400 ->
// writeInterval = max(400, 50) = 400ms. The first "\n" comes after 400ms of
// no MESSAGE, then — lastWriteTime not being updated by heart-beats — one on
// every 50ms tick.
var writeCfg = Config{HeartBeat: [2]time.Duration{50 * time.Millisecond, 0}}

const writeInterval = 400 * time.Millisecond

func TestServerHeartbeatOnEveryTickAfterIdle(t *testing.T) {
	e := newEnv(t, writeCfg)
	c := e.dial()
	f := c.connect("heart-beat:0,400")
	headersEqual(t, f.Headers, "version:1.2", "heart-beat:50,0")
	connect := e.rec.wait(t, "CONNECT", frameIs(c.sid, "CONNECT", EventFrame))
	beats := e.rec.waitN(t, 6, "server heart-beats", kindIs(c.sid, EventSentHeartbeat))
	if d := beats[0].Time.Sub(connect.Time); d <= writeInterval {
		t.Fatalf("first heart-beat %v after CONNECT, write interval %v", d, writeInterval)
	}
	for i := 1; i < len(beats); i++ {
		if gap := beats[i].Time.Sub(beats[i-1].Time); gap >= writeInterval/2 {
			t.Fatalf("gap %v between heart-beats %d and %d: expected one per 50ms tick", gap, i-1, i)
		}
	}
	// The client sees bare "\n" WebSocket messages.
	for i := 0; i < 3; i++ {
		r := c.next()
		if !r.heartbeat || string(r.raw) != "\n" {
			t.Fatalf("got %+v", r)
		}
	}
}

// Only a MESSAGE to the session (sendMessageToSubscribers) resets
// lastWriteTime: after it, the next heart-beat is a full writeInterval away.
func TestMessageResetsWriteTime(t *testing.T) {
	e := newEnv(t, writeCfg)
	c := e.dial()
	c.connect("heart-beat:0,400")
	c.send("SUBSCRIBE\nid:0\ndestination:/topic/t\n\n\x00")
	c.sync()
	e.rec.wait(t, "first heart-beat", kindIs(c.sid, EventSentHeartbeat))
	e.b.Publish("/topic/t", []byte("x"))
	msg := e.rec.wait(t, "MESSAGE", frameIs(c.sid, "MESSAGE", EventSentFrame))
	next := e.rec.wait(t, "heart-beat after MESSAGE", func(ev Event) bool {
		return ev.Session == c.sid && ev.Kind == EventSentHeartbeat && ev.Time.After(msg.Time)
	})
	if d := next.Time.Sub(msg.Time); d < writeInterval-10*time.Millisecond {
		t.Fatalf("heart-beat %v after a MESSAGE, write interval %v", d, writeInterval)
	}
}

// CONNECTED, RECEIPT and client activity do not reset lastWriteTime either.
func TestClientActivityDoesNotResetWriteTime(t *testing.T) {
	e := newEnv(t, writeCfg)
	c := e.dial()
	c.connect("heart-beat:0,400")
	e.rec.wait(t, "first heart-beat", kindIs(c.sid, EventSentHeartbeat))
	c.send("\n")
	hb := e.rec.wait(t, "client heart-beat", kindIs(c.sid, EventHeartbeat))
	next := e.rec.wait(t, "server heart-beat after client activity", func(ev Event) bool {
		return ev.Session == c.sid && ev.Kind == EventSentHeartbeat && ev.Time.After(hb.Time)
	})
	if d := next.Time.Sub(hb.Time); d >= writeInterval/2 {
		t.Fatalf("next server heart-beat %v after client activity: expected the next tick", d)
	}
}

// One heart-beat task for all sessions: two sessions that are both past their
// write interval get their heart-beats on the same ticks.
func TestHeartbeatTaskIsShared(t *testing.T) {
	e := newEnv(t, Config{HeartBeat: [2]time.Duration{100 * time.Millisecond, 0}})
	a := e.dial()
	a.connect("heart-beat:0,100")
	e.rec.wait(t, "a heart-beat", kindIs(a.sid, EventSentHeartbeat))
	b := e.dial()
	b.connect("heart-beat:0,100")
	bBeats := e.rec.waitN(t, 4, "b heart-beats", kindIs(b.sid, EventSentHeartbeat))
	// The sends of one tick run on the outbound executor's workers, so a's
	// may be recorded just after b's: wait for it before comparing.
	last := bBeats[len(bBeats)-1].Time
	isA := kindIs(a.sid, EventSentHeartbeat)
	e.rec.wait(t, "a heart-beat on b's last tick", func(ev Event) bool {
		return isA(ev) && ev.Time.After(last.Add(-20*time.Millisecond))
	})
	aBeats := e.rec.all(isA)
	for _, hb := range bBeats {
		found := false
		for _, ha := range aBeats {
			if d := hb.Time.Sub(ha.Time); d > -20*time.Millisecond && d < 20*time.Millisecond {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("b heart-beat at %s has no a heart-beat on the same tick\n%s", hb.Time.Format("15:04:05.000"), e.rec.dump())
		}
	}
}
