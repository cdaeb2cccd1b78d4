package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompgate/stompgate/internal/wstest"
)

// The load generator: N connections, each with W STOMP SEND frames in
// flight (closed loop: every reply releases the next SEND), for a warm-up
// and then a measured window. Every reply is checked: it must be the MESSAGE
// the echo makes of the oldest outstanding SEND of that connection (content
// and order). It reads the proxy's CPU time and the machine's /proc/stat at
// the edges of the measured window, and prints one JSON result.
//
// With -idle K it instead opens K STOMP sessions that stay idle (heart-beats
// only) and reports the proxy's resident memory per session.

const (
	phaseConnect int32 = iota
	phaseWarm
	phaseMeasure
	phaseStop
)

type loadResult struct {
	Target   string  `json:"target,omitempty"`
	Conns    int     `json:"conns"`
	Inflight int     `json:"inflight"`
	Body     int     `json:"body"`
	Seconds  float64 `json:"seconds"`     // measured window
	Trips    int64   `json:"round_trips"` // replies received and checked in the window
	Rate     float64 `json:"rate"`        // round trips per second
	P50      float64 `json:"p50_us"`
	P90      float64 `json:"p90_us"`
	P99      float64 `json:"p99_us"`
	Max      float64 `json:"max_us"`
	ProxyCPU float64 `json:"proxy_cpu_s"` // utime+stime of the proxy's processes in the window
	CPUPerRT float64 `json:"proxy_us_rt"` // proxy CPU µs per round trip
	ProxyUse float64 `json:"proxy_util"`  // proxy CPU / window
	// Read and write system calls of the proxy per round trip
	// (/proc/<pid>/io syscr/syscw); -1 when unreadable. They do not count
	// recv/send, which nginx and stompgate both use: the report takes
	// system calls from the perf cells (-syscalls) instead.
	ReadsPerRT   float64 `json:"proxy_reads_rt"`
	WritesPerRT  float64 `json:"proxy_writes_rt"`
	Client       float64 `json:"client_busy"`    // busy fraction of the client CPU
	ProxyCPUBusy float64 `json:"proxy_cpu_busy"` // busy fraction of the proxy CPU (every process on it)
	ClientOwn    float64 `json:"client_own"`     // CPU of the load generator + echo / window
	// Other processes' share of each pinned CPU: busy − what the proxy
	// (CPU 0) or the load generator and echo (CPU 1) used. Other people's
	// work on a shared machine shows up here.
	OtherProxyCPU  float64 `json:"other_proxy_cpu"`
	OtherClientCPU float64 `json:"other_client_cpu"`
	Steal          float64 `json:"steal"`  // steal fraction over all CPUs
	Errors         int64   `json:"errors"` // bad or out-of-order replies
	FirstErr       string  `json:"first_error,omitempty"`
	Connect        float64 `json:"connect_s"` // time to open every connection
	// With -perf: the proxy's system calls per round trip, by kind (perf stat
	// tracepoints).
	Syscalls map[string]float64 `json:"syscalls_rt,omitempty"`
}

type idleResult struct {
	Target       string  `json:"target,omitempty"`
	Sessions     int     `json:"sessions"`
	Connect      float64 `json:"connect_s"`
	Hold         float64 `json:"hold_s"`
	BaseRSS      int64   `json:"base_rss"`
	OpenRSS      int64   `json:"open_rss"`          // just after all sessions opened (+1 s)
	EndRSS       int64   `json:"end_rss"`           // at the end of the hold
	MaxRSS       int64   `json:"max_rss"`           // largest sample during the hold
	PerSession   float64 `json:"per_session_bytes"` // (EndRSS-BaseRSS)/Sessions
	HoldCPU      float64 `json:"hold_cpu_s"`        // proxy CPU during the hold (heart-beats)
	Lost         int64   `json:"lost"`              // sessions that ended during the hold
	HeartBeatsRx int64   `json:"heartbeats_received"`
	HeartBeatsTx int64   `json:"heartbeats_sent"`
	FirstErr     string  `json:"first_error,omitempty"`
	// Go runtime figures scraped from stompgate's /metrics at the end of
	// the hold.
	Go map[string]float64 `json:"go,omitempty"`
}

type loadFlags struct {
	url        string
	conns      int
	inflight   int
	size       int
	warmup     time.Duration
	duration   time.Duration
	pids       []int
	proxyCPU   int
	clientCPU  int
	clientPids []int // the echo: its CPU counts as the client side's
	dialConc   int
	hb         string
	idle       int
	hold       time.Duration
	fetch      []string
	perf       bool
}

func loadMain(args []string) int {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var f loadFlags
	var pids, clientPids, fetch string
	fs.StringVar(&f.url, "url", "", "ws:// URL of the target")
	fs.IntVar(&f.conns, "conns", 50, "connections")
	fs.IntVar(&f.inflight, "inflight", 4, "messages in flight per connection")
	fs.IntVar(&f.size, "size", 1024, "STOMP body bytes")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "warm-up before the measured window")
	fs.DurationVar(&f.duration, "duration", 5*time.Second, "measured window")
	fs.StringVar(&pids, "pids", "", "comma list of the proxy's process ids (CPU, RSS)")
	fs.StringVar(&clientPids, "client-pids", "", "comma list of other client-side process ids (the echo)")
	fs.IntVar(&f.proxyCPU, "proxy-cpu", 0, "CPU the proxy is pinned to")
	fs.IntVar(&f.clientCPU, "client-cpu", 1, "CPU the load generator and echo are pinned to")
	fs.IntVar(&f.dialConc, "dial-concurrency", 64, "connections opened at once")
	fs.StringVar(&f.hb, "heart-beat", "10000,10000", "heart-beat header of CONNECT")
	fs.IntVar(&f.idle, "idle", 0, "open this many idle sessions and measure RSS instead")
	fs.DurationVar(&f.hold, "hold", 15*time.Second, "idle: how long the sessions stay open")
	fs.BoolVar(&f.perf, "perf", false, "count the proxy's system calls with perf stat during the window")
	fs.StringVar(&fetch, "fetch", "", "idle: comma list of URL=FILE fetched at the end of the hold")
	fs.Parse(args)
	for _, p := range strings.Split(pids, ",") {
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "load: bad pid", p)
			return 2
		}
		f.pids = append(f.pids, n)
	}
	for _, p := range strings.Split(clientPids, ",") {
		if n, err := strconv.Atoi(p); err == nil {
			f.clientPids = append(f.clientPids, n)
		}
	}
	if fetch != "" {
		f.fetch = strings.Split(fetch, ",")
	}
	var out any
	var err error
	if f.idle > 0 {
		out, err = runIdle(f)
	} else {
		out, err = runLoad(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// lconn is one client connection of the load generator.
type lconn struct {
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	r   msgReader
	hdr []byte

	locked    bool       // idle mode: heart-beats are written from another goroutine
	mu        sync.Mutex // guards bw when locked
	hbPeriod  time.Duration
	lastWrite atomic.Int64
	hbRx      atomic.Int64
}

func (l *lconn) lock() {
	if l.locked {
		l.mu.Lock()
	}
}

func (l *lconn) unlock() {
	if l.locked {
		l.mu.Unlock()
	}
}

func (l *lconn) writeFrame(op byte, p []byte) {
	l.hdr = wstest.AppendHeader(l.hdr[:0], op, len(p), true)
	l.bw.Write(l.hdr)
	l.bw.Write(p)
}

// dialSTOMP opens a WebSocket to u with subprotocol v12.stomp and exchanges
// CONNECT / CONNECTED.
func dialSTOMP(ctx context.Context, u *url.URL, hb string, bufSize int, locked bool) (*lconn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	l := &lconn{c: c, bw: bufio.NewWriterSize(c, bufSize), locked: locked}
	fr := &flushingReader{conn: c, w: l.bw, flush: func() { l.lastWrite.Store(time.Now().UnixNano()) }}
	if locked {
		fr.mu = &l.mu
	}
	l.br = bufio.NewReaderSize(fr, bufSize)
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	path := u.RequestURI()
	fmt.Fprintf(l.bw, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n", path, u.Host, k)
	if err := l.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(l.br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != wstest.AcceptKey(k) {
		c.Close()
		return nil, errors.New("handshake: bad Sec-WebSocket-Accept")
	}
	l.r = msgReader{br: l.br, onControl: func(op byte, p []byte) error {
		if op != opPing {
			return nil
		}
		l.lock()
		defer l.unlock()
		l.writeFrame(opPong, p)
		return nil
	}}
	l.writeFrame(opText, []byte("CONNECT\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:"+hb+"\n\n\x00"))
	if err := l.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	for {
		_, p, err := l.r.next()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("waiting for CONNECTED: %w", err)
		}
		if isHeartBeat(p) {
			continue
		}
		if !bytes.HasPrefix(p, []byte("CONNECTED\n")) {
			c.Close()
			return nil, fmt.Errorf("expected CONNECTED, got %q", trunc(p))
		}
		mine, _ := parseHeartBeat(hb)
		theirs, _ := parseHeartBeat(string(headerValue(p, "heart-beat")))
		if mine.send > 0 && theirs.recv > 0 {
			l.hbPeriod = max(mine.send, theirs.recv)
		}
		break
	}
	c.SetDeadline(time.Time{})
	l.lastWrite.Store(time.Now().UnixNano())
	return l, nil
}

func trunc(p []byte) []byte {
	if len(p) > 60 {
		return p[:60]
	}
	return p
}

// openAll opens n connections, dialConc at a time.
func openAll(ctx context.Context, u *url.URL, n, dialConc int, hb string, bufSize int, locked bool) ([]*lconn, error) {
	conns := make([]*lconn, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range min(dialConc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				var l *lconn
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					l, err = dialSTOMP(dctx, u, hb, bufSize, locked)
					cancel()
					if err == nil {
						break
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					return
				}
				conns[i] = l
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, l := range conns {
			if l != nil {
				l.c.Close()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// sampler reads the proxy's CPU time and /proc/stat.
type sample struct {
	at     time.Time
	proxy  float64
	client float64 // this process + f.clientPids
	cpus   map[int]cpuTimes
	rd, wr uint64
	io     bool // rd and wr were read
}

func takeSample(pids, clientPids []int) (sample, error) {
	s := sample{at: time.Now()}
	var err error
	if s.client, err = procsCPU(append([]int{os.Getpid()}, clientPids...)); err != nil {
		return s, err
	}
	if len(pids) > 0 {
		if s.proxy, err = procsCPU(pids); err != nil {
			return s, err
		}
		s.io = true
		for _, p := range pids {
			r, w, err := procSyscalls(p)
			if err != nil {
				s.io = false
				break
			}
			s.rd += r
			s.wr += w
		}
	}
	s.cpus, err = readCPUStat()
	return s, err
}

// loadState is shared by every connection of one run.
type loadState struct {
	total    atomic.Int64 // replies received, every phase
	phase    atomic.Int32
	base     time.Time
	errs     atomic.Int64
	errOnce  sync.Once
	firstErr string

	inflight  int
	sendHead  []byte // "SEND\n" + headers + blank line
	fillNul   []byte // body after the sequence number, and the NUL
	replyHead []byte // replyPrefix + headers + blank line
}

func (st *loadState) fail(msg string) {
	st.errs.Add(1)
	st.errOnce.Do(func() { st.firstErr = msg })
}

type connStats struct {
	trips int64
	lat   []uint32 // ns, saturated
}

func runLoad(f loadFlags) (*loadResult, error) {
	u, err := url.Parse(f.url)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("bad -url %q", f.url)
	}
	if f.size < 16 {
		return nil, errors.New("-size must be ≥ 16 (the sequence number)")
	}
	st := &loadState{inflight: f.inflight, base: time.Now()}
	st.sendHead = []byte("SEND\ndestination:/queue/bench\ncontent-type:text/plain\ncontent-length:" + strconv.Itoa(f.size) + "\n\n")
	st.replyHead = append([]byte(replyPrefix), st.sendHead[5:]...)
	st.fillNul = make([]byte, f.size-16+1)
	for i := range st.fillNul[:len(st.fillNul)-1] {
		st.fillNul[i] = 'a' + byte(i%26)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	bufSize := 32 << 10
	conns, err := openAll(ctx, u, f.conns, f.dialConc, f.hb, bufSize, false)
	if err != nil {
		return nil, err
	}
	connectTime := time.Since(t0)

	stats := make([]connStats, len(conns))
	var wg sync.WaitGroup
	for i, l := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.pump(l, &stats[i])
		}()
	}
	st.phase.Store(phaseWarm)
	time.Sleep(f.warmup)
	a, err := takeSample(f.pids, f.clientPids)
	if err != nil {
		return nil, err
	}
	var perf *perfStat
	var perfTrips int64
	if f.perf && len(f.pids) > 0 {
		if perf, err = startPerf(f.pids); err != nil {
			return nil, fmt.Errorf("perf: %w", err)
		}
		perfTrips = st.total.Load()
		// Restart the window once perf counts.
		if a, err = takeSample(f.pids, f.clientPids); err != nil {
			return nil, err
		}
	}
	st.phase.Store(phaseMeasure)
	time.Sleep(f.duration)
	st.phase.Store(phaseStop)
	b, err := takeSample(f.pids, f.clientPids)
	if err != nil {
		return nil, err
	}
	var syscalls map[string]float64
	if perf != nil {
		perfTrips = st.total.Load() - perfTrips
		if syscalls, err = perf.stop(); err != nil {
			return nil, fmt.Errorf("perf: %w", err)
		}
	}
	// Every connection drains what it has in flight, then closes.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		st.fail("connections did not finish within 10 s of the end")
		for _, l := range conns {
			l.c.Close()
		}
		<-done
	}

	secs := b.at.Sub(a.at).Seconds()
	res := &loadResult{Conns: f.conns, Inflight: f.inflight, Body: f.size, Seconds: secs, Connect: connectTime.Seconds()}
	var all []uint32
	for i := range stats {
		res.Trips += stats[i].trips
		all = append(all, stats[i].lat...)
	}
	res.Rate = float64(res.Trips) / secs
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i]) / 1e3
	}
	res.P50, res.P90, res.P99 = pct(0.50), pct(0.90), pct(0.99)
	if len(all) > 0 {
		res.Max = float64(all[len(all)-1]) / 1e3
	}
	res.ProxyCPU = b.proxy - a.proxy
	if res.Trips > 0 {
		res.CPUPerRT = res.ProxyCPU / float64(res.Trips) * 1e6
	}
	res.ProxyUse = res.ProxyCPU / secs
	res.ReadsPerRT, res.WritesPerRT = -1, -1
	if a.io && b.io && res.Trips > 0 {
		res.ReadsPerRT = float64(b.rd-a.rd) / float64(res.Trips)
		res.WritesPerRT = float64(b.wr-a.wr) / float64(res.Trips)
	}
	use := cpuDelta(a.cpus, b.cpus)
	res.Client = use[f.clientCPU].Busy
	res.ProxyCPUBusy = use[f.proxyCPU].Busy
	res.ClientOwn = (b.client - a.client) / secs
	res.OtherClientCPU = max(0, res.Client-res.ClientOwn)
	res.OtherProxyCPU = max(0, res.ProxyCPUBusy-res.ProxyUse)
	var steal float64
	for _, u := range use {
		steal += u.Steal
	}
	if len(use) > 0 {
		res.Steal = steal / float64(len(use))
	}
	res.Errors = st.errs.Load()
	res.FirstErr = st.firstErr
	if syscalls != nil && perfTrips > 0 {
		res.Syscalls = map[string]float64{}
		for k, v := range syscalls {
			res.Syscalls[k] = v / float64(perfTrips)
		}
	}
	return res, nil
}

// pump runs one connection's closed loop.
func (st *loadState) pump(l *lconn, cs *connStats) {
	defer l.c.Close()
	for st.phase.Load() == phaseConnect {
		time.Sleep(time.Millisecond)
	}
	W := st.inflight
	sent := make([]int64, W)
	var next, expect uint64
	var seq [16]byte
	var num [8]byte
	cs.lat = make([]uint32, 0, 4096)
	send := func() {
		sent[next%uint64(W)] = int64(time.Since(st.base))
		encodeSeq(&seq, &num, next)
		n := len(st.sendHead) + 16 + len(st.fillNul)
		l.hdr = wstest.AppendHeader(l.hdr[:0], opText, n, true)
		l.bw.Write(l.hdr)
		l.bw.Write(st.sendHead)
		l.bw.Write(seq[:])
		l.bw.Write(st.fillNul)
		next++
	}
	for range W {
		send()
	}
	var want [16]byte
	for {
		if expect == next {
			// Stopped and everything answered: close politely.
			l.writeFrame(opClose, []byte{0x03, 0xE8})
			l.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				if _, _, err := l.r.next(); err != nil {
					return
				}
			}
		}
		_, p, err := l.r.next()
		if err != nil {
			st.fail(fmt.Sprintf("read after %d replies: %v", expect, err))
			return
		}
		if isHeartBeat(p) {
			continue
		}
		now := int64(time.Since(st.base))
		ph := st.phase.Load()
		encodeSeq(&want, &num, expect)
		h := len(st.replyHead)
		if len(p) != h+16+len(st.fillNul) || !bytes.Equal(p[:h], st.replyHead) || !bytes.Equal(p[h:h+16], want[:]) || !bytes.Equal(p[h+16:], st.fillNul) {
			st.fail(fmt.Sprintf("reply %d: unexpected %d bytes %q", expect, len(p), trunc(p)))
			return
		}
		st.total.Add(1)
		if ph == phaseMeasure {
			cs.trips++
			d := now - sent[expect%uint64(W)]
			cs.lat = append(cs.lat, uint32(min(d, 1<<32-1)))
		}
		expect++
		if ph != phaseStop {
			send()
		}
	}
}

func encodeSeq(dst *[16]byte, tmp *[8]byte, n uint64) {
	for i := range 8 {
		tmp[i] = byte(n >> (56 - 8*i))
	}
	hex.Encode(dst[:], tmp[:])
}

// runIdle opens f.idle sessions, keeps them alive with heart-beats for
// f.hold and reports the proxy's RSS growth per session.
func runIdle(f loadFlags) (*idleResult, error) {
	u, err := url.Parse(f.url)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("bad -url %q", f.url)
	}
	if len(f.pids) == 0 {
		return nil, errors.New("-idle needs -pids")
	}
	res := &idleResult{Sessions: f.idle}
	if res.BaseRSS, err = procsRSS(f.pids); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	t0 := time.Now()
	conns, err := openAll(ctx, u, f.idle, f.dialConc, f.hb, 1024, true)
	if err != nil {
		return nil, err
	}
	res.Connect = time.Since(t0).Seconds()
	defer func() {
		for _, l := range conns {
			l.c.Close()
		}
	}()
	var lost atomic.Int64
	var errOnce sync.Once
	var firstErr string
	var stopping atomic.Bool
	for _, l := range conns {
		go func() {
			for {
				_, p, err := l.r.next()
				if err != nil {
					if !stopping.Load() {
						lost.Add(1)
						errOnce.Do(func() { firstErr = err.Error() })
					}
					return
				}
				if isHeartBeat(p) {
					l.hbRx.Add(1)
				}
			}
		}()
	}
	// One goroutine sends every session's heart-beats.
	var hbTx atomic.Int64
	hbDone := make(chan struct{})
	hbCtx, hbCancel := context.WithCancel(context.Background())
	defer hbCancel()
	go func() {
		defer close(hbDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case now := <-t.C:
				for _, l := range conns {
					if l.hbPeriod == 0 || now.UnixNano()-l.lastWrite.Load() < int64(l.hbPeriod)*8/10 {
						continue
					}
					l.mu.Lock()
					l.writeFrame(opText, []byte{'\n'})
					l.c.SetWriteDeadline(time.Now().Add(time.Second))
					l.bw.Flush()
					l.mu.Unlock()
					l.lastWrite.Store(now.UnixNano())
					hbTx.Add(1)
				}
			}
		}
	}()
	time.Sleep(time.Second)
	if res.OpenRSS, err = procsRSS(f.pids); err != nil {
		return nil, err
	}
	c0, err := procsCPU(f.pids)
	if err != nil {
		return nil, err
	}
	h0 := time.Now()
	res.MaxRSS = res.OpenRSS
	for time.Since(h0) < f.hold {
		time.Sleep(min(time.Second, f.hold-time.Since(h0)))
		r, err := procsRSS(f.pids)
		if err != nil {
			return nil, err
		}
		res.MaxRSS = max(res.MaxRSS, r)
		res.EndRSS = r
	}
	res.Hold = time.Since(h0).Seconds()
	c1, _ := procsCPU(f.pids)
	res.HoldCPU = c1 - c0
	res.PerSession = float64(res.EndRSS-res.BaseRSS) / float64(f.idle)
	for _, spec := range f.fetch {
		i := strings.LastIndex(spec, "=") // URLs may hold '=', file names do not
		if i < 0 {
			continue
		}
		src, dst := spec[:i], spec[i+1:]
		if err := fetchTo(src, dst); err != nil {
			fmt.Fprintln(os.Stderr, "load: fetch:", err)
		}
	}
	res.Lost = lost.Load()
	res.FirstErr = firstErr
	stopping.Store(true)
	hbCancel()
	<-hbDone
	res.HeartBeatsTx = hbTx.Load()
	for _, l := range conns {
		res.HeartBeatsRx += l.hbRx.Load()
	}
	return res, nil
}

func fetchTo(src, dst string) error {
	c := http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(src)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", src, resp.Status)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
