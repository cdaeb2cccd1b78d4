// Package stomptest is the STOMP-over-WebSocket client that stompgate's
// tests speak through: proxy tests, end-to-end tests and the test doubles'
// own tests. It is deliberately simple (frames are decoded leniently, one
// map per frame) and says what happened rather than hiding it: heart-beat
// EOLs and pings are counted, a frame that does not decode is handed to the
// test as one, and the end of the connection keeps its close code, reason
// and time. Tests that need the exact bytes on the wire keep raw access
// through Conn and NextMessage.
//
// It also holds LockedBuffer, the goroutine-safe buffer that tests give to
// loggers and child processes.
package stomptest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Frame is a decoded STOMP frame, as the tests see it.
type Frame struct {
	Command string
	Headers map[string]string // first occurrence wins, as the spec says
	Body    []byte
}

func (f Frame) String() string {
	return fmt.Sprintf("%s %v %q", f.Command, f.Headers, f.Body)
}

// Undecodable is the command of the Frame a client hands over for a message
// that does not decode: its message header says why, its body is the
// message.
const Undecodable = "UNDECODABLE"

// Encode builds a frame; headers alternate name, value. A content-length is
// added for bodies, so that NUL octets survive.
func Encode(command string, body []byte, headers ...string) []byte {
	var b bytes.Buffer
	b.WriteString(command + "\n")
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ":" + headers[i+1] + "\n")
	}
	if body != nil {
		b.WriteString("content-length:" + strconv.Itoa(len(body)) + "\n")
	}
	b.WriteString("\n")
	b.Write(body)
	b.WriteByte(0)
	return b.Bytes()
}

// Decode parses one frame from a WebSocket message. Header values are not
// unescaped; the body ends at content-length or at the first NUL.
func Decode(msg []byte) (Frame, error) {
	head, rest, ok := cutHeaders(msg)
	if !ok {
		return Frame{}, errors.New("no blank line in frame")
	}
	lines := strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n")
	f := Frame{Command: lines[0], Headers: map[string]string{}}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		if _, dup := f.Headers[k]; !dup {
			f.Headers[k] = v
		}
	}
	if cl, ok := f.Headers["content-length"]; ok {
		n, _ := strconv.Atoi(cl)
		if n > len(rest) {
			return Frame{}, errors.New("short body")
		}
		f.Body = rest[:n]
	} else if i := bytes.IndexByte(rest, 0); i >= 0 {
		f.Body = rest[:i]
	}
	return f, nil
}

// decodeOrUndecodable never fails: a test waiting for a frame, or for
// silence, must see a message it cannot decode rather than lose it.
func decodeOrUndecodable(msg []byte) Frame {
	f, err := Decode(msg)
	if err != nil {
		return Frame{Command: Undecodable, Headers: map[string]string{"message": err.Error()}, Body: msg}
	}
	return f
}

// cutHeaders splits msg at the blank line that ends its header section,
// LF or CRLF (STOMP 1.2 allows either on every line).
func cutHeaders(msg []byte) (head, rest []byte, ok bool) {
	for i := 0; i < len(msg); i++ {
		if msg[i] != '\n' {
			continue
		}
		head = bytes.TrimSuffix(msg[:i], []byte("\r"))
		switch {
		case i+1 < len(msg) && msg[i+1] == '\n':
			return head, msg[i+2:], true
		case i+2 < len(msg) && msg[i+1] == '\r' && msg[i+2] == '\n':
			return head, msg[i+3:], true
		}
	}
	return nil, nil, false
}
