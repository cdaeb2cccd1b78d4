package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/stomptest"
)

// Phases of the run, as the clients see them: a close before phaseLeave,
// or before the client itself started leaving, is unexpected.
const (
	phaseRamp int32 = iota
	phaseHold
	phaseLeave
)

var phaseNames = [...]string{"ramp", "hold", "leave"}

// clientEvent is one unexpected thing a client saw.
type clientEvent struct {
	At     time.Duration // since the soak started
	Client int
	Phase  string
	What   string
}

// client is one STOMP-over-WebSocket session. Its reader goroutine is the
// only reader; writes (heart-beats, SENDs, DISCONNECT) take wmu.
type client struct {
	idx   int
	topic int
	conn  *websocket.Conn

	wmu           sync.Mutex
	writeDeadline int64        // unix ns, guarded by wmu
	lastRead      atomic.Int64 // unix ns of the last message received
	leaving       atomic.Bool  // DISCONNECT is (about to be) sent: a close is expected
	bad           atomic.Bool  // had an unexpected event
	ended         atomic.Bool  // the reader has returned
	doneAt        atomic.Int64 // unix ns when the reader returned
	done          chan struct{}
}

func (c *client) write(data []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Moving a deadline is a timer operation; 9,900 sessions writing every
	// second make that measurable, so the deadline is moved only when less
	// than half of the timeout is left. Every write still has at least
	// timeout/2 and at most timeout.
	now := time.Now()
	if now.Add(timeout/2).UnixNano() > c.writeDeadline {
		d := now.Add(timeout)
		_ = c.conn.SetWriteDeadline(d)
		c.writeDeadline = d.UnixNano()
	}
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

// heartbeatShard writes the EOL heart-beats of its clients, one pass per
// heart-beat period; shards start staggered over the period so the
// writes are spread over the second.
type heartbeatShard struct {
	mu      sync.Mutex
	clients []*client
}

// clientPool runs every client session of the soak.
type clientPool struct {
	url      string
	hb       time.Duration
	start    time.Time // soak start, for event times
	dialer   *websocket.Dialer
	phase    atomic.Int32
	shards   []*heartbeatShard
	stopHB   chan struct{}
	stopOnce sync.Once
	hbWG     sync.WaitGroup
	readerWG sync.WaitGroup

	mu          sync.Mutex
	all         []*client
	subscribers map[int]int // topic -> established subscribers
	events      []clientEvent
	nEvents     int
	setupFails  []clientEvent
	nSetupFails int
	leaveOdd    []clientEvent
	leaveCodes  map[string]int

	unexpectedClients atomic.Int64
	setupFailures     atomic.Int64
	hbMismatch        atomic.Int64
	hbMismatchSample  atomic.Value // string
	heartbeatsIn      atomic.Int64
	heartbeatsOut     atomic.Int64
	messagesIn        atomic.Int64
	maxGap            atomic.Int64 // ns, inbound gaps measured during hold
	lateGaps          atomic.Int64 // inbound gaps > 2 heart-beat periods during hold
	maxPass           atomic.Int64 // ns, slowest heart-beat pass of a shard
	leaveClean        atomic.Int64
	leaveUnclean      atomic.Int64
	// SEND → MESSAGE latency through stompgate and the broker and back.
	maxLatency, latencySum, latencyN, latencyOver1s atomic.Int64
}

const (
	maxEvents    = 200
	nShards      = 16
	writeTimeout = 5 * time.Second
)

var heartbeatPayload = []byte("\n")

func newClientPool(url string, hb time.Duration, start time.Time) *clientPool {
	p := &clientPool{
		url:   url,
		hb:    hb,
		start: start,
		dialer: &websocket.Dialer{
			Subprotocols:     []string{"v12.stomp"},
			HandshakeTimeout: 10 * time.Second,
			// Small buffers and a shared write-buffer pool: 9,900
			// connections must not cost 80 MB of idle buffers.
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			WriteBufferPool: &sync.Pool{},
		},
		stopHB:      make(chan struct{}),
		subscribers: map[int]int{},
		leaveCodes:  map[string]int{},
	}
	for range nShards {
		p.shards = append(p.shards, &heartbeatShard{})
	}
	for i, s := range p.shards {
		p.hbWG.Add(1)
		go p.heartbeats(s, time.Duration(i)*hb/nShards)
	}
	return p
}

func (p *clientPool) since() time.Duration { return time.Since(p.start).Round(time.Millisecond) }

// unexpected records an event that ends (or shows the end of) a session
// before the test ends it.
func (p *clientPool) unexpected(c *client, what string) {
	if c.bad.CompareAndSwap(false, true) {
		p.unexpectedClients.Add(1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nEvents++
	if len(p.events) < maxEvents {
		p.events = append(p.events, clientEvent{At: p.since(), Client: c.idx, Phase: phaseNames[p.phase.Load()], What: what})
	}
}

func (p *clientPool) setupFailed(idx int, err error) {
	p.setupFailures.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nSetupFails++
	if len(p.setupFails) < maxEvents {
		p.setupFails = append(p.setupFails, clientEvent{At: p.since(), Client: idx, Phase: phaseNames[p.phase.Load()], What: err.Error()})
	}
}

// ramp opens n sessions, at most rate new ones per second and conc
// handshakes in flight. It returns when every attempt has finished.
func (p *clientPool) ramp(ctx context.Context, n int, rate float64, conc, topics int) {
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			p.setupFailed(i, fmt.Errorf("not attempted: %w", ctx.Err()))
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			p.setupFailed(i, fmt.Errorf("not attempted: %w", ctx.Err()))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := p.connect(ctx, i, i%topics)
			if err != nil {
				p.setupFailed(i, err)
				return
			}
			p.add(c)
		}()
	}
	wg.Wait()
}

// connect opens one session: WebSocket handshake (v12.stomp), CONNECT with
// heart-beat:<hb>,<hb>, CONNECTED, SUBSCRIBE to /topic/soak.<topic>.
func (p *clientPool) connect(ctx context.Context, idx, topic int) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, resp, err := p.dialer.DialContext(dctx, p.url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	fail := func(err error) (*client, error) {
		_ = conn.Close()
		return nil, err
	}
	if sp := conn.Subprotocol(); sp != "v12.stomp" {
		return fail(fmt.Errorf("subprotocol %q, want v12.stomp", sp))
	}
	conn.SetReadLimit(1 << 20)
	ms := p.hb.Milliseconds()
	c := &client{idx: idx, topic: topic, conn: conn, done: make(chan struct{})}
	connect := stomptest.Encode("CONNECT", nil, "accept-version", "1.2", "host", "127.0.0.1", "heart-beat", fmt.Sprintf("%d,%d", ms, ms))
	if err := c.write(connect, writeTimeout); err != nil {
		return fail(fmt.Errorf("write CONNECT: %w", err))
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("waiting for CONNECTED: %s", describeEnd(err)))
		}
		cmd, hs := parseFrame(data)
		if cmd == "" {
			continue // a heart-beat
		}
		if cmd != "CONNECTED" {
			return fail(fmt.Errorf("got %s instead of CONNECTED (message:%q)", cmd, hs["message"]))
		}
		want := fmt.Sprintf("%d,%d", ms, ms)
		if got := hs["heart-beat"]; got != want {
			p.hbMismatch.Add(1)
			p.hbMismatchSample.Store(fmt.Sprintf("CONNECTED heart-beat:%s (want %s)", got, want))
		}
		break
	}
	_ = conn.SetReadDeadline(time.Time{})
	c.lastRead.Store(time.Now().UnixNano())
	sub := stomptest.Encode("SUBSCRIBE", nil, "id", "0", "destination", fmt.Sprintf("/topic/soak.%d", topic))
	if err := c.write(sub, writeTimeout); err != nil {
		return fail(fmt.Errorf("write SUBSCRIBE: %w", err))
	}
	return c, nil
}

// add registers an established session: reader goroutine, heart-beats.
func (p *clientPool) add(c *client) {
	p.mu.Lock()
	p.all = append(p.all, c)
	p.subscribers[c.topic]++
	p.mu.Unlock()
	s := p.shards[(c.idx%nShards+nShards)%nShards]
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	p.readerWG.Add(1)
	go p.read(c)
}

func (p *clientPool) heartbeats(s *heartbeatShard, offset time.Duration) {
	defer p.hbWG.Done()
	select {
	case <-time.After(offset):
	case <-p.stopHB:
		return
	}
	t := time.NewTicker(p.hb)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.stopHB:
			return
		}
		began := time.Now()
		s.mu.Lock()
		list := s.clients
		s.mu.Unlock()
		for _, c := range list {
			if c.leaving.Load() || c.ended.Load() {
				continue
			}
			if err := c.write(heartbeatPayload, writeTimeout); err != nil {
				if !c.leaving.Load() && !c.ended.Load() {
					p.unexpected(c, "heart-beat write failed: "+err.Error())
				}
				continue
			}
			p.heartbeatsOut.Add(1)
		}
		atomicMax(&p.maxPass, int64(time.Since(began)))
	}
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// read is a session's only reader.
func (p *clientPool) read(c *client) {
	defer p.readerWG.Done()
	defer func() {
		c.doneAt.Store(time.Now().UnixNano())
		c.ended.Store(true)
		_ = c.conn.Close()
		close(c.done)
	}()
	buf := make([]byte, 0, 256)
	hb2 := 2 * int64(p.hb)
	for {
		_, r, err := c.conn.NextReader()
		if err == nil {
			buf, err = readAll(buf[:0], r)
		}
		if err != nil {
			p.ended(c, err)
			return
		}
		now := time.Now().UnixNano()
		prev := c.lastRead.Swap(now)
		if p.phase.Load() == phaseHold {
			gap := now - prev
			atomicMax(&p.maxGap, gap)
			if gap > hb2 {
				p.lateGaps.Add(1)
			}
		}
		switch cmd := command(buf); cmd {
		case "":
			p.heartbeatsIn.Add(1)
		case "MESSAGE":
			p.messagesIn.Add(1)
			if sent := sentAt(buf); sent > 0 {
				lat := now - sent
				atomicMax(&p.maxLatency, lat)
				p.latencySum.Add(lat)
				p.latencyN.Add(1)
				if lat > int64(time.Second) {
					p.latencyOver1s.Add(1)
				}
			}
		case "RECEIPT":
			if c.leaving.Load() {
				// stompjs-style: after the DISCONNECT receipt the client
				// closes the WebSocket.
				_ = c.conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(writeTimeout))
			} else {
				p.unexpected(c, "RECEIPT before DISCONNECT")
			}
		case "ERROR":
			_, hs := parseFrame(buf)
			if c.leaving.Load() {
				p.leaveOddity(c, "ERROR message:"+hs["message"])
			} else {
				p.unexpected(c, "ERROR message:"+hs["message"])
			}
		}
	}
}

// ended accounts for the end of a session's reader.
func (p *clientPool) ended(c *client, err error) {
	code, desc := closeCode(err), describeEnd(err)
	if c.leaving.Load() {
		p.mu.Lock()
		p.leaveCodes[desc]++
		p.mu.Unlock()
		if code == websocket.CloseNormalClosure {
			p.leaveClean.Add(1)
		} else {
			p.leaveUnclean.Add(1)
			p.leaveOddity(c, "ended "+desc)
		}
		return
	}
	p.unexpected(c, "connection ended: "+desc)
}

func (p *clientPool) leaveOddity(c *client, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.leaveOdd) < maxEvents {
		p.leaveOdd = append(p.leaveOdd, clientEvent{At: p.since(), Client: c.idx, Phase: "leave", What: what})
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return websocket.CloseAbnormalClosure
}

// describeEnd renders how a connection ended: the close code and reason
// received, or the error (no close frame: 1006).
func describeEnd(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Text != "" {
			return fmt.Sprintf("close %d %q", ce.Code, ce.Text)
		}
		return fmt.Sprintf("close %d", ce.Code)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "1006 (read timed out)"
	}
	return "1006 (" + err.Error() + ")"
}

func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// sentAt reads the send time (unix ns) a trickle SEND put at the end of
// its body ("soak <seq> <ns>"); 0 if there is none.
func sentAt(frame []byte) int64 {
	_, body, ok := bytes.Cut(frame, []byte("\n\n"))
	if !ok {
		return 0
	}
	body = bytes.TrimRight(body, "\x00\r\n")
	if !bytes.HasPrefix(body, []byte("soak ")) {
		return 0
	}
	i := bytes.LastIndexByte(body, ' ')
	ns, err := strconv.ParseInt(string(body[i+1:]), 10, 64)
	if err != nil {
		return 0
	}
	return ns
}

// command is the STOMP command of a WebSocket message, "" for a heart-beat
// (only EOLs).
func command(data []byte) string {
	data = bytes.TrimLeft(data, "\r\n")
	if len(data) == 0 {
		return ""
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	return string(bytes.TrimSuffix(data, []byte("\r")))
}

// parseFrame returns the command and the headers (first occurrence wins,
// not unescaped) of the first frame in data, decoded as the tests decode
// frames (stomptest); "" for a heart-beat.
func parseFrame(data []byte) (string, map[string]string) {
	data = bytes.TrimLeft(data, "\r\n")
	if len(data) == 0 {
		return "", nil
	}
	f, err := stomptest.Decode(data)
	if err != nil {
		return command(data), map[string]string{}
	}
	return f.Command, f.Headers
}

// established returns the established sessions.
func (p *clientPool) established() []*client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*client(nil), p.all...)
}

// counts returns how many sessions are up (reader running, not leaving)
// and how many of those have received nothing for longer than 3 heart-beat
// periods.
func (p *clientPool) counts() (up, stale int) {
	now := time.Now().UnixNano()
	limit := 3 * int64(p.hb)
	for _, c := range p.established() {
		if c.ended.Load() || c.leaving.Load() {
			continue
		}
		up++
		if now-c.lastRead.Load() > limit {
			stale++
		}
	}
	return up, stale
}

// trickle sends rate SENDs per second, each from a random session to its
// own topic, until ctx ends. It returns how many it sent and how many
// MESSAGEs they should produce (the topic's subscribers, sender included).
func (p *clientPool) trickle(ctx context.Context, rate float64) (sent, expected int64) {
	if rate <= 0 {
		return 0, 0
	}
	all := p.established()
	if len(all) == 0 {
		return 0, 0
	}
	p.mu.Lock()
	subs := make(map[int]int, len(p.subscribers))
	for k, v := range p.subscribers {
		subs[k] = v
	}
	p.mu.Unlock()
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return sent, expected
		case <-t.C:
		}
		c := all[rand.IntN(len(all))]
		if c.ended.Load() || c.leaving.Load() {
			continue
		}
		seq++
		body := "soak " + strconv.FormatInt(seq, 10) + " " + strconv.FormatInt(time.Now().UnixNano(), 10)
		frame := fmt.Sprintf("SEND\ndestination:/topic/soak.%d\ncontent-type:text/plain\ncontent-length:%d\n\n%s\x00", c.topic, len(body), body)
		if err := c.write([]byte(frame), writeTimeout); err != nil {
			if !c.leaving.Load() && !c.ended.Load() {
				p.unexpected(c, "SEND write failed: "+err.Error())
			}
			continue
		}
		sent++
		expected += int64(subs[c.topic])
	}
}

// leave ends every session the way @stomp/stompjs does: DISCONNECT with a
// receipt, then (in the reader, on the RECEIPT) close 1000, then wait for
// the close reply. conc sessions are sent their DISCONNECT at once. It
// returns when every reader has returned or ctx ends, with the time the
// first DISCONNECT was sent and the time the last session ended.
func (p *clientPool) leave(ctx context.Context, conc int, timeout time.Duration) (first, last time.Time, left int) {
	p.phase.Store(phaseLeave)
	all := p.established()
	first = time.Now()
	jobs := make(chan *client)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				c.leaving.Store(true)
				if c.ended.Load() {
					continue
				}
				// Bounds the whole exchange: a session stuck in it ends
				// with a read timeout, reported as an unclean leave.
				_ = c.conn.UnderlyingConn().SetReadDeadline(time.Now().Add(timeout))
				frame := fmt.Sprintf("DISCONNECT\nreceipt:bye-%d\n\n\x00", c.idx)
				_ = c.write([]byte(frame), writeTimeout)
			}
		}()
	}
	for _, c := range all {
		jobs <- c
	}
	close(jobs)
	wg.Wait()
	p.stopHeartbeats()

	waitDone := make(chan struct{})
	go func() {
		p.readerWG.Wait()
		close(waitDone)
	}()
	select {
	case <-waitDone:
	case <-ctx.Done():
	case <-time.After(timeout + 5*time.Second):
	}
	var lastNs int64
	for _, c := range all {
		if c.ended.Load() {
			left++
			lastNs = max(lastNs, c.doneAt.Load())
		}
	}
	if lastNs > 0 {
		last = time.Unix(0, lastNs)
	}
	return first, last, left
}

// closeAll drops every connection still open (failure paths).
func (p *clientPool) closeAll() {
	for _, c := range p.established() {
		c.leaving.Store(true)
		_ = c.conn.Close()
	}
	p.stopHeartbeats()
}

func (p *clientPool) stopHeartbeats() {
	p.stopOnce.Do(func() { close(p.stopHB) })
	p.hbWG.Wait()
}

// leaveSummary renders how sessions ended during the leave, by close.
func (p *clientPool) leaveSummary() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, v := range p.leaveCodes {
		out = append(out, fmt.Sprintf("%d × %s", v, k))
	}
	sort.Strings(out)
	return out
}
