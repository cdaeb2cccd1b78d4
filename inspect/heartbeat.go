package inspect

import (
	"strconv"
	"time"
)

// HeartBeat is the value of a heart-beat header, from the point of view of
// the frame's sender: in CONNECT it is <cx,cy>, in CONNECTED <sx,sy>.
// Zero means "cannot" / "does not want". The zero value equals an absent
// header ("0,0").
type HeartBeat struct {
	// Send is the smallest interval at which the sender can send
	// heart-beats (cx or sx).
	Send time.Duration
	// Receive is the interval at which the sender would like to receive
	// heart-beats (cy or sy).
	Receive time.Duration
}

// maxHeartBeatMillis keeps a parsed value representable as a Duration.
const maxHeartBeatMillis = int64(1<<63-1) / int64(time.Millisecond)

var errHeartBeat = &Error{Kind: ErrSyntax, Msg: "invalid heart-beat header"}

// ParseHeartBeat parses a heart-beat header value: two non-negative
// integers of milliseconds separated by a comma. It tolerates spaces and
// tabs around each number ("10000, 10000"), which some hand-written
// clients send and which Spring (Long.parseLong) and RabbitMQ
// (binary_to_integer) reject; the proxy normalizes with AppendHeartBeat
// before forwarding. Signs, empty
// numbers, other separators and values beyond the range of time.Duration
// fail with ErrSyntax.
func ParseHeartBeat(v []byte) (HeartBeat, error) {
	comma := -1
	for i, c := range v {
		if c == ',' {
			comma = i
			break
		}
	}
	if comma < 0 {
		return HeartBeat{}, errHeartBeat
	}
	x, ok1 := parseMillis(v[:comma])
	y, ok2 := parseMillis(v[comma+1:])
	if !ok1 || !ok2 {
		return HeartBeat{}, errHeartBeat
	}
	return HeartBeat{Send: time.Duration(x) * time.Millisecond, Receive: time.Duration(y) * time.Millisecond}, nil
}

func parseMillis(b []byte) (int64, bool) {
	b = trimBlank(b)
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > maxHeartBeatMillis {
			return 0, false
		}
	}
	return n, true
}

// HeartBeatHeader interprets the first heart-beat header of a frame as
// returned by Scanner.Header or HeaderValue: an absent header is "0,0"
// (no heart-beats either way), as the specification requires.
func HeartBeatHeader(v []byte, present bool) (HeartBeat, error) {
	if !present {
		return HeartBeat{}, nil
	}
	return ParseHeartBeat(v)
}

// AppendHeartBeat appends the canonical header value "x,y" (digits only,
// milliseconds) that every broker parses. Durations are rounded up to whole
// milliseconds so that a positive duration never turns into 0 ("off");
// negative ones count as 0.
func AppendHeartBeat(dst []byte, hb HeartBeat) []byte {
	dst = strconv.AppendInt(dst, ceilMillis(hb.Send), 10)
	dst = append(dst, ',')
	return strconv.AppendInt(dst, ceilMillis(hb.Receive), 10)
}

// FormatHeartBeat returns the canonical header value "x,y".
func FormatHeartBeat(hb HeartBeat) string {
	var b [48]byte
	return string(AppendHeartBeat(b[:0], hb))
}

// String returns the canonical header value.
func (hb HeartBeat) String() string { return FormatHeartBeat(hb) }

func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	// Not (d+ms-1)/ms: that overflows near the top of the Duration range.
	q := d / time.Millisecond
	if d%time.Millisecond != 0 {
		q++
	}
	return int64(q)
}

// Negotiate computes the heart-beat periods a CONNECT's heart-beat
// (client, <cx,cy>) and the answering CONNECTED's (server, <sx,sy>) agree
// on, following STOMP 1.1/1.2 "Heart-beating": client to server is
// max(cx,sy) unless cx or sy is 0, server to client is max(sx,cy) unless sx
// or cy is 0. A zero result means no heart-beats in that direction.
func Negotiate(client, server HeartBeat) (clientToServer, serverToClient time.Duration) {
	if client.Send > 0 && server.Receive > 0 {
		clientToServer = max(client.Send, server.Receive)
	}
	if server.Send > 0 && client.Receive > 0 {
		serverToClient = max(server.Send, client.Receive)
	}
	return clientToServer, serverToClient
}
