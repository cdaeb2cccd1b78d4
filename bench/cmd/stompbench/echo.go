package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompgate/stompgate/internal/wstest"
)

// The echo upstream: a STOMP-over-WebSocket peer that answers CONNECT (or
// STOMP) with CONNECTED, DISCONNECT with RECEIPT when asked, and every SEND
// with a MESSAGE carrying the SEND's headers and body unchanged. It sends
// heart-beats when negotiated and ignores the ones it receives.

// replyPrefix turns a SEND frame into a MESSAGE: the reply is replyPrefix
// followed by the SEND frame minus its "SEND\n" command line.
const replyPrefix = "MESSAGE\nsubscription:0\nmessage-id:0\n"

type echoServer struct {
	hb heartBeat // what CONNECTED announces

	mu    sync.Mutex
	conns map[*echoConn]struct{} // connections that must get heart-beats
}

type echoConn struct {
	c         net.Conn
	br        *bufio.Reader
	mu        sync.Mutex // guards bw
	bw        *bufio.Writer
	period    time.Duration // heart-beats to send; 0: none
	lastWrite atomic.Int64  // unix nanos
	hdr       []byte
}

func echoMain(args []string) int {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	hb := fs.String("heart-beat", "10000,10000", "heart-beat header of CONNECTED (sx,sy in ms)")
	life := fs.Duration("max-lifetime", 30*time.Minute, "exit after this long whatever happens")
	fs.Parse(args)
	h, err := parseHeartBeat(*hb)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		return 1
	}
	e := newEchoServer(h)
	fmt.Printf("listening %s\n", ln.Addr())
	// Stop by ourselves: when the orchestrator goes away (stdin closes) or
	// after max-lifetime.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	time.AfterFunc(*life, func() { os.Exit(0) })
	go e.heartBeats(nil)
	e.acceptLoop(ln)
	return 1
}

func newEchoServer(hb heartBeat) *echoServer {
	return &echoServer{hb: hb, conns: map[*echoConn]struct{}{}}
}

// acceptLoop serves ln until it is closed.
func (e *echoServer) acceptLoop(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			fmt.Fprintln(os.Stderr, "echo: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.serve(c)
		}()
	}
}

func (e *echoServer) serve(c net.Conn) {
	defer c.Close()
	ec := &echoConn{c: c, bw: bufio.NewWriterSize(c, 16<<10)}
	ec.br = bufio.NewReaderSize(&flushingReader{conn: c, w: ec.bw, mu: &ec.mu, flush: func() {
		ec.lastWrite.Store(time.Now().UnixNano())
	}}, 16<<10)
	req, err := http.ReadRequest(ec.br)
	if err != nil {
		return
	}
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") || req.Header.Get("Sec-WebSocket-Key") == "" {
		fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	proto := ""
	for _, v := range req.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if proto == "" && (p == "v12.stomp" || p == "v11.stomp" || p == "v10.stomp") {
				proto = p
			}
		}
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wstest.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	if proto != "" {
		resp += "Sec-WebSocket-Protocol: " + proto + "\r\n"
	}
	ec.bw.WriteString(resp + "\r\n")
	if ec.bw.Flush() != nil {
		return
	}
	defer e.unregister(ec)
	r := msgReader{br: ec.br, onControl: func(op byte, p []byte) error {
		if op == opPing {
			ec.mu.Lock()
			defer ec.mu.Unlock()
			ec.writeFrame(opPong, p)
			return nil
		}
		return nil
	}}
	for {
		op, p, err := r.next()
		if err != nil {
			if err == errClosed {
				ec.mu.Lock()
				code := p
				if len(code) > 2 {
					code = code[:2]
				}
				ec.writeFrame(opClose, code)
				ec.bw.Flush()
				ec.mu.Unlock()
			}
			return
		}
		if isHeartBeat(p) {
			continue
		}
		ec.mu.Lock()
		switch {
		case bytes.HasPrefix(p, []byte("SEND\n")):
			ec.hdr = wstest.AppendHeader(ec.hdr[:0], op, len(replyPrefix)+len(p)-5, false)
			ec.bw.Write(ec.hdr)
			ec.bw.WriteString(replyPrefix)
			ec.bw.Write(p[5:])
		case bytes.HasPrefix(p, []byte("CONNECT\n")) || bytes.HasPrefix(p, []byte("STOMP\n")):
			ch, _ := parseHeartBeat(string(headerValue(p, "heart-beat")))
			if e.hb.send > 0 && ch.recv > 0 {
				ec.period = max(e.hb.send, ch.recv)
				e.register(ec)
			}
			ec.writeFrame(op, []byte(fmt.Sprintf("CONNECTED\nversion:1.2\nheart-beat:%d,%d\nserver:stompbench-echo\n\n\x00", e.hb.send.Milliseconds(), e.hb.recv.Milliseconds())))
		case bytes.HasPrefix(p, []byte("DISCONNECT\n")):
			if id := headerValue(p, "receipt"); id != nil {
				ec.writeFrame(op, []byte("RECEIPT\nreceipt-id:"+string(id)+"\n\n\x00"))
			}
		}
		ec.mu.Unlock()
	}
}

// writeFrame writes one unmasked frame; the caller holds ec.mu.
func (ec *echoConn) writeFrame(op byte, p []byte) {
	ec.hdr = wstest.AppendHeader(ec.hdr[:0], op, len(p), false)
	ec.bw.Write(ec.hdr)
	ec.bw.Write(p)
}

func (e *echoServer) register(ec *echoConn) {
	e.mu.Lock()
	e.conns[ec] = struct{}{}
	e.mu.Unlock()
}

func (e *echoServer) unregister(ec *echoConn) {
	e.mu.Lock()
	delete(e.conns, ec)
	e.mu.Unlock()
}

// heartBeats sends an EOL to every connection that has been silent for its
// period: one goroutine for all of them.
func (e *echoServer) heartBeats(stop <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var list []*echoConn
	for {
		var now time.Time
		select {
		case now = <-t.C:
		case <-stop:
			return
		}
		list = list[:0]
		e.mu.Lock()
		for ec := range e.conns {
			list = append(list, ec)
		}
		e.mu.Unlock()
		for _, ec := range list {
			if now.UnixNano()-ec.lastWrite.Load() < int64(ec.period) || !ec.mu.TryLock() {
				continue
			}
			ec.writeFrame(opText, []byte{'\n'})
			ec.c.SetWriteDeadline(time.Now().Add(time.Second))
			ec.bw.Flush()
			ec.c.SetWriteDeadline(time.Time{})
			ec.lastWrite.Store(now.UnixNano())
			ec.mu.Unlock()
		}
	}
}

// heartBeat is a STOMP heart-beat header: what one side can send and what it
// wants to receive.
type heartBeat struct{ send, recv time.Duration }

func parseHeartBeat(s string) (heartBeat, error) {
	if s == "" {
		return heartBeat{}, nil
	}
	var a, b int64
	if _, err := fmt.Sscanf(s, "%d,%d", &a, &b); err != nil {
		return heartBeat{}, fmt.Errorf("heart-beat %q: %v", s, err)
	}
	return heartBeat{time.Duration(a) * time.Millisecond, time.Duration(b) * time.Millisecond}, nil
}

// headerValue returns the value of the first header called name in a STOMP
// frame's header section, or nil.
func headerValue(frame []byte, name string) []byte {
	end := bytes.Index(frame, []byte("\n\n"))
	if end < 0 {
		end = len(frame)
	}
	lines := bytes.Split(frame[:end], []byte("\n"))
	for _, l := range lines[1:] {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && string(k) == name {
			return v
		}
	}
	return nil
}
