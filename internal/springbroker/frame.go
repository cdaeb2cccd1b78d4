package springbroker

import (
	"bytes"
	"strconv"
	"strings"
)

// Header is one STOMP header line, after unescaping where Spring unescapes.
type Header struct {
	Name  string
	Value string
}

// Frame is a STOMP frame as the broker received or sent it.
type Frame struct {
	Command string
	// Headers in wire order. Received frames keep repeated headers; Spring
	// uses only the first one (StompHeaderAccessor.getFirstNativeHeader).
	Headers []Header
	Body    []byte
}

// Header returns the first value of the named header, as Spring's
// NativeMessageHeaderAccessor.getFirstNativeHeader does.
func (f *Frame) Header(name string) (string, bool) {
	if f == nil {
		return "", false
	}
	for _, h := range f.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// clone returns a deep copy, so an event consumer can keep it.
func (f *Frame) clone() *Frame {
	if f == nil {
		return nil
	}
	c := &Frame{Command: f.Command}
	c.Headers = append([]Header(nil), f.Headers...)
	if f.Body != nil {
		c.Body = append([]byte{}, f.Body...)
	}
	return c
}

// Commands known to Spring (StompCommand.java:28-47). StompDecoder calls
// StompCommand.valueOf on the command line, so anything else is an error.
var knownCommands = map[string]bool{
	"STOMP": true, "CONNECT": true, "DISCONNECT": true, "SUBSCRIBE": true,
	"UNSUBSCRIBE": true, "SEND": true, "ACK": true, "NACK": true, "BEGIN": true,
	"COMMIT": true, "ABORT": true, "CONNECTED": true, "RECEIPT": true,
	"MESSAGE": true, "ERROR": true,
}

// bodyAllowed mirrors StompCommand.isBodyAllowed()/requiresContentLength()
// (StompCommand.java:34-47, 83-89): only SEND, MESSAGE and ERROR.
func bodyAllowed(command string) bool {
	return command == "SEND" || command == "MESSAGE" || command == "ERROR"
}

// headerEscaping reports whether header names and values of this command are
// escaped/unescaped. StompDecoder.readHeaders (StompDecoder.java:216-220) and
// StompEncoder.writeHeaders (StompEncoder.java:129-130) both skip CONNECT,
// STOMP and CONNECTED; all other commands use the STOMP 1.2 escapes, whatever
// version was negotiated.
func headerEscaping(command string) bool {
	return command != "CONNECT" && command != "STOMP" && command != "CONNECTED"
}

// nativeHeaders is an ordered multi-map, like the LinkedMultiValueMap Spring
// keeps as "nativeHeaders": a name's values stay together at the position of
// the name's first occurrence, and set replaces in place.
type nativeHeaders struct {
	names  []string
	values map[string][]string
}

func newNativeHeaders(hs []Header) *nativeHeaders {
	n := &nativeHeaders{values: map[string][]string{}}
	for _, h := range hs {
		n.add(h.Name, h.Value)
	}
	return n
}

func (n *nativeHeaders) add(name, value string) {
	if _, ok := n.values[name]; !ok {
		n.names = append(n.names, name)
	}
	n.values[name] = append(n.values[name], value)
}

// set is NativeMessageHeaderAccessor.setNativeHeader: replace all values.
func (n *nativeHeaders) set(name, value string) {
	if _, ok := n.values[name]; !ok {
		n.names = append(n.names, name)
	}
	n.values[name] = []string{value}
}

func (n *nativeHeaders) has(name string) bool {
	_, ok := n.values[name]
	return ok
}

// encodeFrame is StompEncoder.encode (StompEncoder.java:90-158): command, the
// native headers in map order (escaped unless CONNECT/STOMP/CONNECTED), and for
// SEND/MESSAGE/ERROR a computed content-length last, replacing any
// content-length native header. It returns the bytes and the frame as sent.
func encodeFrame(command string, hs *nativeHeaders, body []byte) ([]byte, *Frame) {
	var buf bytes.Buffer
	sent := &Frame{Command: command, Body: body}
	escape := headerEscaping(command)
	withLength := bodyAllowed(command)
	buf.WriteString(command)
	buf.WriteByte('\n')
	if hs != nil {
		for _, name := range hs.names {
			if withLength && name == "content-length" {
				continue
			}
			for _, v := range hs.values[name] {
				sent.Headers = append(sent.Headers, Header{name, v})
				if escape {
					buf.WriteString(escapeHeader(name))
					buf.WriteByte(':')
					buf.WriteString(escapeHeader(v))
				} else {
					buf.WriteString(name)
					buf.WriteByte(':')
					buf.WriteString(v)
				}
				buf.WriteByte('\n')
			}
		}
	}
	if withLength {
		cl := strconv.Itoa(len(body))
		sent.Headers = append(sent.Headers, Header{"content-length", cl})
		buf.WriteString("content-length:")
		buf.WriteString(cl)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	buf.Write(body)
	buf.WriteByte(0)
	return buf.Bytes(), sent
}

// heartbeatPayload is StompDecoder.HEARTBEAT_PAYLOAD (StompDecoder.java:52),
// which StompEncoder returns for a HEARTBEAT message (StompEncoder.java:94-97).
var heartbeatPayload = []byte{'\n'}

// escapeHeader is StompEncoder.escape (StompEncoder.java:185-210).
func escapeHeader(s string) string {
	if !strings.ContainsAny(s, "\\:\n\r") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case ':':
			b.WriteString(`\c`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
