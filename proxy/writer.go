package proxy

// msgWriter writes one message to a leg for the pump that reads the other
// leg; it is the stompflow.Sink of that pump's direction. It opens the
// message (and takes dst's write lock) only when there is something to
// write: a message made only of consumed heart-beats produces nothing, and
// dst's lock is not held while the source is idle.
type msgWriter struct {
	s    *Session
	dst  *leg
	typ  int
	open bool
	err  error
	// discard: the session's end is decided; nothing is written.
	discard bool
	// pend is the bytes written but not yet handed to dst's connection:
	// the scanner reports a frame as several contiguous ranges of the
	// chunk, which are joined here into one Write. It aliases the source's
	// read buffer, so it is handed over (handOver) before the pump reads on.
	pend []byte
}

func (m *msgWriter) begin() bool {
	if m.err != nil || m.discard {
		return false
	}
	if m.open {
		return true
	}
	m.dst.wmu.Lock()
	if m.dst.truncated.Load() {
		m.dst.wmu.Unlock()
		m.err = errTruncated
		return false
	}
	m.dst.conn.BeginMessage(m.typ)
	m.open = true
	return true
}

// Chunk writes a range of the chunk being forwarded (the source's read
// buffer, unchanged until the pump reads on): it may be kept in pend.
func (m *msgWriter) Chunk(b []byte) {
	if len(b) == 0 || !m.begin() {
		return
	}
	if n := len(m.pend); n > 0 && cap(m.pend)-n >= len(b) && &m.pend[:n+1][n] == &b[0] {
		m.pend = m.pend[:n+len(b)] // b follows pend in the chunk
		return
	}
	m.handOver()
	m.pend = b
}

// Write writes bytes from any other buffer (held or rewritten frames,
// which are reused afterwards): they are handed over at once.
func (m *msgWriter) Write(b []byte) {
	if len(b) == 0 || !m.begin() {
		return
	}
	m.handOver()
	if m.open {
		if err := m.dst.conn.Write(b); err != nil {
			m.fail(err)
		}
	}
}

// WriteMessage forwards a whole message held earlier, as its own message,
// before the one being written (which has not begun).
func (m *msgWriter) WriteMessage(typ int, data []byte) {
	if m.err != nil || m.discard || m.open {
		return
	}
	dst := m.dst
	dst.wmu.Lock()
	defer dst.wmu.Unlock()
	if dst.truncated.Load() {
		return
	}
	dst.conn.BeginMessage(typ)
	if err := dst.conn.WriteEnd(data); err != nil {
		m.err = err
		m.s.writeFailed(dst, err)
	}
}

// handOver hands pend to dst's connection.
func (m *msgWriter) handOver() {
	if len(m.pend) == 0 {
		return
	}
	b := m.pend
	m.pend = nil
	if !m.open {
		return
	}
	if err := m.dst.conn.Write(b); err != nil {
		m.fail(err)
	}
}

func (m *msgWriter) fail(err error) {
	m.err = err
	m.pend = nil
	m.dst.conn.AbandonMessage()
	m.open = false
	m.dst.wmu.Unlock()
}

// empty forwards an empty message.
func (m *msgWriter) empty() { m.begin() }

// complete completes the message (it is sent with the destination's next
// flush) and records whether dst is left in the middle of a STOMP frame,
// before releasing the lock, so heart-beat emitters never slip an EOL into
// a frame. A message written whole records its type as dst's last.
func (m *msgWriter) complete(midFrame bool) (written bool, err error) {
	dst := m.dst
	if dst.midFrame.Load() != midFrame { // docs/internals/hot-path.md#store-on-change
		dst.midFrame.Store(midFrame)
	}
	if !m.open {
		return false, m.err
	}
	b := m.pend
	m.pend = nil
	err = dst.conn.WriteEnd(b)
	if err == nil && dst.lastType.Load() != int32(m.typ) {
		dst.lastType.Store(int32(m.typ))
	}
	m.open = false
	dst.wmu.Unlock()
	return err == nil, err
}

// abandon gives up a message half written: dst may only get control frames
// from now on.
func (m *msgWriter) abandon() {
	m.pend = nil
	if m.open {
		m.dst.conn.AbandonMessage()
		m.dst.truncated.Store(true)
		m.open = false
		m.dst.wmu.Unlock()
	}
}
