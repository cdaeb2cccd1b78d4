package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stompgate/stompgate/metrics"
)

// rawHandshake sends an upgrade request with the given protocol version
// over a new TCP connection and returns the response's status and body.
func rawHandshake(t *testing.T, addr, proto string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws %s\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", proto, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s handshake: %v", proto, err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, string(body)
}

// RFC 6455 section 4.2.1: the opening handshake must be HTTP/1.1 or later.
// An HTTP/1.0 upgrade request is answered 400, saying why, before the
// upstream is dialled, and counted as client_failed.
func TestHTTP10UpgradeIs400BeforeDial(t *testing.T) {
	var dialled atomic.Int32
	up := newUpstream(t, nil, func(c *websocket.Conn) { dialled.Add(1); echo(c) })
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) { o.Metrics = m })
	addr := strings.TrimPrefix(p.srv.URL, "http://")

	status, body := rawHandshake(t, addr, "HTTP/1.0")
	if status != http.StatusBadRequest || !strings.Contains(body, "stompgate: WebSocket handshakes need HTTP/1.1 or later") || !strings.Contains(body, "got HTTP/1.0") {
		t.Fatalf("HTTP/1.0 upgrade: %d %q, want 400 saying HTTP/1.1 is needed", status, body)
	}
	up.mu.Lock()
	reached := up.lastReq != nil
	up.mu.Unlock()
	if reached || dialled.Load() != 0 {
		t.Fatal("the upstream was dialled for an HTTP/1.0 handshake")
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="client_failed"}`); n != 1 {
		t.Errorf("client_failed = %v, want 1", n)
	}
	es := p.logs.FilterMessage("handshake refused").All()
	if len(es) != 1 || es[0].ContextMap()["status"] != int64(400) {
		t.Errorf("log lines %v, want one 'handshake refused' with status 400", es)
	}

	// The same request as HTTP/1.1 is upgraded.
	if status, body := rawHandshake(t, addr, "HTTP/1.1"); status != http.StatusSwitchingProtocols {
		t.Fatalf("HTTP/1.1 upgrade: %d %q", status, body)
	}
	// Counted after the 101 is written: the client may read it first.
	waitFor(t, time.Second, func() bool { return scrape(t, m, `stompgate_handshakes_total{result="ok"}`) == 1 })
}

// A flood of refused handshakes (MAX_CONNECTIONS reached: 503) writes a
// bounded number of log lines: the first few of each second, then one
// summary line counting the rest. The metric counts every one, and the
// lines written plus the summaries' counts account for every refusal.
func TestRefusedHandshakeLogsAreSampled(t *testing.T) {
	up := newUpstream(t, nil, echo)
	m := metrics.Discard()
	p := newProxy(t, up.wsURL(), func(o *Options) { o.MaxConnections = 1; o.Metrics = m })
	held := dial(t, p.url("/ws"), nil)
	defer held.Close()
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == 1 })

	const total, workers = 2000, 8
	var refused, other atomic.Int32
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			for range total / workers {
				c, resp, err := d.Dial(p.url("/ws"), nil)
				switch {
				case err == nil:
					c.Close()
					other.Add(1)
				case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if refused.Load() != total {
		t.Fatalf("%d of %d handshakes refused with 503 (others: %d, first error %v)", refused.Load(), total, other.Load(), firstErr.Load())
	}
	if n := scrape(t, m, `stompgate_handshakes_total{result="limit"}`); n != total {
		t.Errorf("limit = %v, want %d", n, total)
	}

	// Every refusal is accounted for once the summaries of the windows
	// opened by the flood are written (at most failLogWindow after it).
	var lines, summarized int
	deadline := time.Now().Add(failLogWindow + 2*time.Second)
	for {
		lines = p.logs.FilterMessage("handshake refused").Len()
		summarized = 0
		for _, e := range p.logs.FilterMessage("handshake refused (sampled)").All() {
			f := e.ContextMap()
			if f["status"] != int64(503) || f["reason"] != "connection limit reached" {
				t.Errorf("summary fields %v", f)
			}
			summarized += int(f["suppressed"].(int64))
		}
		if lines+summarized >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	all := p.logs.Len()
	t.Logf("%d refused handshakes in %v: %d log lines in all (%d 'handshake refused', %d summaries counting %d suppressed)",
		total, took.Round(time.Millisecond), all, lines, p.logs.FilterMessage("handshake refused (sampled)").Len(), summarized)
	if lines+summarized != total {
		t.Errorf("%d lines + %d suppressed = %d, want %d", lines, summarized, lines+summarized, total)
	}
	if all > 50 {
		t.Errorf("%d log lines for %d refused handshakes, want at most 50", all, total)
	}
	// At most failLogFirst lines per window, plus its summary.
	if windows := int(took/failLogWindow) + 2; lines > windows*failLogFirst {
		t.Errorf("%d 'handshake refused' lines in %v, want at most %d per %v", lines, took, failLogFirst, failLogWindow)
	}
}

// Session lines are never sampled: more sessions than failLogFirst ending
// within one window each still write their 'session ended' line.
func TestSessionEndLinesAreNotSampled(t *testing.T) {
	up := newUpstream(t, nil, echo)
	p := newProxy(t, up.wsURL(), nil)
	const n = 3 * failLogFirst
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dial(t, p.url("/ws"), nil)
	}
	waitFor(t, 2*time.Second, func() bool { return p.h.ActiveSessions() == n })
	for range n {
		<-up.conns // newUpstream's handler waits for this beyond 16 conns
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return p.logs.FilterMessage("session ended").Len() == n })
	if k := p.logs.FilterMessageSnippet("(sampled)").Len(); k != 0 {
		t.Errorf("%d summary lines for session ends", k)
	}
}

// The sampler itself: the first lines of a window pass, the rest are
// counted into one summary at the window's end, and the next window
// starts afresh; kinds are sampled apart.
func TestLogSamplerWindows(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	l := newLogSampler(zap.New(core), 3, 100*time.Millisecond)
	a := sampleKey{msg: "upstream dial failed", status: 502, reason: "upstream unreachable"}
	b := sampleKey{msg: "upstream dial failed", status: 504, reason: "upstream timed out"}
	passed := 0
	for range 10 {
		if l.allow(a) {
			passed++
		}
	}
	if passed != 3 {
		t.Fatalf("%d of 10 lines passed, want 3", passed)
	}
	if !l.allow(b) {
		t.Fatal("another kind was sampled with the first")
	}
	waitFor(t, 2*time.Second, func() bool { return logs.FilterMessage("upstream dial failed (sampled)").Len() == 1 })
	f := logs.FilterMessage("upstream dial failed (sampled)").All()[0].ContextMap()
	if f["suppressed"] != int64(7) || f["logged"] != int64(3) || f["status"] != int64(502) {
		t.Errorf("summary %v, want 7 suppressed, 3 logged, status 502", f)
	}
	if !l.allow(a) {
		t.Error("the window after a summary does not start afresh")
	}
}
