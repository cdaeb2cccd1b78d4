package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/wsconn"
	"github.com/stompgate/stompgate/metrics"
)

// leg is one WebSocket connection of a session, to the client or to the
// broker, and everything stompgate knows about that peer: how to write to
// it, what it sent, when it was last heard from and written to, and how
// its connection ended. A session has two; whatever concerns one peer
// lives here once, not as a client/upstream pair of fields elsewhere.
type leg struct {
	name  string // "client" or "upstream"
	conn  *wsconn.Conn
	hop   metrics.Hop
	dir   metrics.Direction // the direction of messages read from this peer
	limit int64             // largest message accepted from this peer

	// wmu serialises data messages: the pump writing to this peer, the
	// liveness emitters and the ending path all write, and a message must
	// not be interleaved with another. Control frames (ping, pong, close)
	// go through WriteControl, which wsconn makes safe concurrently.
	wmu sync.Mutex
	// truncated is set when a message to this peer was cut off mid-stream;
	// from then on only control frames may be written.
	truncated atomic.Bool
	// midFrame: what was written to this peer ends inside a STOMP frame,
	// so a heart-beat EOL must wait. Set by the pump writing here, under
	// wmu, only when it changes (docs/internals/hot-path.md#store-on-change).
	midFrame atomic.Bool
	// lastType is the type of the last data message written here: the
	// heart-beats and frames stompgate adds take it, so a peer that
	// speaks binary gets binary. Stored only when it changes, as midFrame.
	lastType atomic.Int32
	// failed is set by the first failed write to this peer, so the failure
	// is acted on once.
	failed atomic.Bool

	msgs, bytes atomic.Int64 // messages and payload bytes read from this peer

	// Liveness evidence, as stamps (wsconn.Now; read back with wsconn.Time,
	// which gives a time.Time with a monotonic reading). wsconn stamps
	// readAt on every read that returned bytes (any byte counts as life),
	// writeAt on every flush that carried data, and progressAt when a
	// write that found the socket full moves on.
	readAt, writeAt, progressAt atomic.Int64
	pingSentAt, pongAt          atomic.Int64 // the last ping stompgate sent, the last pong read
	// heartBeatsSent, pingsSent, pongsReceived count for the log line
	// and /debug/sessions.
	heartBeatsSent, pingsSent, pongsReceived atomic.Int64
	// readSnap is readAt as the liveness engine last saw it, and heard
	// what the last check of a passed deadline found; both under the
	// session's liveness.mu.
	readSnap int64
	heard    heard

	closeSent atomic.Bool
	// Set by the ending path or the close handler; read after both pumps
	// ended.
	mu                 sync.Mutex
	sentCode, recvCode int
	sentText, recvText string
	lost               bool
}

func newLeg(name string, hop metrics.Hop, dir metrics.Direction, limit int64) *leg {
	l := &leg{name: name, hop: hop, dir: dir, limit: limit}
	l.lastType.Store(websocket.TextMessage)
	return l
}

// heard is what heardSince found on a leg when a read deadline passed.
type heard struct {
	by metrics.Evidence // the evidence used: a late read's label
	// kernelSilence is the kernel's answer when by is EvidenceKernel; -1
	// when it was not asked or did not know. A death comes only from
	// that answer, so it is the one logged with the verdict.
	kernelSilence time.Duration
}

// heardSince tells the liveness engine, when a read deadline has passed,
// how long ago the peer's bytes in fact reached this host: 0 when the pump
// read some since the engine's snapshot (the pump and the timer race) or
// some wait in the receive queue, else the kernel's silence (TCP_INFO).
// Under liveness.mu; two system calls at most, and only at a deadline.
func (l *leg) heardSince() (time.Duration, bool) {
	h := &l.heard
	h.kernelSilence = -1
	switch {
	case l.readAt.Load() != l.readSnap:
		h.by = metrics.EvidenceRead
		return 0, true
	case l.conn.Unread():
		h.by = metrics.EvidenceUnread
		return 0, true
	}
	h.by = metrics.EvidenceKernel
	d, ok := l.conn.KernelSilence()
	if ok {
		h.kernelSilence = d
	}
	return d, ok
}

var errTruncated = errors.New("a message to this peer was cut off")

// writeFrame writes one whole frame as its own message, between the frames
// written to l; it waits at most CloseTimeout for a message being written
// to l to end.
func (l *leg) writeFrame(frame []byte, closeTimeout time.Duration) bool {
	deadline := time.Now().Add(closeTimeout)
	for !l.wmu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer l.wmu.Unlock()
	if l.truncated.Load() || l.midFrame.Load() {
		return false
	}
	return l.conn.WriteMessage(int(l.lastType.Load()), frame) == nil
}

// sendEOL writes one heart-beat EOL to l, unless a message to l is being
// written (data is flowing, so no heart-beat is needed), l is in the
// middle of a frame (an EOL there would corrupt it) or the session ends.
func (l *leg) sendEOL(closing *atomic.Bool) bool {
	if !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	if closing.Load() || l.truncated.Load() || l.midFrame.Load() {
		return false
	}
	return l.conn.WriteMessage(int(l.lastType.Load()), eol) == nil
}

var eol = []byte{'\n'}

// pong answers a ping (RFC 6455 §5.5.2). A failed write is left to the
// pumps: the next data write to l fails the same way.
func (l *leg) pong(data []byte) {
	// A zero deadline: the write fails only when the peer reads nothing
	// for WriteTimeout (wsconn), as data writes do.
	_ = l.conn.WriteControl(websocket.PongMessage, data, time.Time{})
}

// ping sends l a ping and stamps it. Stamped before the write: a pong can
// be read before WriteControl returns, and a stamp after it would make
// that pong look early. The write may wait behind data the peer is slow
// to read: its progress counts as an answer meanwhile (progressAt).
func (l *leg) ping() bool {
	l.pingSentAt.Store(wsconn.Now())
	if l.conn.WriteControl(websocket.PingMessage, nil, time.Time{}) != nil {
		return false
	}
	l.pingsSent.Add(1)
	return true
}

// closeCode is the code that ended this leg: the peer's if it closed first
// (or the leg was lost: 1006), stompgate's otherwise.
func (l *leg) closeCode(initiator bool) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost:
		return websocket.CloseAbnormalClosure, "connection lost"
	case initiator && l.recvCode != 0:
		return l.recvCode, l.recvText
	case l.sentCode != 0:
		return l.sentCode, l.sentText
	}
	return l.recvCode, l.recvText
}
