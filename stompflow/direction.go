package stompflow

import (
	"strconv"
	"sync/atomic"

	"github.com/stompgate/stompgate/inspect"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
)

// maxLeadMsgs: a client that sends more messages than this before its
// first frame is not a STOMP client (they heart-beat only after CONNECT).
const maxLeadMsgs = 64

// heldMsg is a client message held while the session's STOMP-ness is
// being decided.
type heldMsg struct {
	typ  int
	data []byte
}

// Direction is one direction of the conversation: its scanner, the frame
// it holds back to rewrite, and its counters. It belongs to the goroutine
// that reads its source; its counters may be read from any goroutine.
type Direction struct {
	c          *Conversation
	fromClient bool
	hop        metrics.Hop       // the hop its source is on
	dir        metrics.Direction // for the frame metrics
	scan       inspect.Scanner

	lead []byte // EOLs of the current message before the client's first frame
	// leadMsgs: whole client messages (EOLs only, or empty) before the
	// client's first frame, held until the session turns out to be STOMP
	// (heart-beats before CONNECT: dropped in Terminate mode) or not
	// (forwarded as they came, one message each).
	leadMsgs []heldMsg
	pending  []byte // command-line bytes seen before the command was known
	hold     []byte // a frame being held back to be rewritten
	holding  bool
	first    bool // the first frame of this direction has been seen

	frames [inspect.CmdError + 1]atomic.Int64
	eols   atomic.Int64
	// A run of frames of one command counted but not yet added to frames
	// and the metrics: published once per read (Publish), not per frame,
	// as each is an atomic add (docs/internals/hot-path.md#counters-per-read).
	runCmd inspect.Command
	runN   int64
}

func (d *Direction) init(c *Conversation, fromClient bool, l inspect.Limits) {
	d.c, d.fromClient = c, fromClient
	d.scan = *inspect.NewScanner(l)
	d.hop, d.dir = metrics.HopUpstream, metrics.UpstreamToClient
	if fromClient {
		d.hop, d.dir = metrics.HopClient, metrics.ClientToUpstream
	}
}

// Scanning reports whether chunks of this direction go through Feed. When
// false they are forwarded as they are: the conversation is not STOMP, or
// the broker speaks before the client's CONNECT went through (not STOMP's
// business yet).
func (d *Direction) Scanning() bool {
	return !d.c.disabled.Load() && (d.fromClient || d.c.connectSeen.Load())
}

// InFrame reports whether what was fed so far ends in the middle of a
// frame: a heart-beat EOL written to this direction's destination now
// would corrupt it.
func (d *Direction) InFrame() bool { return d.scan.InFrame() }

// HeartBeats is the number of heart-beat EOLs received in this direction.
func (d *Direction) HeartBeats() int64 { return d.eols.Load() }

// Frames calls f with each command received in this direction and its
// count, for commands seen at least once.
func (d *Direction) Frames(f func(cmd inspect.Command, n int64)) {
	for cmd := range d.frames {
		if n := d.frames[cmd].Load(); n > 0 {
			f(inspect.Command(cmd), n)
		}
	}
}

// Publish adds the run of frames counted since the last call to the
// counters and the metrics; the transport calls it once per read.
func (d *Direction) Publish() {
	if d.runN == 0 {
		return
	}
	d.frames[d.runCmd].Add(d.runN)
	d.c.cfg.Metrics.Frames(d.dir, d.runCmd, d.runN)
	d.runN = 0
}

// Feed scans chunk, the next bytes of a message from this direction's
// source, and writes what the other peer must get into out: ranges of the
// chunk, and the frames held back, rewritten. In Terminate mode heart-beat
// EOLs are consumed here. An error is final: a *inspect.Error or an
// *Error.
func (d *Direction) Feed(chunk []byte, out Sink) error {
	c := d.c
	if v := inspect.Version(c.version.Load()); v != d.scan.Version() {
		d.scan.SetVersion(v)
	}
	terminate := c.cfg.Mode == keepalive.Terminate
	undecided := d.fromClient && !d.first
	d.scan.Feed(chunk)
	pos := 0
	// rest: the current frame needs no event before its end (not held, not
	// an ERROR whose message is kept), so the scanner reports the rest of
	// it at once.
	rest := false
	for {
		var ev inspect.Event
		var err error
		if rest {
			ev, err = d.scan.Rest()
		} else {
			ev, err = d.scan.Next()
		}
		if err != nil {
			if undecided && !c.cfg.Strict {
				// Not STOMP after all: everything goes through untouched.
				c.disable("client sent no STOMP frame: " + err.Error())
				d.flushUndecided(out)
				out.Chunk(chunk[pos:])
				return nil
			}
			return err
		}
		pos = ev.End
		seg := chunk[ev.Start:ev.End]
		switch ev.Kind {
		case inspect.NeedMore:
			return nil
		case inspect.EOL:
			d.eols.Add(1)
			c.cfg.Metrics.HeartbeatReceived(d.hop)
			switch {
			case undecided:
				d.lead = append(d.lead, seg...)
			case !terminate:
				out.Chunk(seg)
			}
			continue
		case inspect.Partial:
			if ev.Command == inspect.CmdUnknown && !d.holding {
				// The command is not known yet: keep its bytes until it is.
				d.pending = append(d.pending, seg...)
				continue
			}
		case inspect.FrameStart:
			if err := d.frameStart(ev.Command); err != nil {
				return err
			}
			if c.disabled.Load() {
				d.flushUndecided(out)
				out.Chunk(chunk[ev.Start:])
				return nil
			}
			if undecided {
				// Heart-beats before CONNECT never reach the broker in
				// Terminate mode: Spring answers them with ERROR + 1002.
				if !terminate {
					d.writeHeld(out)
					out.Write(d.lead)
				}
				d.lead, d.leadMsgs = d.lead[:0], nil
				undecided = false
			}
			if d.holding {
				d.hold = append(d.hold[:0], d.pending...)
			} else {
				out.Write(d.pending)
			}
			d.pending = d.pending[:0]
			rest = !d.holding && (d.fromClient || ev.Command != inspect.CmdError)
		}
		if d.holding {
			d.hold = append(d.hold, seg...)
		} else {
			out.Chunk(seg)
		}
		switch ev.Kind {
		case inspect.HeadersEnd:
			// The ERROR the client is forwarded, the first one: not one
			// that arrives after the end (a broker's answer to stompgate's
			// own DISCONNECT).
			if !d.fromClient && ev.Command == inspect.CmdError && !c.ended.Load() && !c.sawError.Load() {
				c.sawError.Store(true)
				if m, ok := d.scan.Header("message"); ok {
					msg := string(m)
					c.errorMessage.Store(&msg)
				}
			}
		case inspect.FrameEnd:
			rest = false
			if ev.Command != d.runCmd {
				d.Publish()
				d.runCmd = ev.Command
			}
			d.runN++
			if d.holding {
				d.holding = false
				if err := d.rewriteHeld(ev.Command, out); err != nil {
					return err
				}
			}
		}
	}
}

// EndMessage is called after each whole message from this direction's
// source, of type typ (as the transport gave it); empty says it had no
// payload. forwardEmpty says whether the transport must forward an empty
// message as one: it does unless heart-beats are consumed here (Terminate
// mode), where an empty message is a heart-beat too.
//
// A STOMP client's first message holds at least CONNECT's command line, so
// a first message that leaves a partial line behind is not STOMP. One made
// only of EOLs, or empty, is held (not forwarded now) until the
// conversation is known to be STOMP or not.
func (d *Direction) EndMessage(typ int, empty bool, out Sink) (forwardEmpty bool, err error) {
	held := false
	if d.fromClient && !d.c.disabled.Load() {
		if held, err = d.endOfClientMessage(typ, out); err != nil {
			return false, err
		}
	}
	c := d.c
	return empty && !held && (c.disabled.Load() || c.cfg.Mode != keepalive.Terminate || (!d.fromClient && !c.connectSeen.Load())), nil
}

func (d *Direction) endOfClientMessage(typ int, out Sink) (held bool, err error) {
	if d.first {
		return false, nil
	}
	c := d.c
	if len(d.pending) == 0 {
		if len(d.leadMsgs) < maxLeadMsgs {
			d.leadMsgs = append(d.leadMsgs, heldMsg{typ: typ, data: append([]byte(nil), d.lead...)})
			d.lead = d.lead[:0]
			return true, nil
		}
		if c.cfg.Strict {
			return false, &Error{Msg: "first frame must be CONNECT or STOMP"}
		}
		c.disable("client sent " + strconv.Itoa(maxLeadMsgs) + " messages before a frame")
		d.flushUndecided(out)
		return false, nil
	}
	if c.cfg.Strict {
		return false, &Error{Msg: "first frame must be CONNECT or STOMP"}
	}
	c.disable("client's first message is not a STOMP frame")
	d.flushUndecided(out)
	return false, nil
}

// flushUndecided writes what was held while the conversation's STOMP-ness
// was being decided: the whole messages as they came, then what the
// current message held (nothing of it was written yet).
func (d *Direction) flushUndecided(out Sink) {
	d.writeHeld(out)
	out.Write(d.lead)
	out.Write(d.pending)
	d.lead, d.pending = nil, nil
}

// writeHeld forwards the held whole messages, each as the message it was
// (type, boundaries, emptiness).
func (d *Direction) writeHeld(out Sink) {
	for _, m := range d.leadMsgs {
		out.WriteMessage(m.typ, m.data)
	}
	d.leadMsgs = nil
}

// frameStart decides, when a frame's command is known, whether the
// conversation is STOMP at all and whether the frame must be held back for
// rewriting.
func (d *Direction) frameStart(cmd inspect.Command) error {
	c := d.c
	if d.fromClient && !d.first {
		d.first = true
		if !cmd.IsConnect() {
			if c.cfg.Strict {
				return &Error{Msg: "first frame must be CONNECT or STOMP, got " + cmd.String()}
			}
			c.disable("first client frame is " + cmd.String())
			return nil
		}
	}
	switch {
	case d.fromClient && cmd.IsConnect():
		d.holding = true
	case d.fromClient && cmd == inspect.CmdDisconnect:
		d.holding = true
	case !d.fromClient && cmd == inspect.CmdConnected && !d.first:
		d.holding = true
	case !d.fromClient && cmd == inspect.CmdReceipt && c.ownReceipt.Load() != nil:
		d.holding = true
	}
	if !d.fromClient {
		d.first = true
	}
	return nil
}

// rewriteHeld writes a held frame, rewritten as the contract requires.
func (d *Direction) rewriteHeld(cmd inspect.Command, out Sink) error {
	c := d.c
	frame := d.hold
	terminate := c.cfg.Mode == keepalive.Terminate
	switch {
	case d.fromClient && cmd.IsConnect():
		raw, present := inspect.HeaderValue(frame, "heart-beat")
		chb, err := inspect.HeartBeatHeader(raw, present)
		if err != nil {
			return &Error{Msg: "invalid heart-beat header in " + cmd.String()}
		}
		av, avOK := inspect.HeaderValue(frame, "accept-version")
		send := chb
		if terminate {
			send = c.cfg.UpstreamHeartBeat
		}
		offered := inspect.VersionFromHeaders(cmd, av, avOK)
		c.mu.Lock()
		c.neg.Offered, c.neg.Client, c.neg.SentToUpstream = offered, chb, send
		c.mu.Unlock()
		if terminate || present {
			// Normalised even in Passthrough: Spring rejects "10000, 10000".
			var rerr error
			frame, rerr = inspect.RewriteHeartBeat(nil, frame, send)
			if rerr != nil {
				return &Error{Msg: "cannot rewrite " + cmd.String()}
			}
		}
		out.Write(frame)
		c.connectSeen.Store(true)
		c.obs.ConnectForwarded(offered)
	case d.fromClient && cmd == inspect.CmdDisconnect:
		if _, has := inspect.HeaderValue(frame, "receipt"); !has && terminate {
			receipt := "stompgate-" + c.id
			c.ownReceipt.Store(&receipt)
			frame, _ = inspect.AddHeader(nil, frame, "receipt", receipt)
		}
		out.Write(frame)
		c.disconnectSent.Store(true)
		c.clientDisconnect.Store(true)
		c.obs.DisconnectForwarded()
	case !d.fromClient && cmd == inspect.CmdConnected:
		raw, present := inspect.HeaderValue(frame, "heart-beat")
		shb, _ := inspect.HeartBeatHeader(raw, present)
		vv, vOK := inspect.HeaderValue(frame, "version")
		version := inspect.VersionFromHeaders(cmd, vv, vOK)
		c.version.Store(uint32(version))
		d.scan.SetVersion(version)
		sent := shb
		if terminate && version >= inspect.V11 {
			sent = c.cfg.ClientHeartBeat
			frame, _ = inspect.RewriteHeartBeat(nil, frame, sent)
		}
		c.mu.Lock()
		c.neg.Version, c.neg.Upstream, c.neg.SentToClient = version, shb, sent
		neg := c.neg
		c.mu.Unlock()
		out.Write(frame)
		c.connected.Store(true)
		up, client := keepalive.Negotiate(neg.SentToUpstream, shb, neg.Client, sent)
		if !terminate {
			// One contract end to end: stompgate only relays.
			up, client = keepalive.Negotiate(neg.Client, shb, neg.Client, shb)
		}
		c.obs.Connected(version, up, client)
	case !d.fromClient && cmd == inspect.CmdReceipt:
		id, _ := inspect.HeaderValue(frame, "receipt-id")
		if own := c.ownReceipt.Load(); own != nil && string(id) == *own {
			// stompgate's own receipt: the client never asked for it.
			c.obs.OwnReceipt()
			return nil
		}
		out.Write(frame)
	default:
		out.Write(frame)
	}
	return nil
}
