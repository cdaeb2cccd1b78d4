// Package prototype is an experiment, not product code: a minimal gorilla
// WebSocket proxy (no STOMP, no liveness, no metrics) used to measure what
// two design changes proposed for stompgate's proxy/ would gain, before
// anyone rewrites proxy/:
//
//   - Return: the HTTP handler returns after the upgrade and both pumps run
//     in their own goroutines, so net/http's per-connection state (request,
//     context, 4 KiB bufio.Writer, the deep serve stack) is freed; with
//     ReadBuf the read buffers are smaller than gorilla's 4 KiB.
//   - Coalesce: writes to a peer are held while the opposite pump works
//     through input it has already read, and flushed when that pump is
//     about to block on a read, so one batch of messages costs one write
//     system call (what nginx does), not one per message.
//
// tunnel.go adds two floors, byte tunnels that read nothing they forward.
// See bench/README.md for the commands.
package prototype

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var writePool = &sync.Pool{}
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Proxy forwards every WebSocket message between a client and Up.
type Proxy struct {
	Up       *url.URL
	Return   bool // the handler returns; the pumps run in their own goroutines
	ReadBuf  int  // read buffer size of both legs; 0: as stompgate (net/http's 4 KiB reader, 4 KiB upstream)
	Coalesce bool // coalesce writes (see the package comment)
	wg       sync.WaitGroup
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// stompgate's settings.
	d := websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 16 << 10, WriteBufferPool: writePool}
	u := websocket.Upgrader{WriteBufferSize: 16 << 10, WriteBufferPool: writePool, Subprotocols: []string{"v12.stomp"},
		CheckOrigin: func(*http.Request) bool { return true }}
	if p.ReadBuf > 0 {
		d.ReadBufferSize, u.ReadBufferSize = p.ReadBuf, p.ReadBuf
	}
	var upc *coalConn
	var hj *hijacker
	if p.Coalesce {
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			upc = &coalConn{Conn: c}
			return upc, nil
		}
		if u.ReadBufferSize == 0 {
			u.ReadBufferSize = 4096 // read through the wrapper, not net/http's reader
		}
		hj = &hijacker{ResponseWriter: w}
		w = hj
	}
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", "v12.stomp")
	up, _, err := d.DialContext(r.Context(), p.Up.String(), h)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c, err := u.Upgrade(w, r, nil)
	if err != nil {
		up.Close()
		return
	}
	if p.Coalesce {
		hj.conn.other, upc.other = upc, hj.conn
	}
	// One timer per session, like stompgate's liveness timer.
	t := time.AfterFunc(time.Hour, func() {})
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		pump(up, c)
	}()
	if p.Return {
		go func() {
			defer p.wg.Done()
			pump(c, up)
			t.Stop()
		}()
		return
	}
	pump(c, up)
	t.Stop()
	p.wg.Done()
}

// Wait blocks until every pump has ended.
func (p *Proxy) Wait() { p.wg.Wait() }

// pump streams each message from src to dst through a pooled buffer, like
// stompgate's pump.
func pump(src, dst *websocket.Conn) {
	defer func() {
		src.Close()
		dst.Close()
	}()
	for {
		mt, rd, err := src.NextReader()
		if err != nil {
			return
		}
		bp := bufPool.Get().(*[]byte)
		wr, err := dst.NextWriter(mt)
		if err == nil {
			_, err = io.CopyBuffer(wr, rd, *bp)
			if cerr := wr.Close(); err == nil {
				err = cerr
			}
		}
		bufPool.Put(bp)
		if err != nil {
			return
		}
	}
}
