package e2e

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stompgate/stompgate/e2e/peers"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
	"github.com/stompgate/stompgate/proxy"
)

// Behind RabbitMQ every session ends with the broker's close 1000 "STOMP
// died", whoever ended it. These tests pin that stompgate names the cause
// that came first: the client's DISCONNECT, the client's loss, a liveness
// verdict, and that it logs the ERROR the client saw.

// sessionEnd waits for the session's one "session ended" line.
func (g *gate) sessionEnd(t testing.TB, within time.Duration) observer.LoggedEntry {
	t.Helper()
	var found []observer.LoggedEntry
	if !eventually(within, func() bool {
		found = g.logs.FilterMessage("session ended").All()
		return len(found) > 0
	}) {
		t.Fatalf("no session ended line within %v", within)
	}
	if len(found) != 1 {
		t.Fatalf("%d session ended lines, want 1", len(found))
	}
	return found[0]
}

func field(e observer.LoggedEntry, key string) any { return e.ContextMap()[key] }

func TestRabbitCleanDisconnectIsTheClients(t *testing.T) {
	origin, path := rabbit(t)
	m := metrics.Discard()
	g := startGate(t, origin, func(o *proxy.Options) { o.Metrics = m })
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	c.SendFrame("DISCONNECT", nil, "receipt", "bye")
	o := observe(c, 2*time.Second)
	if o.CloseCode != 1000 {
		t.Fatalf("client observed %+v, want close 1000", o)
	}
	e := g.sessionEnd(t, 3*time.Second)
	t.Logf("session ended: %v", e.ContextMap())
	if field(e, "closed_by") != "client" || field(e, "end") != "client disconnected" || e.Level != zapcore.InfoLevel {
		t.Fatalf("logged closed_by=%v end=%q at %v, want client / client disconnected / info", field(e, "closed_by"), field(e, "end"), e.Level)
	}
	if n := counter(t, m, "stompgate_closes_total", "leg", "client", "code", "1000"); n != 1 {
		t.Fatalf("client closes with 1000 counted %v, want 1", n)
	}
}

func TestRabbitClientKilledIsTheClients(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil) // CloseTimeout 1 s
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest()...)
	c.Subscribe("s1", uniqueDest(t), "receipt", "r1")
	c.Expect(5*time.Second, "RECEIPT")
	killed := time.Now()
	c.Conn().NetConn().Close() // what the kernel does for a killed process
	e := g.sessionEnd(t, 5*time.Second)
	took := e.Time.Sub(killed)
	t.Logf("session ended %v after the kill: %v", took.Round(time.Millisecond), e.ContextMap())
	if limit := time.Second + time.Second; took > limit {
		t.Errorf("logged %v after the kill, want within CLOSE_TIMEOUT + 1 s (%v)", took, limit)
	}
	if field(e, "closed_by") != "client" || field(e, "client_close_code") != int64(1006) || e.Level != zapcore.WarnLevel {
		t.Fatalf("logged closed_by=%v client_close_code=%v at %v, want client / 1006 / warn", field(e, "closed_by"), field(e, "client_close_code"), e.Level)
	}
	if end, _ := field(e, "end").(string); !strings.HasPrefix(end, "client connection lost") {
		t.Fatalf("end %q, want the client's loss", end)
	}
}

func TestRabbitFrozenClientVerdictIsTheCause(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, func(o *proxy.Options) {
		o.STOMP.Keepalive = keepalive.Config{ClientPingInterval: 300 * time.Millisecond, PongTimeout: 300 * time.Millisecond, IdleTimeout: -1}
	})
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest("heart-beat", "0,0")...)
	// From here on the client reads nothing, so it answers no ping: frozen.
	e := g.sessionEnd(t, 5*time.Second)
	t.Logf("session ended: %v", e.ContextMap())
	verdict, _ := field(e, "liveness_verdict").(string)
	if verdict == "" || field(e, "end") != verdict || field(e, "closed_by") != "proxy" || e.Level != zapcore.WarnLevel {
		t.Fatalf("logged end=%q verdict=%q closed_by=%v at %v, want the verdict as the end, by proxy, at warn", field(e, "end"), verdict, field(e, "closed_by"), e.Level)
	}
}

func TestRabbitBadPasscodeLogsTheErrorTheClientSaw(t *testing.T) {
	origin, path := rabbit(t)
	g := startGate(t, origin, nil)
	c := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"))
	c.SendFrame("CONNECT", nil, "accept-version", "1.2", "host", "/", "login", "guest", "passcode", "wrong")
	f := c.Expect(5*time.Second, "ERROR")
	c.Conn().NetConn().Close()
	e := g.sessionEnd(t, 5*time.Second)
	t.Logf("client saw ERROR message:%q; session ended: %v", f.Headers["message"], e.ContextMap())
	if got := field(e, "upstream_error"); got != f.Headers["message"] || got != "Bad CONNECT" {
		t.Fatalf("upstream_error=%q, client saw %q (want Bad CONNECT)", got, f.Headers["message"])
	}
}

// nginx's proxy_read_timeout cuts a silent tunnel: stompgate sees its
// client leg go (nginx sends no close frame) and names the client's loss
// as the cause, although RabbitMQ then closes with 1000 "STOMP died".
func TestRabbitClientCutByNginxIsTheClients(t *testing.T) {
	origin, path := rabbit(t)
	peers.Nginx(t)
	const timeout = time.Second
	g := startGate(t, origin, func(o *proxy.Options) {
		// No keepalive traffic toward the client: nginx will cut it.
		o.STOMP.Keepalive = keepalive.Config{IdleTimeout: -1}
	})
	addr := peers.StartNginx(t, nginxWebSocketConf(strings.TrimPrefix(g.srv.URL, "http://"), timeout))
	c := stomptest.Dial(t, "ws://"+addr+path, stomptest.Subprotocols("v12.stomp"))
	c.Connect(guest("heart-beat", "0,0")...)
	e := g.sessionEnd(t, 10*timeout)
	t.Logf("session ended: %v", e.ContextMap())
	end, _ := field(e, "end").(string)
	if field(e, "closed_by") != "client" || !strings.HasPrefix(end, "client connection lost") || field(e, "client_close_code") != int64(1006) || e.Level != zapcore.WarnLevel {
		t.Fatalf("logged closed_by=%v end=%q client_close_code=%v at %v, want the client's loss (1006) at warn", field(e, "closed_by"), end, field(e, "client_close_code"), e.Level)
	}
}
