package wsconn

import (
	"encoding/binary"
	"sync"
	"time"
)

// writePool holds the write buffers, taken while frames are buffered.
var writePool = sync.Pool{New: func() any { b := make([]byte, writeBufferSize); return &b }}

// BeginMessage starts a data message of type mt (TextMessage or
// BinaryMessage). The caller writes its payload with Write and ends it with
// EndMessage, and does not start another data message meanwhile.
//
// The message's state (its opcode) belongs to that one writer, so no lock
// is taken here; the buffer's is taken by Write and EndMessage.
func (c *Conn) BeginMessage(mt int) {
	c.wop = mt
}

// Write appends payload to the open message. It sends what is buffered only
// when the buffer is full (the message then goes out in fragments).
func (c *Conn) Write(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.appendLocked(p)
}

// WriteEnd is Write(p) then EndMessage, under one lock.
func (c *Conn) WriteEnd(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.appendLocked(p); err != nil {
		return err
	}
	return c.endLocked()
}

func (c *Conn) appendLocked(p []byte) error {
	if err := c.writable(); err != nil {
		return err
	}
	for len(p) > 0 {
		if c.wframe < 0 {
			if err := c.openFrame(); err != nil {
				return err
			}
		}
		wb := *c.wbp
		if c.wlen == len(wb) {
			c.closeFrame(false)
			if err := c.flushLocked(time.Time{}, 0); err != nil {
				return err
			}
			continue
		}
		n := min(len(wb)-c.wlen, len(p))
		if c.role == Client {
			c.wkeyPos = maskCopy(c.wkey, c.wkeyPos, wb[c.wlen:], p[:n])
		} else {
			copy(wb[c.wlen:], p[:n])
		}
		c.wlen += n
		p = p[n:]
	}
	return nil
}

// EndMessage completes the open message. It is sent by the next Flush.
func (c *Conn) EndMessage() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.endLocked()
}

func (c *Conn) endLocked() error {
	if err := c.writable(); err != nil {
		return err
	}
	if c.wframe < 0 {
		if err := c.openFrame(); err != nil {
			return err
		}
	}
	c.closeFrame(true)
	c.wop = -1
	return nil
}

// AbandonMessage drops what is buffered of the open message; fragments of
// it already sent stay sent, so the caller must then send only control
// frames.
func (c *Conn) AbandonMessage() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wframe >= 0 {
		c.wlen = c.wframe
		c.wframe = -1
		if c.wsent == c.wlen {
			// What preceded it was sent: nothing is buffered.
			c.wsent, c.wdone, c.wlen = 0, 0, 0
		}
	}
	c.wop = -1
	c.releaseWriteIfEmpty()
}

// WriteMessage writes one whole data message and flushes it, with
// everything buffered before it.
func (c *Conn) WriteMessage(mt int, p []byte) error {
	c.BeginMessage(mt)
	if err := c.Write(p); err != nil {
		return err
	}
	if err := c.EndMessage(); err != nil {
		return err
	}
	return c.Flush()
}

// Flush sends the complete frames buffered. An open message stays buffered
// until it ends or fills the buffer.
func (c *Conn) Flush() error { return c.FlushAt(0) }

// FlushAt is Flush for a caller that knows the time (a stamp from Now or
// LastReadAt; 0: unknown).
func (c *Conn) FlushAt(now int64) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.wbp == nil || c.wdone == c.wsent {
		return nil
	}
	return c.flushLocked(time.Time{}, now)
}

// Buffered reports whether complete frames wait for a Flush.
func (c *Conn) Buffered() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.wbp != nil && c.wdone > c.wsent
}

// WriteControl sends a ping, pong or close frame now, after the complete
// frames already buffered, with deadline as the write deadline. A close
// frame is the last frame sent: later writes, control frames included,
// fail with ErrCloseSent.
func (c *Conn) WriteControl(op int, payload []byte, deadline time.Time) error {
	if len(payload) > maxControlPayload {
		return &ProtocolError{Msg: "control frame payload over 125 bytes"}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return ErrCloseSent
	}
	if op == CloseMessage {
		c.closeSent = true
		// Nothing may follow the close frame: drop an unfinished message.
		if c.wframe >= 0 {
			c.wlen = c.wframe
			c.wframe = -1
		}
	}
	if c.wframe >= 0 {
		// A data frame is half written in the buffer: send what precedes
		// it, then the control frame from its own small buffer (rare: only
		// while a large message is being streamed).
		if c.wdone > c.wsent {
			if err := c.flushLocked(deadline, 0); err != nil {
				return err
			}
		}
		frame := appendControl(make([]byte, 0, 14+len(payload)), c.role, op, payload)
		return c.writeLocked(frame, deadline, 0)
	}
	if c.wbp == nil {
		c.wbp = writePool.Get().(*[]byte)
	}
	wb := *c.wbp
	if len(wb)-c.wlen < 6+len(payload) {
		if err := c.flushLocked(deadline, 0); err != nil {
			return err
		}
		if c.wbp == nil {
			c.wbp = writePool.Get().(*[]byte)
			wb = *c.wbp
		}
	}
	c.wlen = len(appendControl(wb[:c.wlen], c.role, op, payload))
	c.wdone = c.wlen
	return c.flushLocked(deadline, 0)
}

func appendControl(b []byte, role Role, op int, payload []byte) []byte {
	if role == Client {
		key := newKey()
		b = append(b, byte(finBit|op), byte(maskBit|len(payload)), key[0], key[1], key[2], key[3])
		start := len(b)
		b = append(b, payload...)
		maskBytes(key, 0, b[start:])
		return b
	}
	b = append(b, byte(finBit|op), byte(len(payload)))
	return append(b, payload...)
}

func (c *Conn) writable() error {
	if c.werr != nil {
		return c.werr
	}
	if c.closeSent {
		return ErrCloseSent
	}
	return nil
}

// headerSlot is the room reserved before a frame's payload: 2 bytes, a
// 2-byte extended length (payloads stay below 64 KiB) and, from a client,
// the mask key.
func (c *Conn) headerSlot() int {
	if c.role == Client {
		return 8
	}
	return 4
}

// openFrame reserves a header slot at the end of the buffer.
func (c *Conn) openFrame() error {
	if c.wbp == nil {
		c.wbp = writePool.Get().(*[]byte)
	}
	if len(*c.wbp)-c.wlen < c.headerSlot()+1 {
		if err := c.flushLocked(time.Time{}, 0); err != nil {
			return err
		}
		if c.wbp == nil {
			c.wbp = writePool.Get().(*[]byte)
		}
	}
	c.wframe = c.wlen
	c.wlen += c.headerSlot()
	if c.role == Client {
		c.wkey = newKey()
		c.wkeyPos = 0
	}
	return nil
}

// closeFrame writes the open frame's header; a short header moves the
// (then at most 125-byte) payload back over the unused slot bytes.
func (c *Conn) closeFrame(fin bool) {
	wb := *c.wbp
	slot := c.headerSlot()
	start := c.wframe + slot
	n := c.wlen - start
	op := c.wop
	if op < 0 {
		op = BinaryMessage // not reached: Write without BeginMessage
	}
	b0 := byte(op)
	if fin {
		b0 |= finBit
	}
	var b1 byte
	if c.role == Client {
		b1 = maskBit
	}
	h := wb[c.wframe:]
	if n <= 125 {
		h[0], h[1] = b0, b1|byte(n)
		hl := 2
		if c.role == Client {
			copy(h[2:6], c.wkey[:])
			hl = 6
		}
		copy(wb[c.wframe+hl:], wb[start:c.wlen])
		c.wlen -= slot - hl
	} else {
		h[0], h[1] = b0, b1|126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		if c.role == Client {
			copy(h[4:8], c.wkey[:])
		}
	}
	c.wdone = c.wlen
	c.wframe = -1
	c.wop = opContinuation
	c.wdata = true
}

// flushLocked writes the complete frames, then gives the buffer back if
// nothing else is in it. deadline zero means the WriteTimeout rule (see
// Options.WriteTimeout and writeLocked); with no WriteTimeout, no deadline,
// whatever a control frame set before.
//
// now is the current time (a stamp) if the caller knows it, else 0: a
// proxy flushing what it forwarded knows when it read it, and one clock
// read per message is saved.
func (c *Conn) flushLocked(deadline time.Time, now int64) error {
	wb := *c.wbp
	if now == 0 && ((c.opts.WriteTimeout > 0 && c.raw == nil) || (c.wdata && c.opts.WriteStamp != nil)) {
		now = Now()
	}
	err := c.writeLocked(wb[c.wsent:c.wdone], deadline, now)
	if err != nil {
		return err
	}
	c.wsent = c.wdone
	if c.wdata {
		c.wdata = false
		if c.opts.WriteStamp != nil {
			c.opts.WriteStamp.Store(now)
		}
	}
	if c.wframe < 0 {
		c.wsent, c.wdone, c.wlen = 0, 0, 0
		c.releaseWriteIfEmpty()
	}
	return nil
}

func (c *Conn) writeFailed(err error) error {
	c.werr = err
	c.wsent, c.wdone, c.wlen, c.wframe = 0, 0, 0, -1
	c.releaseWriteIfEmpty()
	return err
}

func (c *Conn) releaseWriteIfEmpty() {
	if c.wbp != nil && c.wlen == 0 {
		writePool.Put(c.wbp)
		c.wbp = nil
		c.wsent, c.wdone = 0, 0
	}
}
