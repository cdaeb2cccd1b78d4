package inspect

import "bytes"

// afterLine returns the offset just past the LF of the line starting at
// off, or len(b) if there is none.
func afterLine(b []byte, off int) int {
	if off >= len(b) {
		return len(b)
	}
	i := bytes.IndexByte(b[off:], '\n')
	if i < 0 {
		return len(b)
	}
	return off + i + 1
}

// nextHeader splits the header line starting at head[off:]. ok is false at
// the blank line that ends the section or at the end of head. A line
// without a colon (only possible in frames the scanner has not validated)
// yields the whole line as the name.
func nextHeader(head []byte, off int) (name, value []byte, next int, ok bool) {
	if off >= len(head) {
		return nil, nil, len(head), false
	}
	rest := head[off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return nil, nil, len(head), false
	}
	line := rest[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) == 0 {
		return nil, nil, off, false
	}
	next = off + i + 1
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		return line[:c], line[c+1:], next, true
	}
	return line, nil, next, true
}

// lookupHeader finds the first header called name in a header section that
// starts with the command line. v is the escaping version (V10: none).
func lookupHeader(head []byte, name string, v Version) ([]byte, bool) {
	off := afterLine(head, 0)
	for {
		n, val, next, ok := nextHeader(head, off)
		if !ok {
			return nil, false
		}
		if nameMatches(n, name, v) {
			return val, true
		}
		off = next
	}
}

// nameMatches compares a raw header name with an unescaped one without
// building the unescaped form.
func nameMatches(raw []byte, name string, v Version) bool {
	if v == V10 || bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' {
			i++
			if i == len(raw) {
				return false
			}
			var ok bool
			if c, ok = unescapeByte(raw[i], v); !ok {
				return false
			}
		}
		if j >= len(name) || name[j] != c {
			return false
		}
		j++
	}
	return j == len(name)
}

// unescapeByte decodes the character after a backslash. 1.1 has no \r;
// VersionUnknown is treated like 1.2 because it is the superset.
func unescapeByte(c byte, v Version) (byte, bool) {
	switch c {
	case 'n':
		return '\n', true
	case 'c':
		return ':', true
	case '\\':
		return '\\', true
	case 'r':
		return '\r', v != V11
	}
	return 0, false
}

// Unescape appends raw, a header name or value as on the wire, to dst with
// the escape sequences of version v decoded: \r \n \c \\ in 1.2 (and for
// VersionUnknown), \n \c \\ in 1.1, none in 1.0. An undefined sequence
// (such as \t, or \r in 1.1) or a trailing backslash fails with ErrSyntax,
// which the specification makes a fatal protocol error. Remember that
// CONNECT, STOMP and CONNECTED headers are never escaped: pass V10 for them.
// On error dst is returned with its original length.
func Unescape(dst, raw []byte, v Version) ([]byte, error) {
	if v == V10 {
		return append(dst, raw...), nil
	}
	n0 := len(dst)
	for {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...), nil
		}
		dst = append(dst, raw[:i]...)
		if i+1 == len(raw) {
			return dst[:n0], syntaxError("header ends with a lone backslash")
		}
		c, ok := unescapeByte(raw[i+1], v)
		if !ok {
			return dst[:n0], syntaxError("undefined escape sequence in header")
		}
		dst = append(dst, c)
		raw = raw[i+2:]
	}
}

// AppendEscaped appends value escaped for a header of version v (not for
// CONNECT, STOMP or CONNECTED, which are never escaped). Characters the
// version cannot express and that would break the frame (LF and CR in 1.0,
// CR in 1.1) are replaced by a space; NUL, which would end the frame for
// many parsers, is replaced too.
func AppendEscaped(dst []byte, value string, v Version) []byte {
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == 0:
			dst = append(dst, ' ')
		case v == V10 && (c == '\n' || c == '\r'):
			dst = append(dst, ' ')
		case v == V10:
			dst = append(dst, c)
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == ':':
			dst = append(dst, '\\', 'c')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r' && v == V11:
			dst = append(dst, ' ')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
