package inspect

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// genOpts shapes generated streams.
type genOpts struct {
	// plain restricts the stream to what every parser reads the same way:
	// ASCII, no CR except in EOLs, no colon in names (stomp.js cross-check).
	plain bool
}

var genCommands = []string{
	"CONNECT", "STOMP", "CONNECTED", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
	"BEGIN", "COMMIT", "ABORT", "DISCONNECT", "MESSAGE", "RECEIPT", "ERROR",
	"FOO", "send", "SEND ", "X",
}

var genNames = []string{"destination", "id", "receipt", "content-type", "heart-beat", "x", "a\\cb", "message-id", "ack"}

func genEOL(crlf bool) string {
	if crlf {
		return "\r\n"
	}
	return "\n"
}

func genText(r *rand.Rand, n int, alphabet string) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

const (
	nameAlphabet  = "abcdefghijklmnopqrstuvwxyz-_.0123456789ABCXYZ\\ "
	valueAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789/:.,;=\\ -_ABCXYZ"
)

// genFrame returns one frame followed by its optional EOLs.
func genFrame(r *rand.Rand, o genOpts) string {
	var b strings.Builder
	crlf := r.IntN(3) == 0
	b.WriteString(genCommands[r.IntN(len(genCommands))])
	b.WriteString(genEOL(crlf))

	var body string
	bodyLen := 0
	switch r.IntN(4) {
	case 0:
	case 1, 2:
		bodyLen = r.IntN(40)
	default:
		bodyLen = r.IntN(3000)
	}
	useCL := r.IntN(2) == 0
	body = genBody(r, bodyLen, useCL, o)

	nh := r.IntN(7)
	clAt := -1
	if useCL {
		clAt = r.IntN(nh + 1)
	}
	for i := 0; i <= nh; i++ {
		if i == clAt {
			b.WriteString("content-length:" + strconv.Itoa(len(body)) + genEOL(crlf && r.IntN(8) != 0))
			if r.IntN(5) == 0 { // a later duplicate never counts
				b.WriteString("content-length:" + strconv.Itoa(r.IntN(99)) + genEOL(crlf))
			}
		}
		if i == nh {
			break
		}
		name := genNames[r.IntN(len(genNames))]
		if r.IntN(4) == 0 {
			name = genText(r, 1+r.IntN(12), nameAlphabet)
		}
		if o.plain {
			name = strings.ReplaceAll(name, "\\c", "_")
		}
		value := genText(r, r.IntN(30), valueAlphabet)
		if !o.plain && r.IntN(20) == 0 {
			value += "\rz" // a CR that is not part of an EOL stays in the value
		}
		b.WriteString(name + ":" + value + genEOL(crlf && r.IntN(8) != 0))
	}
	b.WriteString(genEOL(crlf))
	b.WriteString(body)
	b.WriteByte(0)
	for range r.IntN(3) {
		b.WriteString(genEOL(r.IntN(2) == 0))
	}
	return b.String()
}

func genBody(r *rand.Rand, n int, nulOK bool, o genOpts) string {
	buf := make([]byte, n)
	for i := range buf {
		c := byte(r.IntN(256))
		if o.plain {
			c = byte(' ' + r.IntN(95))
		}
		if c == 0 && !nulOK {
			c = 'n'
		}
		if nulOK && r.IntN(50) == 0 {
			c = 0
		}
		buf[i] = c
	}
	return string(buf)
}

// genStream returns a stream of frames and heart-beat EOLs.
func genStream(r *rand.Rand, o genOpts) []byte {
	var b strings.Builder
	for range 1 + r.IntN(6) {
		for range r.IntN(3) {
			b.WriteString(genEOL(r.IntN(2) == 0))
		}
		b.WriteString(genFrame(r, o))
	}
	return []byte(b.String())
}

// randomChunks cuts in at random places, mixing tiny and large pieces.
func randomChunks(r *rand.Rand, in []byte) [][]byte {
	var out [][]byte
	for len(in) > 0 {
		var n int
		switch r.IntN(4) {
		case 0:
			n = 1 + r.IntN(3)
		case 1:
			n = 1 + r.IntN(20)
		case 2:
			n = 1 + r.IntN(500)
		default:
			n = len(in)
		}
		n = min(n, len(in))
		if r.IntN(10) == 0 {
			out = append(out, in[:0]) // empty WebSocket messages exist too
		}
		out = append(out, in[:n])
		in = in[n:]
	}
	return out
}
