// Package wstest encodes the bits of RFC 6455 that stompgate's tests and
// benchmarks write by hand on raw sockets (peers that must allocate nothing,
// or must send exact bytes): the handshake's accept key and final frames.
// Masked frames use an all-zero key, so the payload goes out as is.
package wstest

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
)

// AcceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key
// (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// AppendHeader appends the header of a final frame of n payload bytes;
// masked adds an all-zero masking key (client frames must be masked).
func AppendHeader(dst []byte, op byte, n int, masked bool) []byte {
	b1 := byte(0)
	if masked {
		b1 = 0x80
	}
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, b1|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b1|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if masked {
		dst = append(dst, 0, 0, 0, 0)
	}
	return dst
}

// Frame encodes one final frame.
func Frame(op byte, payload []byte, masked bool) []byte {
	return append(AppendHeader(nil, op, len(payload), masked), payload...)
}
