package springbroker

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"
)

// decodeError is a StompConversionException (or another exception thrown
// while decoding); its message becomes the ERROR frame's message header
// (StompSubProtocolHandler.handleMessageFromClient catch block, :283-290, and
// sendErrorMessage, :404-425).
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return e.msg }

func errorf(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...)}
}

// inbound is one message produced by the decoder: a STOMP frame, or a
// heart-beat (StompDecoder.java:175-183 creates a HEARTBEAT message when the
// command line is empty).
type inbound struct {
	heartbeat bool
	frame     *Frame
	// contentType is the content-type header normalised like Spring's
	// MimeType.toString(), "" when absent.
	contentType string
}

// stompReader is a cursor over one buffer, standing in for the ByteBuffer that
// StompDecoder works on.
type stompReader struct {
	b   []byte
	pos int
}

func (r *stompReader) remaining() int { return len(r.b) - r.pos }

// tryConsumeEOL is StompDecoder.tryConsumeEndOfLine (StompDecoder.java:346-363):
// "\n" or "\r\n" is an EOL; a '\r' not followed by '\n' — including a '\r' that
// is the last byte of the buffer — throws "'\r' must be followed by '\n'".
func (r *stompReader) tryConsumeEOL() (bool, error) {
	if r.remaining() == 0 {
		return false, nil
	}
	switch r.b[r.pos] {
	case '\n':
		r.pos++
		return true, nil
	case '\r':
		if r.remaining() >= 2 && r.b[r.pos+1] == '\n' {
			r.pos += 2
			return true, nil
		}
		return false, errorf(`'\r' must be followed by '\n'`)
	}
	return false, nil
}

// skipEOL is StompDecoder.skipEol (StompDecoder.java:200-206).
func (r *stompReader) skipEOL() error {
	for {
		ok, err := r.tryConsumeEOL()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
	}
}

// decodeFrames is StompDecoder.decode(ByteBuffer, partialMessageHeaders)
// (StompDecoder.java:107-125). It returns the complete messages, the unused
// tail of buf (a partial frame, starting after any leading EOLs) and, when the
// partial frame's headers could be read, those headers.
//
// EOLs after a frame are swallowed by skipEol and produce nothing; a buffer
// made only of EOLs produces exactly one heart-beat.
func decodeFrames(buf []byte) (msgs []inbound, rest []byte, partial []Header, err error) {
	r := &stompReader{b: buf}
	for r.remaining() > 0 {
		m, complete, part, err := decodeMessage(r)
		if err != nil {
			return nil, nil, nil, err
		}
		if !complete {
			return msgs, buf[r.pos:], part, nil
		}
		msgs = append(msgs, m)
		if err := r.skipEOL(); err != nil {
			return nil, nil, nil, err
		}
	}
	return msgs, nil, nil, nil
}

// decodeMessage is StompDecoder.decodeMessage (StompDecoder.java:131-186). On
// an incomplete frame the cursor is reset to the mark taken after the leading
// EOLs, like byteBuffer.reset().
func decodeMessage(r *stompReader) (inbound, bool, []Header, error) {
	if err := r.skipEOL(); err != nil {
		return inbound{}, false, nil, err
	}
	mark := r.pos
	command, err := r.readCommand()
	if err != nil {
		return inbound{}, false, nil, err
	}
	if command == "" {
		// :175-183 — nothing but EOLs: a heart-beat.
		return inbound{heartbeat: true}, true, nil, nil
	}
	if r.remaining() == 0 {
		// :140 — no header section yet: incomplete, and no partial headers.
		r.pos = mark
		return inbound{}, false, nil, nil
	}
	if !knownCommands[command] {
		// :141 StompCommand.valueOf -> IllegalArgumentException.
		return inbound{}, false, nil, errorf("No enum constant org.springframework.messaging.simp.stomp.StompCommand.%s", command)
	}
	headers, err := r.readHeaders(command)
	if err != nil {
		return inbound{}, false, nil, err
	}
	body, complete, err := r.readPayload(headers)
	if err != nil {
		return inbound{}, false, nil, err
	}
	if !complete {
		// :162-173 — keep the parsed headers so BufferingStompDecoder can
		// look at content-length.
		r.pos = mark
		return inbound{}, false, headers, nil
	}
	f := &Frame{Command: command, Headers: headers, Body: body}
	if len(body) > 0 && !bodyAllowed(command) {
		// :147-154. BufferingStompDecoder passes an empty
		// LinkedMultiValueMap as "headers", hence "headers={}".
		return inbound{}, false, nil, errorf("%s shouldn't have a payload: length=%d, headers={}", command, len(body))
	}
	// :155 updateSimpMessageHeadersFromStompHeaders parses content-type with
	// MimeTypeUtils.parseMimeType (StompHeaderAccessor.java:146-149); an
	// InvalidMimeTypeException escapes the decoder.
	ct := ""
	if v, ok := f.Header("content-type"); ok {
		ct, err = parseMimeType(v)
		if err != nil {
			return inbound{}, false, nil, err
		}
	}
	return inbound{frame: f, contentType: ct}, true, nil, nil
}

// readCommand is StompDecoder.readCommand (StompDecoder.java:208-214).
func (r *stompReader) readCommand() (string, error) {
	start := r.pos
	for r.remaining() > 0 {
		end := r.pos
		ok, err := r.tryConsumeEOL()
		if err != nil {
			return "", err
		}
		if ok {
			return string(r.b[start:end]), nil
		}
		r.pos++
	}
	return string(r.b[start:r.pos]), nil
}

// readHeaders is StompDecoder.readHeaders (StompDecoder.java:216-258).
func (r *stompReader) readHeaders(command string) ([]Header, error) {
	unescape := headerEscaping(command)
	var headers []Header
	for {
		start, end := r.pos, -1
		for r.remaining() > 0 {
			p := r.pos
			ok, err := r.tryConsumeEOL()
			if err != nil {
				return nil, err
			}
			if ok {
				end = p
				break
			}
			r.pos++
		}
		if end <= start {
			// Blank line (end of headers) or a header line cut off by the
			// end of the buffer.
			return headers, nil
		}
		line := string(r.b[start:end])
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			if r.remaining() > 0 {
				return nil, errorf("Illegal header: '%s'. A header must be of the form <name>:[<value>].", line)
			}
			continue
		}
		name, value := line[:colon], line[colon+1:]
		if unescape {
			var err error
			if name, err = unescapeHeader(name); err != nil {
				return nil, err
			}
			if value, err = unescapeHeader(value); err != nil {
				return nil, err
			}
		}
		headers = append(headers, Header{Name: name, Value: value})
	}
}

// unescapeHeader is StompDecoder.unescape (StompDecoder.java:264-300): \r \n
// \c \\ are decoded, any other escape (or a trailing backslash) is an error.
// The index in the message counts UTF-16 chars, as in Java.
func unescapeHeader(s string) (string, error) {
	idx := strings.IndexByte(s, '\\')
	if idx < 0 {
		return s, nil
	}
	var b strings.Builder
	pos := 0
	for idx >= 0 {
		b.WriteString(s[pos:idx])
		if idx+1 >= len(s) {
			return "", errorf("Illegal escape sequence at index %d: %s", utf16Len(s[:idx]), s)
		}
		switch s[idx+1] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 'c':
			b.WriteByte(':')
		case '\\':
			b.WriteByte('\\')
		default:
			return "", errorf("Illegal escape sequence at index %d: %s", utf16Len(s[:idx]), s)
		}
		pos = idx + 2
		next := strings.IndexByte(s[pos:], '\\')
		if next < 0 {
			idx = -1
		} else {
			idx = pos + next
		}
	}
	b.WriteString(s[pos:])
	return b.String(), nil
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

// readPayload is StompDecoder.readPayload (StompDecoder.java:302-340). An
// unparsable content-length is ignored (:304-312); a usable one (>= 0) means
// exactly that many bytes followed by a NUL, else "Frame must be terminated
// with a null octet"; without one the body runs to the first NUL.
func (r *stompReader) readPayload(headers []Header) ([]byte, bool, error) {
	cl, hasCL := firstHeader(headers, "content-length")
	if hasCL {
		if n, ok := javaParseInt(cl); ok && n >= 0 {
			if int64(r.remaining()) > n {
				body := append([]byte{}, r.b[r.pos:r.pos+int(n)]...)
				r.pos += int(n)
				b := r.b[r.pos]
				r.pos++
				if b != 0 {
					return nil, false, errorf("Frame must be terminated with a null octet")
				}
				return body, true, nil
			}
			return nil, false, nil
		}
	}
	i := bytes.IndexByte(r.b[r.pos:], 0)
	if i < 0 {
		r.pos = len(r.b)
		return nil, false, nil
	}
	body := append([]byte{}, r.b[r.pos:r.pos+i]...)
	r.pos += i + 1
	return body, true, nil
}

func firstHeader(hs []Header, name string) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// bufferingDecoder is BufferingStompDecoder (BufferingStompDecoder.java:48-169):
// one per WebSocket session, it keeps the tail of an incomplete frame and
// prepends it to the next WebSocket message.
type bufferingDecoder struct {
	limit       int
	buf         []byte
	expectedLen *int64 // expectedContentLength
}

func newBufferingDecoder(limit int) *bufferingDecoder {
	return &bufferingDecoder{limit: limit}
}

// decode is BufferingStompDecoder.decode (:101-120). Any error means the
// session must be ended; messages decoded earlier from the same buffer are
// lost, as the exception propagates past them in Spring.
func (d *bufferingDecoder) decode(chunk []byte) ([]inbound, error) {
	d.buf = append(d.buf, chunk...)
	if err := d.checkBufferLimits(); err != nil {
		return nil, err
	}
	if d.expectedLen != nil && int64(len(d.buf)) < *d.expectedLen {
		return nil, nil
	}
	toDecode := d.buf
	d.buf, d.expectedLen = nil, nil
	msgs, rest, partial, err := decodeFrames(toDecode)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		d.buf = append([]byte(nil), rest...)
		// :116 StompHeaderAccessor.getContentLength(Map) uses
		// Integer.valueOf without a catch: a bad value throws here.
		if v, ok := firstHeader(partial, "content-length"); ok {
			n, ok := javaParseInt(v)
			if !ok {
				return nil, errorf("For input string: \"%s\"", v)
			}
			d.expectedLen = &n
		}
	}
	return msgs, nil
}

// checkBufferLimits is BufferingStompDecoder.checkBufferLimits (:139-150),
// messages included (the double space is Spring's).
func (d *bufferingDecoder) checkBufferLimits() error {
	if d.expectedLen != nil && *d.expectedLen > int64(d.limit) {
		return errorf("STOMP 'content-length' header value %d  exceeds configured buffer size limit %d", *d.expectedLen, d.limit)
	}
	if len(d.buf) > d.limit {
		return errorf("The configured STOMP buffer size limit of %d bytes has been exceeded", d.limit)
	}
	return nil
}

// javaParseInt is Integer.valueOf(String)/parseInt(s, 10): optional sign,
// ASCII digits, int32 range. (Java also accepts non-ASCII Unicode digits; this
// double does not.)
func javaParseInt(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	i, neg := 0, false
	if s[0] == '+' || s[0] == '-' {
		neg = s[0] == '-'
		i++
		if len(s) == 1 {
			return 0, false
		}
	}
	var n int64
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > 1<<31 {
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	if n > 1<<31-1 || n < -(1<<31) {
		return 0, false
	}
	return n, true
}

// parseHeartbeat is StompHeaderAccessor.getHeartbeat (StompHeaderAccessor.java
// :238-247), which StompSubProtocolHandler calls on every inbound message
// (:319): no header or no comma gives {0,0}; otherwise both sides of the first
// comma go through Long.parseLong, untrimmed, so "10000, 10000" throws.
//
// Spring >= 6.1 (commit 01e90bbd0e7) uses Long.parseLong(CharSequence, begin,
// end, 10), whose NumberFormatException message is `Error at index N in:
// "<part>"` (JDK 11-21 NumberFormatException.forCharSequence), or "" for an
// empty part. Spring 4.3-6.0 split with StringUtils.split and used
// Long.parseLong(String): `For input string: "<part>"`. This double uses the
// >= 6.1 text.
func parseHeartbeat(raw string, present bool) ([2]int64, error) {
	if !present {
		return [2]int64{}, nil
	}
	u := utf16.Encode([]rune(raw))
	pos := -1
	for i, c := range u {
		if c == ',' {
			pos = i
			break
		}
	}
	if pos < 0 {
		return [2]int64{}, nil
	}
	a, err := javaParseLongRange(u, 0, pos)
	if err != nil {
		return [2]int64{}, err
	}
	b, err := javaParseLongRange(u, pos+1, len(u))
	if err != nil {
		return [2]int64{}, err
	}
	return [2]int64{a, b}, nil
}

// javaParseLongRange follows the semantics of JDK 11-21
// Long.parseLong(CharSequence, int, int, int) with radix 10 (ASCII digits only).
func javaParseLongRange(u []uint16, begin, end int) (int64, error) {
	fail := func(at int) error {
		return errorf("Error at index %d in: \"%s\"", at-begin, string(utf16.Decode(u[begin:end])))
	}
	if begin >= end {
		return 0, errorf("")
	}
	i, neg := begin, false
	if c := u[i]; c < '0' {
		switch c {
		case '-':
			neg = true
		case '+':
		default:
			return 0, fail(i)
		}
		i++
	}
	if i >= end {
		return 0, fail(i)
	}
	const maxU = uint64(1<<63 - 1)
	limit := maxU
	if neg {
		limit = maxU + 1
	}
	var n uint64
	for ; i < end; i++ {
		c := u[i]
		if c < '0' || c > '9' {
			return 0, fail(i)
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return 0, fail(i)
		}
		n = n*10 + d
	}
	if neg {
		return int64(-n), nil
	}
	return int64(n), nil
}

// parseMimeType follows Spring 6.2's MimeTypeUtils.parseMimeType /
// parseMimeTypeInternal and the MimeType constructor (token check, lower-case
// type and subtype) and returns MimeType.toString() ("type/subtype;k=v").
// Errors carry InvalidMimeTypeException's text: `Invalid mime type "<v>": <why>`.
// Not reproduced: charset validation (Charset.forName) and the parser rewrite
// of 7.1.
func parseMimeType(v string) (string, error) {
	invalid := func(why string) error {
		return errorf("Invalid mime type \"%s\": %s", v, why)
	}
	if v == "" {
		return "", invalid("'mimeType' must not be empty")
	}
	semi := strings.IndexByte(v, ';')
	full := v
	if semi >= 0 {
		full = v[:semi]
	}
	full = strings.TrimSpace(full)
	if full == "" {
		return "", invalid("'mimeType' must not be empty")
	}
	if full == "*" {
		full = "*/*"
	}
	slash := strings.IndexByte(full, '/')
	if slash < 0 {
		return "", invalid("does not contain '/'")
	}
	if slash == len(full)-1 {
		return "", invalid("does not contain subtype after '/'")
	}
	typ, sub := full[:slash], full[slash+1:]
	if typ == "*" && sub != "*" {
		return "", invalid("wildcard type is legal only in '*/*' (all mime types)")
	}
	if err := checkToken(typ); err != nil {
		return "", invalid(err.Error())
	}
	if err := checkToken(sub); err != nil {
		return "", invalid(err.Error())
	}
	var b strings.Builder
	b.WriteString(strings.ToLower(typ))
	b.WriteByte('/')
	b.WriteString(strings.ToLower(sub))
	if semi >= 0 {
		for _, p := range splitParams(v[semi+1:]) {
			p = strings.TrimSpace(p)
			eq := strings.IndexByte(p, '=')
			if p == "" || eq < 0 {
				continue
			}
			attr, val := strings.TrimSpace(p[:eq]), strings.TrimSpace(p[eq+1:])
			if attr == "" {
				return "", invalid("'parameter' must not be empty")
			}
			if val == "" {
				return "", invalid("'value' must not be empty")
			}
			if err := checkToken(attr); err != nil {
				return "", invalid(err.Error())
			}
			quoted := len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"'
			if strings.ToLower(attr) != "charset" && !quoted {
				if err := checkToken(val); err != nil {
					return "", invalid(err.Error())
				}
			}
			b.WriteByte(';')
			b.WriteString(attr)
			b.WriteByte('=')
			b.WriteString(val)
		}
	}
	return b.String(), nil
}

// splitParams splits on ';' outside double quotes.
func splitParams(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// checkToken is MimeType.checkToken: RFC 2616 token characters only.
func checkToken(tok string) error {
	for _, c := range tok {
		if c > 127 || c < 32 || c == 127 || strings.ContainsRune("()<>@,;:\\\"/[]?={} \t", c) {
			//lint:ignore ST1005 Spring's exact text reaches the client
			return fmt.Errorf("Invalid token character '%c' in token \"%s\"", c, tok)
		}
	}
	return nil
}
