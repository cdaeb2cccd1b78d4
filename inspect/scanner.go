package inspect

import (
	"bytes"
	"encoding/binary"
	"iter"
	"strconv"
)

// Default limits. They apply to every Limits field that is zero or negative.
const (
	// DefaultMaxHeaderBytes bounds the command line plus header lines plus
	// the blank line. It equals Spring's whole-frame default (64 KiB), so
	// any header section Spring would accept passes, and stays below
	// RabbitMQ's parser limit (max_header_length 100 KB).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaders is RabbitMQ's max_headers.
	DefaultMaxHeaders = 100
	// DefaultMaxFrameBytes bounds a whole frame, command through NUL. The
	// proxy passes STOMPGATE_MAX_MESSAGE_BYTES here. Note that Spring's own
	// limit (StompSubProtocolHandler messageSizeLimit) is 64 KiB, so larger
	// frames only help with brokers that accept them (RabbitMQ: 4 MiB).
	DefaultMaxFrameBytes = 1 << 20
)

// Limits bounds what a Scanner accepts, and therefore how much memory it can
// be made to hold: only the header section is ever buffered, so a scanner
// never holds more than MaxHeaderBytes (plus slice growth slack).
//
// A header section longer than MaxFrameBytes fails with ErrFrameTooLarge
// even if MaxHeaderBytes is larger.
type Limits struct {
	MaxHeaderBytes int // command line + headers + blank line, EOLs included
	MaxHeaders     int // header lines, duplicates included
	MaxFrameBytes  int // command through NUL, trailing EOLs excluded
}

// EventKind says what an Event's byte range holds.
type EventKind uint8

const (
	// NeedMore reports that the current chunk is used up; Start == End ==
	// len(chunk). Call Feed with the next chunk.
	NeedMore EventKind = iota
	// EOL covers one or more EOLs (LF or CRLF) outside a frame: heart-beats
	// and the optional EOLs after a frame's NUL, which the grammar does not
	// tell apart. A CR that ends a chunk is reported in an EOL event at once
	// (so that a proxy dropping heart-beats drops both halves of a split
	// CRLF); the next chunk must then begin with LF, which is reported as
	// EOL too, otherwise Next fails with ErrSyntax. A proxy that forwards
	// EOLs should hold back such a trailing CR: Spring rejects a WebSocket
	// message that ends in CR.
	EOL
	// Partial covers bytes of a frame's command line or header section whose
	// line is completed by a later chunk. Before FrameStart its Command is
	// CmdUnknown because the command is not known yet.
	Partial
	// FrameStart is reported when the command line is complete. The range
	// covers the rest of the command line in this chunk, EOL included.
	FrameStart
	// HeadersEnd is reported after the blank line that ends the header
	// section; the range covers the header bytes in this chunk. From now on
	// until the next frame begins or Feed is called, Header, Headers and
	// ContentLength describe this frame.
	HeadersEnd
	// Body covers the body bytes in this chunk (never empty). A body that
	// spans chunks gets one Body event per chunk. With content-length the
	// bytes are not examined, so they may contain NUL.
	Body
	// FrameEnd covers the frame's NUL octet. Scanner.FrameLen then gives
	// the length of the whole frame, command through NUL.
	FrameEnd
)

var kindNames = [...]string{"NeedMore", "EOL", "Partial", "FrameStart", "HeadersEnd", "Body", "FrameEnd"}

func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one step of the scan. Start and End index the chunk most
// recently passed to Feed.
//
// It has four fields on purpose: the Go compiler keeps a struct of at most
// four fields in registers, while a larger one is built in memory and
// copied, and those copies stall the CPU's store forwarding on every event
// (docs/internals/hot-path.md#four-fields).
type Event struct {
	Kind    EventKind
	Command Command // command of the frame the bytes belong to; CmdUnknown for EOL and NeedMore
	Start   int
	End     int
}

// Word masks for scanHead's eight-bytes-at-a-time search.
const (
	lowBytes = 0x0101010101010101
	highBits = 0x8080808080808080
)

// scanner states
const (
	stIdle    uint8 = iota // between frames
	stCommand              // in the command line
	stHeaders              // in the header lines
	stBody                 // in the body
	stNUL                  // body complete, NUL expected
)

// flags
const (
	fBuffered  uint8 = 1 << iota // the header section so far is in buf, not in chunk
	fPendingCR                   // the previous chunk ended with a CR between frames
	fHaveCL                      // the frame has a content-length header
)

// Scanner splits a STOMP byte stream into events; see the package
// documentation for the event model. Use one Scanner per direction per
// session. The zero value is ready to use with default limits and an
// unknown version.
//
// A Scanner keeps a reference to the chunk given to Feed until the next
// Feed; the caller must not modify the chunk meanwhile. It does not allocate
// except to grow its header buffer when a header section spans chunks, and
// to build an error.
type Scanner struct {
	chunk []byte // current chunk
	head  []byte // header section of the current frame once complete; aliases chunk or buf
	buf   []byte // header bytes carried over from earlier chunks; reused
	err   error  // sticky failure

	pos      int // next unread offset in chunk
	evStart  int // start of the next event's range
	mark     int // unbuffered: offset in chunk where the frame began; buffered: offset in buf of the open line
	frameLen int // bytes of the current frame consumed so far
	bodyLeft int // content-length bytes still unread

	lim      Limits
	nHeaders int

	state   uint8
	flags   uint8
	cmd     Command
	version Version
}

// maxRetainedBuf is the header buffer capacity kept between frames. A
// rarely seen big header section (a long token in CONNECT) should not pin
// memory in every one of tens of thousands of sessions.
const maxRetainedBuf = 4 << 10

// NewScanner returns a scanner with the given limits; zero fields take the
// defaults.
func NewScanner(l Limits) *Scanner {
	s := new(Scanner)
	s.lim = l
	return s
}

// SetVersion sets the negotiated protocol version, which decides how header
// escapes are interpreted by Header (name matching) and AppendHeader. Until
// it is called the version is VersionUnknown, which is treated like 1.2.
// Framing does not depend on the version. The proxy calls it once it has
// seen CONNECTED.
func (s *Scanner) SetVersion(v Version) { s.version = v }

// Version returns the version set with SetVersion.
func (s *Scanner) Version() Version { return s.version }

// Reset returns s to its initial state (no chunk, between frames, no error)
// keeping its limits, version and header buffer.
func (s *Scanner) Reset() {
	*s = Scanner{buf: s.buf[:0], lim: s.lim, version: s.version}
}

// Feed starts scanning chunk. Call it first and then after each NeedMore;
// calling it earlier abandons the rest of the previous chunk and leaves the
// frame state inconsistent. Header data of the previous chunk is no longer
// available after Feed.
func (s *Scanner) Feed(chunk []byte) {
	s.chunk = chunk
	s.pos = 0
	s.evStart = 0
	s.head = nil
}

// Err returns the error that stopped the scanner, or nil.
func (s *Scanner) Err() error { return s.err }

// InFrame reports whether the scanner is inside a frame, i.e. has seen its
// first byte but not yet its NUL. A proxy uses it to know whether the bytes
// it has forwarded so far end on a frame boundary.
func (s *Scanner) InFrame() bool { return s.state != stIdle }

// FrameLen returns the length of the frame just finished, command through
// NUL: valid from its FrameEnd event until the next frame begins.
func (s *Scanner) FrameLen() int { return s.frameLen }

// Command returns the command of the current (or just finished) frame.
func (s *Scanner) Command() Command { return s.cmd }

// ContentLength returns the frame's content-length (the first one) and
// whether it has one. Like Header, it is valid from HeadersEnd until the
// next frame begins or Feed is called.
func (s *Scanner) ContentLength() (int, bool) {
	if s.head == nil || s.flags&fHaveCL == 0 {
		return 0, false
	}
	return s.clen(), true
}

// clen recovers the declared content-length; bodyLeft counts down while the
// body is read, so it is re-parsed from the header instead of stored twice.
func (s *Scanner) clen() int {
	v, _ := s.Header("content-length")
	n := 0
	for _, c := range v {
		n = n*10 + int(c-'0')
	}
	return n
}

func (s *Scanner) maxHeaderBytes() int {
	if s.lim.MaxHeaderBytes > 0 {
		return s.lim.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (s *Scanner) maxHeaders() int {
	if s.lim.MaxHeaders > 0 {
		return s.lim.MaxHeaders
	}
	return DefaultMaxHeaders
}

func (s *Scanner) maxFrameBytes() int {
	if s.lim.MaxFrameBytes > 0 {
		return s.lim.MaxFrameBytes
	}
	return DefaultMaxFrameBytes
}

// Next returns the next event of the current chunk. When the chunk is used
// up it returns an event of kind NeedMore. After an error the scanner is
// failed for good and Next keeps returning that error with a zero Event;
// the events returned before it still satisfy the pass-through invariant
// for the bytes they cover.
func (s *Scanner) Next() (Event, error) {
	if s.err != nil {
		return Event{}, s.err
	}
	for {
		switch s.state {
		case stIdle:
			if s.pos >= len(s.chunk) {
				return s.needMore(), nil
			}
			c := s.chunk[s.pos]
			if c == '\n' || c == '\r' || s.flags&fPendingCR != 0 {
				return s.eols()
			}
			if c == 0 {
				return s.fail(syntaxError("NUL octet outside a frame"))
			}
			s.state = stCommand
			s.mark = s.pos
			s.frameLen = 0
			s.nHeaders = 0
			s.bodyLeft = 0
			s.flags &^= fBuffered | fHaveCL
			s.head = nil
			s.cmd = CmdUnknown
		case stCommand, stHeaders:
			return s.scanHead()
		case stBody:
			if s.pos >= len(s.chunk) {
				return s.needMore(), nil
			}
			if s.flags&fHaveCL != 0 {
				// Skip the declared length in one step: the bytes are not
				// looked at, which is what makes large bodies cheap.
				n := min(s.bodyLeft, len(s.chunk)-s.pos)
				s.pos += n
				s.bodyLeft -= n
				s.frameLen += n
				if s.bodyLeft == 0 {
					s.state = stNUL
				}
				return s.emit(Body), nil
			}
			rest := s.chunk[s.pos:]
			allowed := s.maxFrameBytes() - s.frameLen - 1 // body bytes still allowed before the NUL
			w := rest
			if len(w) > allowed+1 {
				w = w[:allowed+1]
			}
			i := bytes.IndexByte(w, 0)
			if i < 0 && len(rest) > allowed {
				return s.fail(frameTooLarge(s.maxFrameBytes()))
			}
			if i == 0 {
				s.state = stNUL
				continue
			}
			if i < 0 {
				i = len(rest)
			} else {
				s.state = stNUL
			}
			s.pos += i
			s.frameLen += i
			return s.emit(Body), nil
		case stNUL:
			if s.pos >= len(s.chunk) {
				return s.needMore(), nil
			}
			if s.chunk[s.pos] != 0 {
				return s.fail(syntaxError("frame not terminated by NUL after content-length bytes"))
			}
			s.pos++
			s.frameLen++
			s.state = stIdle
			if cap(s.buf) > maxRetainedBuf {
				s.buf = nil // s.head may still alias it; that is fine
			}
			return s.emit(FrameEnd), nil
		}
	}
}

// Rest is Next for a caller that has no use for a frame's HeadersEnd and
// Body events: called after FrameStart, it consumes the rest of the frame
// as far as the chunk goes, with all of Next's checks, and reports it as
// one event. That is FrameEnd, covering everything after the previous
// event through the NUL; or, when the chunk ends first, Partial (the
// header section is incomplete) or Body, and the next call (Next or Rest)
// returns NeedMore. Header and ContentLength work after it as after
// HeadersEnd. On an error, the bytes since the previous event are not
// reported, unlike with Next. A proxy forwarding most frames untouched
// saves a turn of its event loop per event.
func (s *Scanner) Rest() (Event, error) {
	if s.state == stIdle {
		return s.Next() // not inside a frame: nothing to merge
	}
	start := s.evStart
	for {
		ev, err := s.Next()
		if err != nil {
			return ev, err
		}
		switch ev.Kind {
		case FrameEnd:
			ev.Start = start
			return ev, nil
		case NeedMore:
			if start == ev.End {
				return ev, nil
			}
			kind := Body
			if s.state == stCommand || s.state == stHeaders {
				kind = Partial
			}
			return Event{Kind: kind, Command: s.cmd, Start: start, End: ev.End}, nil
		}
	}
}

func (s *Scanner) emit(k EventKind) Event {
	ev := Event{Kind: k, Command: s.cmd, Start: s.evStart, End: s.pos}
	s.evStart = s.pos
	return ev
}

func (s *Scanner) needMore() Event {
	n := len(s.chunk)
	return Event{Kind: NeedMore, Start: n, End: n}
}

//go:noinline
func (s *Scanner) fail(err *Error) (Event, error) {
	s.err = err
	s.head = nil
	return Event{}, err
}

// eols consumes a run of EOLs between frames.
func (s *Scanner) eols() (Event, error) {
	c := s.chunk
	i := s.pos
	if s.flags&fPendingCR != 0 {
		if c[i] != '\n' {
			return s.fail(syntaxError("CR not followed by LF"))
		}
		s.flags &^= fPendingCR
		i++
	}
	for i < len(c) {
		switch c[i] {
		case '\n':
			i++
			continue
		case '\r':
			if i+1 == len(c) {
				s.flags |= fPendingCR
				i++
				continue
			}
			if c[i+1] != '\n' {
				return s.fail(syntaxError("CR not followed by LF"))
			}
			i += 2
			continue
		}
		break
	}
	s.pos = i
	ev := s.emit(EOL)
	ev.Command = CmdUnknown
	return ev, nil
}

// scanHead consumes command and header lines until it has an event.
func (s *Scanner) scanHead() (Event, error) {
	c := s.chunk
	limit := min(s.maxHeaderBytes(), s.maxFrameBytes())
	for {
		// Find the end of the line and reject NUL in one pass; header lines
		// are short, so a plain loop beats two IndexByte calls. Only the
		// bytes the limit still allows are looked at, so that the first
		// offending byte decides the error however the input is chunked.
		end := min(len(c), s.pos+limit-s.frameLen)
		i := s.pos
		// Skip 8 bytes at a time while none of them is ≤ LF (the "has
		// less than" bit trick: a byte below 0x0B sets its top bit in the
		// result, and the lowest such flag is never a false one); the byte
		// loop below then finds the exact one.
		for ; i+8 <= end; i += 8 {
			x := binary.LittleEndian.Uint64(c[i:])
			if (x-0x0B*lowBytes)&^x&highBits != 0 {
				break
			}
		}
		for ; i < end; i++ {
			if b := c[i]; b <= '\n' {
				if b == '\n' {
					break
				}
				if b == 0 {
					return s.fail(syntaxError("NUL octet in frame header"))
				}
			}
		}
		if i == end && end < len(c) {
			return s.fail(s.headTooLarge())
		}
		if i == len(c) {
			// The line continues in the next chunk: keep the header section
			// so far, because lines must be contiguous to be parsed and the
			// caller may reuse this chunk's memory.
			s.frameLen += len(c) - s.pos
			if s.flags&fBuffered == 0 {
				s.buf = append(s.buf[:0], c[s.mark:]...)
				s.mark = s.pos - s.mark
				s.flags |= fBuffered
			} else {
				s.buf = append(s.buf, c[s.pos:]...)
			}
			s.pos = len(c)
			if s.pos > s.evStart {
				return s.emit(Partial), nil
			}
			return s.needMore(), nil
		}
		s.frameLen += i + 1 - s.pos
		var line []byte
		if s.flags&fBuffered != 0 {
			s.buf = append(s.buf, c[s.pos:i+1]...)
			line = s.buf[s.mark : len(s.buf)-1]
			s.mark = len(s.buf)
		} else {
			line = c[s.pos:i]
		}
		s.pos = i + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if s.state == stCommand {
			s.cmd = ParseCommand(line)
			s.state = stHeaders
			return s.emit(FrameStart), nil
		}
		if len(line) == 0 {
			return s.headersEnd()
		}
		if err := s.headerLine(line); err != nil {
			return s.fail(err)
		}
	}
}

func (s *Scanner) headTooLarge() *Error {
	if s.maxFrameBytes() < s.maxHeaderBytes() {
		return frameTooLarge(s.maxFrameBytes())
	}
	return headerTooLarge(s.maxHeaderBytes())
}

// headerLine checks one header line and picks up content-length.
func (s *Scanner) headerLine(line []byte) *Error {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return syntaxError("header line without colon")
	}
	if colon == 0 {
		return syntaxError("header line with empty name")
	}
	s.nHeaders++
	if s.nHeaders > s.maxHeaders() {
		return tooManyHeaders(s.maxHeaders())
	}
	// Only the first content-length counts (repeated headers: first wins).
	// The name needs no unescaping: an escape always decodes to one of
	// `\ : CR LF`, none of which is in "content-length".
	if s.flags&fHaveCL == 0 && string(line[:colon]) == "content-length" {
		v := line[colon+1:]
		if len(v) == 0 {
			return syntaxError("invalid content-length")
		}
		n := 0
		for _, d := range v {
			if d < '0' || d > '9' {
				return syntaxError("invalid content-length")
			}
			n = n*10 + int(d-'0')
			if n > s.maxFrameBytes() { // also keeps n from overflowing
				return frameTooLarge(s.maxFrameBytes())
			}
		}
		s.bodyLeft = n
		s.flags |= fHaveCL
	}
	return nil
}

func (s *Scanner) headersEnd() (Event, error) {
	need := s.frameLen + 1
	if s.flags&fHaveCL != 0 {
		need += s.bodyLeft
	}
	if need > s.maxFrameBytes() {
		return s.fail(frameTooLarge(s.maxFrameBytes()))
	}
	if s.flags&fBuffered != 0 {
		s.head = s.buf
	} else {
		s.head = s.chunk[s.mark:s.pos]
	}
	if s.flags&fHaveCL != 0 && s.bodyLeft == 0 {
		s.state = stNUL
	} else {
		s.state = stBody
	}
	return s.emit(HeadersEnd), nil
}

// Header returns the raw value (as on the wire, still escaped) of the first
// header called name in the current frame. name is compared with the
// unescaped header name under the frame's escaping rules. It is valid from
// HeadersEnd until the next frame begins or Feed is called, and the result
// aliases the chunk or the scanner's buffer: copy it to keep it.
//
// Raw values are what a proxy needs for heart-beat, content-length,
// receipt and version headers, which never contain escapes; use
// AppendHeader for the unescaped value.
func (s *Scanner) Header(name string) ([]byte, bool) {
	return lookupHeader(s.head, name, s.escVersion())
}

// AppendHeader appends the unescaped value of the first header called name
// to dst. It fails with ErrSyntax on an escape sequence the version does
// not define.
func (s *Scanner) AppendHeader(dst []byte, name string) ([]byte, bool, error) {
	v, ok := s.Header(name)
	if !ok {
		return dst, false, nil
	}
	dst, err := Unescape(dst, v, s.escVersion())
	return dst, true, err
}

// Headers iterates over the header lines of the current frame in wire
// order, yielding raw (escaped) names and values; empty outside the window
// in which Header is valid. Lines keep duplicates.
func (s *Scanner) Headers() iter.Seq2[[]byte, []byte] {
	head := s.head
	return func(yield func(name, value []byte) bool) {
		off := afterLine(head, 0)
		for {
			name, value, next, ok := nextHeader(head, off)
			if !ok || !yield(name, value) {
				return
			}
			off = next
		}
	}
}

// escVersion is the version whose escaping rules apply to the current
// frame's headers, with V10 standing for "no escaping".
func (s *Scanner) escVersion() Version {
	if !s.cmd.escapes() {
		return V10
	}
	return s.version
}
