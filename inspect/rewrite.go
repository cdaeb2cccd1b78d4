package inspect

// frameHead locates the parts of a complete frame's header section.
type frameHead struct {
	cmdEnd  int // just past the command line's LF
	headEnd int // just past the blank line's LF
	crlf    bool
	cmd     Command
}

// parseHead validates the header section of frame the way the scanner does
// (leading EOLs are skipped and kept). The body is not examined: the
// functions below copy it unchanged, so content-length stays right.
func parseHead(frame []byte) (frameHead, error) {
	var h frameHead
	start := commandStart(frame)
	off := start
	for {
		end := afterLine(frame, off)
		if end == off || frame[end-1] != '\n' {
			return h, syntaxError("incomplete frame header")
		}
		line := frame[off : end-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		for _, c := range line {
			if c == 0 {
				return h, syntaxError("NUL octet in frame header")
			}
		}
		switch {
		case off == start:
			h.cmd = ParseCommand(line)
			h.cmdEnd = end
			h.crlf = end-2 >= start && frame[end-2] == '\r'
		case len(line) == 0:
			h.headEnd = end
			return h, nil
		default:
			c := -1
			for i, b := range line {
				if b == ':' {
					c = i
					break
				}
			}
			if c < 0 {
				return h, syntaxError("header line without colon")
			}
			if c == 0 {
				return h, syntaxError("header line with empty name")
			}
		}
		off = end
	}
}

func (h frameHead) eol() string {
	if h.crlf {
		return "\r\n"
	}
	return "\n"
}

// RewriteHeartBeat appends frame to dst with its heart-beat header set to
// the canonical form of hb: the first heart-beat line gets the new value
// (keeping its position and its own EOL) and any further heart-beat lines
// are removed, because brokers disagree on which duplicate wins; if there is
// none, one is inserted right after the command line using the command
// line's EOL. Every other byte is copied unchanged.
//
// frame is one complete frame, command through NUL, optionally with
// trailing EOLs; it is meant for CONNECT, STOMP and CONNECTED, whose headers
// are never escaped. dst must not overlap frame. On error dst is returned
// unchanged.
func RewriteHeartBeat(dst, frame []byte, hb HeartBeat) ([]byte, error) {
	h, err := parseHead(frame)
	if err != nil {
		return dst, err
	}
	head := frame[:h.headEnd]
	first := true
	copied := 0
	off := h.cmdEnd
	for {
		name, _, next, ok := nextHeader(head, off)
		if !ok {
			break
		}
		if string(name) == "heart-beat" {
			dst = append(dst, frame[copied:off]...)
			if first {
				dst = append(dst, "heart-beat:"...)
				dst = AppendHeartBeat(dst, hb)
				if frame[next-2] == '\r' {
					dst = append(dst, '\r', '\n')
				} else {
					dst = append(dst, '\n')
				}
				first = false
			}
			copied = next
		}
		off = next
	}
	if first {
		dst = append(dst, frame[:h.cmdEnd]...)
		dst = append(dst, "heart-beat:"...)
		dst = AppendHeartBeat(dst, hb)
		dst = append(dst, h.eol()...)
		copied = h.cmdEnd
	}
	return append(dst, frame[copied:]...), nil
}

// AddHeader appends frame to dst with the header name:value inserted right
// after the command line (using the command line's EOL). Since the first
// occurrence of a header wins, this also overrides an existing header of
// that name. name and value are written verbatim: escape them with
// AppendEscaped first if the frame's command and version call for it. A
// name that is empty or contains ':', and a name or value containing CR,
// LF or NUL, fail with ErrInvalidHeader. dst must not overlap frame.
//
// The proxy uses it to add a receipt to a client's DISCONNECT.
func AddHeader(dst, frame []byte, name, value string) ([]byte, error) {
	if name == "" || !safeHeaderText(name, true) || !safeHeaderText(value, false) {
		return dst, &Error{Kind: ErrInvalidHeader, Msg: "invalid header " + name}
	}
	h, err := parseHead(frame)
	if err != nil {
		return dst, err
	}
	dst = append(dst, frame[:h.cmdEnd]...)
	dst = append(dst, name...)
	dst = append(dst, ':')
	dst = append(dst, value...)
	dst = append(dst, h.eol()...)
	return append(dst, frame[h.cmdEnd:]...), nil
}

func safeHeaderText(s string, isName bool) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r', '\n', 0:
			return false
		case ':':
			if isName {
				return false
			}
		}
	}
	return true
}

// HeaderValue returns the raw value of the first header called name in a
// complete (or at least header-complete) frame, for the small frames the
// proxy holds whole. Names are matched after unescaping, except in CONNECT,
// STOMP and CONNECTED; since the version is not known here, the 1.2 escape
// set is used. A malformed header section yields false.
func HeaderValue(frame []byte, name string) ([]byte, bool) {
	h, err := parseHead(frame)
	if err != nil {
		return nil, false
	}
	v := VersionUnknown
	if !h.cmd.escapes() {
		v = V10
	}
	// lookupHeader skips the first line it is given, which must therefore
	// be the command line, not a leading EOL.
	return lookupHeader(frame[commandStart(frame):h.headEnd], name, v)
}

// commandStart skips the EOLs that may precede a frame.
func commandStart(frame []byte) int {
	i := 0
	for i < len(frame) && (frame[i] == '\n' || frame[i] == '\r') {
		i++
	}
	return i
}
