package e2e

// Helpers for the liveness scenarios of scenarios_test.go: a TCP relay that
// can black-hole a connection without closing it, the Spring-semantics
// broker on 127.0.0.1 with an event log and a kill switch, and a runner for
// the python and node client scripts.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/proxy"
)

// ---- TCP relay that can black-hole a connection ---------------------------

// relay forwards TCP connections from its 127.0.0.1 listener to target.
// stall makes it stop forwarding in both directions without closing
// anything: what a peer sees when the other one vanished without FIN (power
// loss, NAT entry dropped, cable pulled). Bytes already in flight stay in the
// kernel's buffers, so writes keep succeeding for a while.
type relay struct {
	ln     net.Listener
	target string

	stalled   chan struct{}
	stallOnce sync.Once
	closing   chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, stalled: make(chan struct{}), closing: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		down, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", r.target, 5*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, down, up)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pump(down, up)
		go r.pump(up, down)
	}
}

func (r *relay) pump(src, dst net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.stalled:
			<-r.closing // hold whatever was read, forward nothing, close nothing
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// stall stops all forwarding, for good.
func (r *relay) stall() { r.stallOnce.Do(func() { close(r.stalled) }) }

// close closes the listener and every connection and waits for the pumps.
func (r *relay) close() {
	r.closeOnce.Do(func() {
		close(r.closing)
		r.ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	r.wg.Wait()
}

// ---- the Spring-semantics broker on 127.0.0.1 ------------------------------

// spring is internal/springbroker on an httptest server, with every broker
// event recorded and a kill switch.
type spring struct {
	b   *springbroker.Broker
	srv *httptest.Server
	ln  *trackingListener

	mu      sync.Mutex
	events  []springbroker.Event
	changed chan struct{} // closed and replaced on every event
}

// startSpring starts the broker with heart-beat {sx, sy} (0,0: no
// TaskScheduler, no heart-beats).
func startSpring(t testing.TB, sx, sy time.Duration) *spring {
	t.Helper()
	return startSpringWith(t, springbroker.Config{HeartBeat: [2]time.Duration{sx, sy}})
}

// startSpringWith starts the broker configured by cfg, recording its
// events.
func startSpringWith(t testing.TB, cfg springbroker.Config) *spring {
	t.Helper()
	p := &spring{changed: make(chan struct{})}
	cfg.OnEvent = p.record
	p.b = springbroker.New(cfg)
	p.srv = httptest.NewUnstartedServer(p.b)
	p.ln = &trackingListener{Listener: p.srv.Listener}
	p.srv.Listener = p.ln
	p.srv.Start()
	t.Cleanup(func() {
		p.b.Close()
		p.srv.Close()
		if t.Failed() {
			t.Logf("Spring-semantics broker events:\n%s", p.describe())
		}
	})
	return p
}

func (p *spring) record(e springbroker.Event) {
	p.mu.Lock()
	p.events = append(p.events, e)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// origin is the upstream URL for stompgate; url the endpoint for a client.
func (p *spring) origin() string { return "ws://" + p.srv.Listener.Addr().String() }
func (p *spring) url() string    { return p.origin() + "/ws" }
func (p *spring) addr() string   { return p.srv.Listener.Addr().String() }

// waitEvent waits up to within for an event matching match.
func (p *spring) waitEvent(within time.Duration, match func(springbroker.Event) bool) (springbroker.Event, bool) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		p.mu.Lock()
		for _, e := range p.events {
			if match(e) {
				p.mu.Unlock()
				return e, true
			}
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return springbroker.Event{}, false
		}
	}
}

// count returns how many recorded events match.
func (p *spring) count(match func(springbroker.Event) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.events {
		if match(e) {
			n++
		}
	}
	return n
}

func (p *spring) describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	var t0 time.Time
	for i, e := range p.events {
		if i == 0 {
			t0 = e.Time
		}
		fmt.Fprintf(&b, "  +%-8v %-8.8s %v", e.Time.Sub(t0).Round(time.Millisecond), e.Session, e.Kind)
		if e.Frame != nil {
			fmt.Fprintf(&b, " %s %v", e.Frame.Command, e.Frame.Headers)
		}
		if e.Kind == springbroker.EventClosed {
			fmt.Fprintf(&b, " sent=%d received=%d", e.CloseCode, e.PeerCloseCode)
		}
		if e.Err != "" {
			fmt.Fprintf(&b, " (%s)", e.Err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// kill closes the broker's listener and drops every connection it accepted,
// without any WebSocket close frame: a broker process that died.
func (p *spring) kill() {
	p.ln.Close()
	p.ln.mu.Lock()
	defer p.ln.mu.Unlock()
	for _, c := range p.ln.conns {
		c.Close()
	}
}

func isKind(k springbroker.EventKind) func(springbroker.Event) bool {
	return func(e springbroker.Event) bool { return e.Kind == k }
}

func isFrame(command string) func(springbroker.Event) bool {
	return func(e springbroker.Event) bool {
		return e.Kind == springbroker.EventFrame && e.Frame != nil && e.Frame.Command == command
	}
}

// trackingListener remembers every connection it accepted.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// ---- helper processes that print JSON lines --------------------------------

// lineProc is a client script (python, node) that prints one JSON object per
// line on stdout.
type lineProc struct {
	t      testing.TB
	lines  chan []byte
	done   chan struct{}
	err    error // from Wait, set before done is closed
	stderr *stomptest.LockedBuffer
}

func startLineProc(t testing.TB, timeout time.Duration, dir, bin string, args ...string) *lineProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	p := &lineProc{t: t, lines: make(chan []byte, 64), done: make(chan struct{}), stderr: &stomptest.LockedBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- append([]byte{}, sc.Bytes()...)
		}
		io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.lines)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", bin, p.stderr.String())
		}
	})
	return p
}

// next returns the next line that looks like JSON, waiting up to within.
func (p *lineProc) next(within time.Duration) ([]byte, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				return nil, fmt.Errorf("process ended (%v) without more output; stderr:\n%s", p.err, p.stderr.String())
			}
			if bytes.HasPrefix(bytes.TrimSpace(l), []byte("{")) {
				return l, nil
			}
			p.t.Logf("script: %s", l)
		case <-timer.C:
			return nil, fmt.Errorf("no output within %v; stderr:\n%s", within, p.stderr.String())
		}
	}
}

// ---- misc -----------------------------------------------------------------

// eventually polls cond every 20 ms until it holds or within has passed.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

func goroutines() int { return runtime.NumGoroutine() }

// uniqueDest is a topic name no other test or run uses.
func uniqueDest(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return "/topic/stompgate-scenario-" + name + "-" + hex.EncodeToString(b[:])
}

// startScenarioGate is startGate with the heart-beats an operator gets by
// default (STOMPGATE_UPSTREAM_HEARTBEAT and STOMPGATE_CLIENT_HEARTBEAT,
// 10000,10000; proxy.Options' zero value means 0,0) before mod is applied,
// and with stompgate's log added to the output of a failed test.
func startScenarioGate(t testing.TB, upstream string, mod func(*proxy.Options)) *gate {
	t.Helper()
	g := startGate(t, upstream, func(o *proxy.Options) {
		o.STOMP.UpstreamHeartBeat = hb(10*time.Second, 10*time.Second)
		o.STOMP.ClientHeartBeat = hb(10*time.Second, 10*time.Second)
		if mod != nil {
			mod(o)
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// A session logs its summary when it has ended.
		eventually(3*time.Second, func() bool { return g.h.ActiveSessions() == 0 })
		var b strings.Builder
		for _, e := range g.logs.All() {
			fmt.Fprintf(&b, "  %s %s %s %v\n", e.Time.Format("15:04:05.000"), e.Level, e.Message, e.ContextMap())
		}
		t.Logf("stompgate log:\n%s", b.String())
	})
	return g
}
