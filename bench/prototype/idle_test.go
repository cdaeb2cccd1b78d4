package prototype

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompgate/stompgate/internal/wstest"
)

// go test -run '^$' -bench Idle -benchtime 1x ./bench/prototype/
//
// Heap (live, after GC), goroutine stacks and goroutines per idle session
// of each variant, minus the same measurement without a proxy (so the test's
// own client and echo sockets are not counted). The test side runs no
// goroutine per session.

// readSmall reads one small frame's payload (< 126 bytes).
func readSmall(br *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7F)
	if n >= 126 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return nil, err
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
	return p, nil
}

// passiveEcho handshakes and answers CONNECT in its accept loop, then keeps
// each connection without a goroutine.
type passiveEcho struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func newPassiveEcho(tb testing.TB) *passiveEcho {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e := &passiveEcho{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n", wstest.AcceptKey(req.Header.Get("Sec-WebSocket-Key")))
			if _, err := readSmall(br); err == nil { // CONNECT
				c.Write(wstest.Frame(0x1, []byte("CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\x00"), false))
			}
		}
	}()
	return e
}

func (e *passiveEcho) close() {
	e.ln.Close()
	<-e.done
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
}

func dialIdle(tb testing.TB, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n", addr, key)
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("handshake: %v %v", resp, err)
	}
	c.Write(wstest.Frame(0x1, []byte("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:10000,10000\n\n\x00"), true))
	p, err := readSmall(br)
	if err != nil || !bytes.HasPrefix(p, []byte("CONNECTED\n")) {
		tb.Fatalf("CONNECTED: %q %v", p, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

type memCost struct{ heap, stack, goroutines float64 }

func settled() (runtime.MemStats, int) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}

func idleCost(b *testing.B, n int, mk func(*url.URL) *Proxy) memCost {
	echo := newPassiveEcho(b)
	addr := echo.ln.Addr().String()
	var p *Proxy
	var srv *httptest.Server
	if mk != nil {
		p = mk(&url.URL{Scheme: "ws", Host: addr})
		srv = httptest.NewServer(p)
		addr = strings.TrimPrefix(srv.URL, "http://")
	}
	m0, g0 := settled()
	clients := make([]net.Conn, 0, n)
	for range n {
		clients = append(clients, dialIdle(b, addr))
	}
	m1, g1 := settled()
	echo.close()
	for _, c := range clients {
		c.Close()
	}
	if p != nil {
		p.Wait()
		srv.Close()
	}
	return memCost{float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc)), float64(int64(m1.StackInuse) - int64(m0.StackInuse)), float64(g1 - g0)}
}

func BenchmarkIdle(b *testing.B) {
	const n = 1000
	for _, v := range []struct {
		name    string
		ret     bool
		readBuf int
	}{
		{"as-stompgate", false, 0},
		{"handler-returns", true, 0},
		{"handler-returns+512B-read-buffers", true, 512},
		{"512B-read-buffers", false, 512},
	} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				direct := idleCost(b, n, nil)
				with := idleCost(b, n, func(u *url.URL) *Proxy { return &Proxy{Up: u, Return: v.ret, ReadBuf: v.readBuf} })
				b.ReportMetric((with.heap-direct.heap)/n, "heap-B/session")
				b.ReportMetric((with.stack-direct.stack)/n, "stack-B/session")
				b.ReportMetric((with.goroutines-direct.goroutines)/n, "goroutines/session")
			}
		})
	}
}
