package inspect

import (
	"errors"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestParseHeartBeat(t *testing.T) {
	good := []struct {
		in   string
		want HeartBeat
	}{
		{"0,0", HeartBeat{}},
		{"10000,10000", HeartBeat{10000 * ms, 10000 * ms}},
		{"10000, 10000", HeartBeat{10000 * ms, 10000 * ms}},
		{" 5000 ,\t0 ", HeartBeat{5000 * ms, 0}},
		{"0,25000", HeartBeat{0, 25000 * ms}},
		{"007,8", HeartBeat{7 * ms, 8 * ms}},
		{"9223372036854,1", HeartBeat{9223372036854 * ms, ms}},
	}
	for _, c := range good {
		got, err := ParseHeartBeat([]byte(c.in))
		if err != nil || got != c.want {
			t.Errorf("ParseHeartBeat(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	bad := []string{"", ",", "1", "1,", ",1", "1,2,3", "-1,0", "+1,0", "1;2", "a,b", "1 0,0", "1.5,0",
		"9223372036855,0", "99999999999999999999999,0", "1,2\n"}
	for _, in := range bad {
		_, err := ParseHeartBeat([]byte(in))
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseHeartBeat(%q) error = %v, want ErrSyntax", in, err)
		}
	}
}

func TestHeartBeatHeader(t *testing.T) {
	if hb, err := HeartBeatHeader(nil, false); err != nil || hb != (HeartBeat{}) {
		t.Fatalf("absent header = %v %v", hb, err)
	}
	if _, err := HeartBeatHeader(nil, true); err == nil {
		t.Fatal("empty present header accepted")
	}
	// Duplicates: the first one wins, as Scanner.Header and HeaderValue
	// return the first.
	frame := []byte("CONNECT\nheart-beat:1000,2000\nheart-beat:0,0\n\n\x00")
	v, ok := HeaderValue(frame, "heart-beat")
	hb, err := HeartBeatHeader(v, ok)
	if err != nil || hb != (HeartBeat{1000 * ms, 2000 * ms}) {
		t.Fatalf("duplicate header = %v %v", hb, err)
	}
	var s Scanner
	s.Feed(frame)
	for {
		ev, _ := s.Next()
		if ev.Kind == HeadersEnd {
			break
		}
	}
	v, ok = s.Header("heart-beat")
	if hb2, _ := HeartBeatHeader(v, ok); hb2 != hb {
		t.Fatalf("scanner sees %v", hb2)
	}
}

func TestFormatHeartBeat(t *testing.T) {
	cases := []struct {
		hb   HeartBeat
		want string
	}{
		{HeartBeat{}, "0,0"},
		{HeartBeat{10 * time.Second, 0}, "10000,0"},
		{HeartBeat{1500 * time.Microsecond, time.Nanosecond}, "2,1"}, // rounded up, never to 0
		{HeartBeat{-time.Second, 3 * ms}, "0,3"},
	}
	for _, c := range cases {
		if got := FormatHeartBeat(c.hb); got != c.want {
			t.Errorf("FormatHeartBeat(%v) = %q, want %q", c.hb, got, c.want)
		}
		if got := c.hb.String(); got != c.want {
			t.Errorf("String = %q", got)
		}
		if got := string(AppendHeartBeat([]byte("x:"), c.hb)); got != "x:"+c.want {
			t.Errorf("AppendHeartBeat = %q", got)
		}
	}
	b := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { AppendHeartBeat(b[:0], HeartBeat{time.Second, time.Second}) }); n != 0 {
		t.Errorf("AppendHeartBeat allocates %v", n)
	}
}

func TestNegotiate(t *testing.T) {
	cases := []struct {
		client, server HeartBeat
		cs, sc         time.Duration
	}{
		{HeartBeat{}, HeartBeat{}, 0, 0},
		{HeartBeat{10000 * ms, 10000 * ms}, HeartBeat{}, 0, 0},
		{HeartBeat{}, HeartBeat{10000 * ms, 10000 * ms}, 0, 0},
		{HeartBeat{10000 * ms, 10000 * ms}, HeartBeat{5000 * ms, 20000 * ms}, 20000 * ms, 10000 * ms},
		{HeartBeat{4000 * ms, 0}, HeartBeat{0, 1000 * ms}, 4000 * ms, 0},
		{HeartBeat{0, 4000 * ms}, HeartBeat{9000 * ms, 0}, 0, 9000 * ms},
		// RabbitMQ mirrors the client (sx=cy, sy=cx).
		{HeartBeat{3000 * ms, 7000 * ms}, HeartBeat{7000 * ms, 3000 * ms}, 3000 * ms, 7000 * ms},
	}
	for _, c := range cases {
		cs, sc := Negotiate(c.client, c.server)
		if cs != c.cs || sc != c.sc {
			t.Errorf("Negotiate(%v, %v) = %v, %v; want %v, %v", c.client, c.server, cs, sc, c.cs, c.sc)
		}
	}
}

func TestVersions(t *testing.T) {
	for _, v := range []Version{V10, V11, V12} {
		if VersionFromSubprotocol(v.Subprotocol()) != v || ParseVersion([]byte(v.String())) != v {
			t.Errorf("round trip of %v", v)
		}
	}
	if VersionFromSubprotocol("stomp") != VersionUnknown || VersionFromSubprotocol("") != VersionUnknown ||
		VersionUnknown.Subprotocol() != "" || VersionUnknown.String() != "unknown" {
		t.Error("unknown version handling")
	}
	cases := []struct {
		cmd     Command
		value   string
		present bool
		want    Version
	}{
		{CmdConnect, "", false, V10},
		{CmdStomp, "", false, V10},
		{CmdConnect, "1.0,1.1,1.2", true, V12},
		{CmdConnect, "1.2,1.0", true, V12},
		{CmdConnect, "1.1", true, V11},
		{CmdConnect, "1.0, 1.1", true, V11},
		{CmdConnect, "1.1,2.0", true, V11},
		{CmdConnect, "2.0", true, VersionUnknown},
		{CmdConnect, "", true, VersionUnknown},
		{CmdConnected, "", false, V10},
		{CmdConnected, "1.2", true, V12},
		{CmdConnected, " 1.1", true, V11},
		{CmdConnected, "1.3", true, VersionUnknown},
		{CmdSend, "1.2", true, VersionUnknown},
	}
	for _, c := range cases {
		if got := VersionFromHeaders(c.cmd, []byte(c.value), c.present); got != c.want {
			t.Errorf("VersionFromHeaders(%v, %q, %v) = %v, want %v", c.cmd, c.value, c.present, got, c.want)
		}
	}
}
