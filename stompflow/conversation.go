// Package stompflow is the STOMP conversation stompgate carries between one
// client and its broker: what it holds back, rewrites, forwards and consumes
// in each direction, independent of the transport that brought the bytes.
//
// A transport (the WebSocket pumps in package proxy, or any other that
// delivers a client's frames as messages) feeds each message it reads to
// the Direction it came from, chunk by chunk (Direction.Feed), and tells it
// when the message ended (Direction.EndMessage). The Direction writes what
// the other peer must get into a Sink: ranges of the chunk it was fed, and
// the frames it rewrote. What the session must act on (the conversation
// turned out not to be STOMP, CONNECT and CONNECTED went through, the broker
// answered stompgate's own DISCONNECT) is reported to an Observer.
//
// The contract it keeps, per frame:
//
//   - CONNECT (or STOMP): held until whole, its heart-beat header rewritten
//     to Config.UpstreamHeartBeat (Terminate mode) or only normalised
//     (Passthrough; Spring rejects "10000, 10000").
//   - CONNECTED: held until whole, its heart-beat header rewritten to
//     Config.ClientHeartBeat (Terminate mode, STOMP 1.1 and later).
//   - The client's DISCONNECT: given a receipt when it has none (Terminate
//     mode), so that the broker's RECEIPT tells stompgate it may close.
//   - A RECEIPT for stompgate's own receipt: consumed, never forwarded.
//   - Heart-beat EOLs: consumed in Terminate mode (the session's liveness
//     emits what each peer was promised), forwarded in Passthrough.
//   - Everything else: forwarded as the ranges it arrived in, unbuffered.
//
// A client whose first message is not a STOMP frame makes the conversation
// pass-through (Observer.NotSTOMP), or, with Config.Strict, an Error.
//
// Concurrency: each Direction belongs to the goroutine that reads its
// source. The Conversation's flags are atomics, and what it negotiated is
// read under a lock, so other goroutines (liveness, endings, the admin API)
// may ask at any time.
package stompflow

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// Config is what a conversation needs to know of stompgate's configuration.
type Config struct {
	// Mode is the heart-beat mode: Terminate rewrites heart-beat headers
	// and consumes heart-beats, Passthrough relays them.
	Mode keepalive.Mode
	// Strict refuses a client that does not speak STOMP (an Error) instead
	// of passing it through unscanned.
	Strict bool
	// Limits bounds the frames scanned in either direction.
	Limits inspect.Limits
	// UpstreamHeartBeat goes into the CONNECT sent to the broker and
	// ClientHeartBeat into the CONNECTED sent to the client (Terminate).
	UpstreamHeartBeat, ClientHeartBeat inspect.HeartBeat
	// Metrics counts heart-beats and frames; nil counts nothing.
	Metrics *metrics.Metrics
}

// Observer is told what the session must act on. Its methods are called
// from the goroutine feeding the Direction concerned.
type Observer interface {
	// NotSTOMP: the conversation is not STOMP after all; from now on bytes
	// pass through unscanned.
	NotSTOMP(why string)
	// ConnectForwarded: the client's CONNECT, rewritten, was written to
	// the broker's Sink, offering STOMP version offered (the highest in
	// accept-version).
	ConnectForwarded(offered inspect.Version)
	// DisconnectForwarded: the client's DISCONNECT was written to the
	// broker's Sink.
	DisconnectForwarded()
	// Connected: the broker's CONNECTED, rewritten, was written to the
	// client's Sink; v is the negotiated version and upstream and client
	// each hop's heart-beat periods, seen from stompgate.
	Connected(v inspect.Version, upstream, client keepalive.Periods)
	// OwnReceipt: the broker acknowledged a DISCONNECT that carried
	// stompgate's receipt (its own goodbye, or the one it added to the
	// client's DISCONNECT).
	OwnReceipt()
}

// Sink receives what one Direction forwards: the message being fed, and
// whole messages held earlier. A Sink is one message's writer; the
// transport decides when its bytes leave.
type Sink interface {
	// Chunk forwards b, a range of the chunk passed to Feed, which the
	// Sink may keep until Feed returns: consecutive ranges can then be
	// joined into one write.
	Chunk(b []byte)
	// Write forwards b, bytes from the Direction's own buffers, which are
	// reused after the call.
	Write(b []byte)
	// WriteMessage forwards a whole message held earlier (typ as the
	// transport gave it), before the current one. Nothing of the current
	// message has been forwarded when it is called.
	WriteMessage(typ int, data []byte)
}

// Error is a STOMP rule a peer broke that the conversation detected itself
// (the scanner's are *inspect.Error). The session ends with a STOMP ERROR
// carrying Msg and, on a WebSocket, close 1002.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Conversation is one session's STOMP flow, both directions.
type Conversation struct {
	cfg Config
	id  string
	obs Observer

	// ClientToUpstream carries the client's frames to the broker,
	// UpstreamToClient the broker's to the client.
	ClientToUpstream, UpstreamToClient Direction

	disabled         atomic.Bool
	connectSeen      atomic.Bool            // the client's CONNECT went to the broker
	connected        atomic.Bool            // the broker's CONNECTED went to the client
	disconnectSent   atomic.Bool            // a DISCONNECT went to the broker, the client's or stompgate's
	clientDisconnect atomic.Bool            // the client's own DISCONNECT went to the broker
	ended            atomic.Bool            // the session's end is decided: nothing more reaches the client
	sawError         atomic.Bool            // the client was sent an ERROR
	errorMessage     atomic.Pointer[string] // the message header of the first ERROR forwarded to the client
	ownReceipt       atomic.Pointer[string] // the receipt stompgate put on a DISCONNECT
	// version is the negotiated version once CONNECTED went through; each
	// Direction's scanner takes it up before its next chunk.
	version atomic.Uint32

	mu  sync.Mutex // guards neg
	neg Negotiation
}

// Negotiation is what CONNECT and CONNECTED said, and what stompgate
// put in their place.
type Negotiation struct {
	Offered        inspect.Version   // the client's highest accept-version
	Version        inspect.Version   // the broker's, from CONNECTED; VersionUnknown before
	Client         inspect.HeartBeat // the client's CONNECT heart-beat
	SentToUpstream inspect.HeartBeat // what stompgate's CONNECT carried
	Upstream       inspect.HeartBeat // the broker's CONNECTED heart-beat
	SentToClient   inspect.HeartBeat // what stompgate's CONNECTED carried
}

// New returns the conversation of a session whose client negotiated the
// WebSocket subprotocol (or equivalent) subprotocol; "" when none was.
// A subprotocol that names no STOMP version makes the conversation
// pass-through from the start (Disabled), without telling obs. id names
// the session in the receipts stompgate adds.
func New(cfg Config, id, subprotocol string, obs Observer) *Conversation {
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	c := &Conversation{cfg: cfg, id: id, obs: obs}
	c.ClientToUpstream.init(c, true, cfg.Limits)
	c.UpstreamToClient.init(c, false, cfg.Limits)
	v := inspect.VersionFromSubprotocol(subprotocol)
	if subprotocol != "" && v == inspect.VersionUnknown {
		c.disabled.Store(true)
		return c
	}
	c.ClientToUpstream.scan.SetVersion(v)
	c.UpstreamToClient.scan.SetVersion(v)
	c.version.Store(uint32(v))
	return c
}

// Disabled reports whether the conversation is not STOMP: bytes pass
// through unscanned.
func (c *Conversation) Disabled() bool { return c.disabled.Load() }

// disable makes the conversation pass-through, once.
func (c *Conversation) disable(why string) {
	if c.disabled.Swap(true) {
		return
	}
	c.obs.NotSTOMP(why)
}

// ConnectSeen reports whether the client's CONNECT went to the broker.
func (c *Conversation) ConnectSeen() bool { return c.connectSeen.Load() }

// Connected reports whether the broker's CONNECTED went to the client.
func (c *Conversation) Connected() bool { return c.connected.Load() }

// ClientDisconnected reports whether the client's own DISCONNECT went to
// the broker.
func (c *Conversation) ClientDisconnected() bool { return c.clientDisconnect.Load() }

// Version is the negotiated version (VersionUnknown before CONNECTED), for
// escaping stompgate's own frames.
func (c *Conversation) Version() inspect.Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.neg.Version
}

// Negotiated returns what CONNECT and CONNECTED said so far.
func (c *Conversation) Negotiated() Negotiation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.neg
}

// ErrorMessage is the message header of the first ERROR the client was
// forwarded; false when none was.
func (c *Conversation) ErrorMessage() (string, bool) {
	if m := c.errorMessage.Load(); m != nil {
		return *m, true
	}
	return "", false
}

// End records that the session's end is decided: an ERROR the broker
// sends from now on (its answer to stompgate's DISCONNECT, say) is not
// the one the client was told.
func (c *Conversation) End() { c.ended.Store(true) }

// ClaimError reports whether stompgate may send the client an ERROR of
// its own, and if so records that it did: the client speaks STOMP, its
// CONNECT went through, it was sent no ERROR yet and did not disconnect.
func (c *Conversation) ClaimError() bool {
	if c.disabled.Load() || !c.connectSeen.Load() || c.sawError.Load() || c.disconnectSent.Load() {
		return false
	}
	return !c.sawError.Swap(true)
}

// Goodbye returns the DISCONNECT stompgate sends a broker whose client is
// gone, carrying receipt, and records that receipt as stompgate's; false
// when the broker should get no DISCONNECT (not STOMP, not connected, or
// one already sent). Call GoodbyeSent once it was written.
func (c *Conversation) Goodbye(receipt string) ([]byte, bool) {
	if c.disabled.Load() || !c.connected.Load() || c.disconnectSent.Load() {
		return nil, false
	}
	c.ownReceipt.Store(&receipt)
	return []byte("DISCONNECT\nreceipt:" + receipt + "\n\n\x00"), true
}

// GoodbyeSent records that stompgate's DISCONNECT reached the broker.
func (c *Conversation) GoodbyeSent() { c.disconnectSent.Store(true) }

// AwaitsReceipt reports whether a receipt of stompgate's is outstanding:
// the broker's frames are still worth scanning after the end, for it.
func (c *Conversation) AwaitsReceipt() bool { return c.ownReceipt.Load() != nil }

// ErrorFrame builds a STOMP ERROR whose message header (escaped for
// version v) and body say message.
func ErrorFrame(v inspect.Version, message string) []byte {
	b := make([]byte, 0, 64+len(message))
	b = append(b, "ERROR\ncontent-type:text/plain\nmessage:"...)
	b = inspect.AppendEscaped(b, message, v)
	b = append(b, "\ncontent-length:"...)
	b = strconv.AppendInt(b, int64(len(message)), 10)
	b = append(b, "\n\n"...)
	b = append(b, message...)
	return append(b, 0)
}
