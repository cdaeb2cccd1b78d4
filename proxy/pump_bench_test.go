package proxy_test

// Benchmarks of stompgate's forwarding path through its exported API only:
// proxy.New + ServeHTTP behind a loopback listener, in front of an echo
// upstream in the same process.
//
// The client and the echo are written so that they allocate nothing per
// message: they speak WebSocket by hand on raw net.Conns, write pre-encoded
// frames (the client masks with an all-zero key, legal framing that still
// runs the proxy's unmasking code) and read into fixed buffers. The
// "direct" sub-benchmarks (client ↔ echo, no proxy) show that this harness
// costs 0 allocs/op, so the allocations reported through the proxy are the
// proxy's. One op is one round trip: a SEND forwarded client → upstream and
// its MESSAGE forwarded upstream → client, hence allocs/frame = allocs/op ÷ 2.
//
//	go test -run '^$' -bench '^BenchmarkPump' -benchmem ./proxy/
//	go test -run '^$' -bench '^BenchmarkIdleSession' -benchtime 1x ./proxy/ [-idle.heapprofile heap.pprof]

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/internal/wstest"
	"github.com/stompgate/stompgate/proxy"
)

var idleHeapProfile = flag.String("idle.heapprofile", "", "BenchmarkIdleSession: write a heap profile (every allocation sampled) of the open idle sessions to this file")

// Frames of the conversation, pre-encoded.
const (
	connectFrame   = "CONNECT\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:10000,10000\n\n\x00"
	connectedFrame = "CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\x00"
	sendHead       = "SEND\ndestination:/queue/bench\ncontent-type:text/plain\ncontent-length:"
	replyPrefix    = "MESSAGE\nsubscription:0\nmessage-id:0\n"
)

// sendPayload is a SEND frame with a body of size bytes; replyPayload is
// what the echo makes of it.
func sendPayload(size int) []byte {
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	return []byte(sendHead + strconv.Itoa(size) + "\n\n" + string(body) + "\x00")
}

func replyPayload(send []byte) []byte {
	return append([]byte(replyPrefix), send[len("SEND\n"):]...)
}

// wsReader reads whole messages into a fixed buffer, reassembling
// fragments, unmasking, and skipping ping/pong frames. It allocates nothing.
type wsReader struct {
	br  *bufio.Reader
	hdr [14]byte
	key [4]byte // a field, not a local: a local would escape through io.ReadFull
	buf []byte
}

var errCloseFrame = errors.New("close frame")

func (r *wsReader) next() ([]byte, error) {
	n := 0
	for {
		if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return nil, err
		}
		fin, op, masked := r.hdr[0]&0x80 != 0, r.hdr[0]&0x0F, r.hdr[1]&0x80 != 0
		size := uint64(r.hdr[1] & 0x7F)
		switch size {
		case 126:
			if _, err := io.ReadFull(r.br, r.hdr[2:4]); err != nil {
				return nil, err
			}
			size = uint64(binary.BigEndian.Uint16(r.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(r.br, r.hdr[2:10]); err != nil {
				return nil, err
			}
			size = binary.BigEndian.Uint64(r.hdr[2:10])
		}
		r.key = [4]byte{}
		if masked {
			if _, err := io.ReadFull(r.br, r.key[:]); err != nil {
				return nil, err
			}
		}
		if size > uint64(len(r.buf)-n) {
			return nil, fmt.Errorf("message over %d bytes", len(r.buf))
		}
		p := r.buf[n : n+int(size)]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return nil, err
		}
		for i := range p {
			p[i] ^= r.key[i&3]
		}
		switch {
		case op == 0x8:
			return nil, errCloseFrame
		case op >= 0x8: // ping, pong: the benchmark never idles long enough
			continue
		}
		n += int(size)
		if fin {
			if n == 1 && r.buf[0] == '\n' { // a heart-beat
				n = 0
				continue
			}
			return r.buf[:n], nil
		}
	}
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// rawEcho is the upstream: it answers CONNECT with CONNECTED and every
// other frame (a SEND) with the pre-encoded MESSAGE. With passive set it
// does the handshake and CONNECT inline in its accept loop and then keeps
// the connection without a goroutine (idle sessions).
type rawEcho struct {
	ln      net.Listener
	reply   []byte // the MESSAGE frame, encoded
	passive bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newRawEcho(tb testing.TB, reply []byte, passive bool) *rawEcho {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e := &rawEcho{ln: ln, reply: wstest.Frame(0x1, reply, false), passive: passive}
	e.wg.Add(1)
	go e.accept()
	return e
}

func (e *rawEcho) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.conns = append(e.conns, c)
		e.mu.Unlock()
		if e.passive {
			br := bufio.NewReaderSize(c, 1024)
			if serverHandshake(c, br) == nil {
				r := &wsReader{br: br, buf: make([]byte, 1024)}
				if _, err := r.next(); err == nil { // CONNECT
					c.Write(wstest.Frame(0x1, []byte(connectedFrame), false))
				}
			}
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serve(c)
		}()
	}
}

func serverHandshake(c net.Conn, br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	if strings.Contains(strings.Join(req.Header.Values("Sec-WebSocket-Protocol"), ","), "v12.stomp") {
		resp += "Sec-WebSocket-Protocol: v12.stomp\r\n"
	}
	_, err = io.WriteString(c, resp+"\r\n")
	return err
}

func (e *rawEcho) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 32<<10)
	if serverHandshake(c, br) != nil {
		return
	}
	r := &wsReader{br: br, buf: make([]byte, 64<<10)}
	connected := wstest.Frame(0x1, []byte(connectedFrame), false)
	closeFrame := wstest.Frame(0x8, []byte{0x03, 0xE8}, false)
	for {
		p, err := r.next()
		if err != nil {
			if err == errCloseFrame {
				c.Write(closeFrame)
			}
			return
		}
		out := e.reply
		if bytes.HasPrefix(p, []byte("CONNECT\n")) {
			out = connected
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (e *rawEcho) url() *url.URL { return &url.URL{Scheme: "ws", Host: e.ln.Addr().String()} }

func (e *rawEcho) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// rawClient is one STOMP client on a raw socket.
type rawClient struct {
	c net.Conn
	r *wsReader
}

func dialRaw(tb testing.TB, addr string, bufSize int) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n", addr, key)
	br := bufio.NewReaderSize(c, bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		tb.Fatalf("handshake: %s", resp.Status)
	}
	rc := &rawClient{c: c, r: &wsReader{br: br, buf: make([]byte, bufSize)}}
	if _, err := c.Write(wstest.Frame(0x1, []byte(connectFrame), true)); err != nil {
		tb.Fatal(err)
	}
	p, err := rc.r.next()
	if err != nil || !bytes.HasPrefix(p, []byte("CONNECTED\n")) {
		tb.Fatalf("CONNECTED: %q %v", p, err)
	}
	c.SetDeadline(time.Time{})
	return rc
}

// close sends a close frame and waits for the answer.
func (rc *rawClient) close() {
	rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	rc.c.Write(wstest.Frame(0x8, []byte{0x03, 0xE8}, true))
	for {
		if _, err := rc.r.next(); err != nil {
			break
		}
	}
	rc.c.Close()
}

// benchProxy starts stompgate, configured like the binary's defaults for
// heart-beats (10000,10000 on both hops, terminate mode), in front of up.
type benchProxy struct {
	h   *proxy.Handler
	srv *httptest.Server
}

func newBenchProxy(tb testing.TB, up *url.URL) *benchProxy {
	hb := inspect.HeartBeat{Send: 10 * time.Second, Receive: 10 * time.Second}
	h, err := proxy.New(proxy.Options{
		Upstream:     up,
		CloseTimeout: 2 * time.Second,
		STOMP:        proxy.STOMPOptions{UpstreamHeartBeat: hb, ClientHeartBeat: hb},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &benchProxy{h: h, srv: httptest.NewServer(h)}
}

func (p *benchProxy) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *benchProxy) close() {
	p.h.CloseAll(1001, "benchmark over")
	p.h.Wait()
	p.srv.Close()
}

var benchSizes = []int{64, 1 << 10, 16 << 10}

func sizeLabel(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkPump measures one STOMP round trip (SEND out, MESSAGE back) at a
// time on one connection.
func BenchmarkPump(b *testing.B) {
	for _, target := range []string{"direct", "stompgate"} {
		for _, size := range benchSizes {
			b.Run(target+"/"+sizeLabel(size), func(b *testing.B) {
				send := sendPayload(size)
				echo := newRawEcho(b, replyPayload(send), false)
				defer echo.close()
				addr := echo.ln.Addr().String()
				if target == "stompgate" {
					p := newBenchProxy(b, echo.url())
					defer p.close()
					addr = p.addr()
				}
				roundTrips(b, addr, send, replyPayload(send))
			})
		}
	}
}

func roundTrips(b *testing.B, addr string, send, reply []byte) {
	c := dialRaw(b, addr, 64<<10)
	defer c.close()
	frame := wstest.Frame(0x1, send, true)
	trip := func() {
		if _, err := c.c.Write(frame); err != nil {
			b.Fatal(err)
		}
		p, err := c.r.next()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(p, reply) {
			b.Fatalf("reply %q", p)
		}
	}
	for range 100 { // warm pools and buffers
		trip()
	}
	b.SetBytes(int64(2 * len(send)))
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for range b.N {
		trip()
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(2*b.N), "allocs/frame")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(2*b.N), "B/frame")
}

// TestPumpHarness keeps the benchmark honest: replies are checked, and the
// harness itself must not allocate per message.
func TestPumpHarness(t *testing.T) {
	for _, size := range benchSizes {
		send := sendPayload(size)
		echo := newRawEcho(t, replyPayload(send), false)
		p := newBenchProxy(t, echo.url())
		c := dialRaw(t, p.addr(), 64<<10)
		frame := wstest.Frame(0x1, send, true)
		for range 50 {
			if _, err := c.c.Write(frame); err != nil {
				t.Fatal(err)
			}
			got, err := c.r.next()
			if err != nil || !bytes.Equal(got, replyPayload(send)) {
				t.Fatalf("%d B: reply %.40q, %v", size, got, err)
			}
		}
		c.close()
		p.close()
		echo.close()
	}
}

// TestPumpAllocatesNothing: a forwarded frame allocates nothing, in either
// direction, at every size BenchmarkPump measures
// (docs/internals/hot-path.md#frame-allocs). The harness allocates
// nothing (the direct lines of BenchmarkPump), so the count is the proxy's;
// AllocsPerRun's whole-number average lets a rare sync.Pool miss through.
func TestPumpAllocatesNothing(t *testing.T) {
	for _, size := range benchSizes {
		send := sendPayload(size)
		reply := replyPayload(send)
		echo := newRawEcho(t, reply, false)
		p := newBenchProxy(t, echo.url())
		c := dialRaw(t, p.addr(), 64<<10)
		frame := wstest.Frame(0x1, send, true)
		var failed error
		trip := func() {
			if _, err := c.c.Write(frame); err != nil {
				failed = err
				return
			}
			if got, err := c.r.next(); err != nil || !bytes.Equal(got, reply) {
				failed = fmt.Errorf("reply %.40q, %v", got, err)
			}
		}
		for range 100 { // warm pools and buffers
			trip()
		}
		allocs := testing.AllocsPerRun(500, trip)
		c.close()
		p.close()
		echo.close()
		if failed != nil {
			t.Fatalf("%d B: %v", size, failed)
		}
		if wstest.RaceEnabled {
			t.Logf("%d B: %.1f allocations per round trip; not checked with the race detector (sync.Pool drops buffers)", size, allocs)
			continue
		}
		if allocs != 0 {
			t.Errorf("%d B: %.1f allocations per round trip (two forwarded frames), want 0", size, allocs)
		}
	}
}

// BenchmarkIdleSession opens idle STOMP sessions (heart-beats negotiated on
// both hops, so every session's liveness timer is armed) and reports what
// each costs the proxy in Go heap (live, after GC), goroutine stacks and
// goroutines. The same measurement without the proxy (client ↔ echo) is
// subtracted, so the client's and the echo's sockets are not counted; the
// proxy's two sockets per session are.
func BenchmarkIdleSession(b *testing.B) {
	const sessions = 1000
	if *idleHeapProfile != "" {
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	// One measurement whatever b.N is (a -benchtime of 20000x must not
	// open 20,000 × 2,000 sessions): ns/op is meaningless here, the
	// metrics are per session.
	idleOnce.Do(func() {
		direct := idleCost(b, sessions, false)
		withProxy := idleCost(b, sessions, true)
		idleResult = memCost{
			heap:       (withProxy.heap - direct.heap) / sessions,
			stack:      (withProxy.stack - direct.stack) / sessions,
			goroutines: (withProxy.goroutines - direct.goroutines) / sessions,
		}
	})
	b.ReportMetric(idleResult.heap, "heap-B/session")
	b.ReportMetric(idleResult.stack, "stack-B/session")
	b.ReportMetric(idleResult.goroutines, "goroutines/session")
}

var (
	idleOnce   sync.Once
	idleResult memCost
)

type memCost struct{ heap, stack, goroutines float64 }

func settledMem() (runtime.MemStats, int) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}

func idleCost(b *testing.B, n int, viaProxy bool) memCost {
	echo := newRawEcho(b, nil, true)
	var p *benchProxy
	addr := echo.ln.Addr().String()
	if viaProxy {
		p = newBenchProxy(b, echo.url())
		addr = p.addr()
	}
	m0, g0 := settledMem()
	clients := make([]net.Conn, 0, n)
	for range n {
		c := dialRaw(b, addr, 1024)
		clients = append(clients, c.c) // the bufio reader and buffer are dropped
	}
	if viaProxy && p.h.ActiveSessions() != n {
		b.Fatalf("%d sessions open, want %d", p.h.ActiveSessions(), n)
	}
	m1, g1 := settledMem()
	if viaProxy && *idleHeapProfile != "" {
		f, err := os.Create(*idleHeapProfile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	// Both peers vanish at once, so no session waits for a close
	// handshake or a RECEIPT that would never come.
	echo.close()
	for _, c := range clients {
		c.Close()
	}
	if p != nil {
		p.close()
	}
	return memCost{
		heap:       float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc)),
		stack:      float64(int64(m1.StackInuse) - int64(m0.StackInuse)),
		goroutines: float64(g1 - g0),
	}
}
