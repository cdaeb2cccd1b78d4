package inspect

import (
	"bytes"
	"errors"
	"testing"
)

func TestRewriteHeartBeat(t *testing.T) {
	hb := HeartBeat{10000 * ms, 20000 * ms}
	cases := []struct{ name, in, want string }{
		{"replace in place",
			"CONNECT\naccept-version:1.2\nheart-beat:10000, 10000\nhost:/\n\n\x00",
			"CONNECT\naccept-version:1.2\nheart-beat:10000,20000\nhost:/\n\n\x00"},
		{"add after command line",
			"CONNECT\naccept-version:1.2\nhost:/\n\n\x00",
			"CONNECT\nheart-beat:10000,20000\naccept-version:1.2\nhost:/\n\n\x00"},
		{"add to frame without headers",
			"CONNECTED\n\n\x00\n",
			"CONNECTED\nheart-beat:10000,20000\n\n\x00\n"},
		{"duplicates removed, first position kept",
			"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:x\nheart-beat:5,5\nheart-beat:\n\n\x00",
			"CONNECTED\nversion:1.2\nheart-beat:10000,20000\nserver:x\n\n\x00"},
		{"CRLF kept",
			"STOMP\r\naccept-version:1.2\r\nheart-beat:1,1\r\n\r\n\x00\r\n",
			"STOMP\r\naccept-version:1.2\r\nheart-beat:10000,20000\r\n\r\n\x00\r\n"},
		{"CRLF added",
			"CONNECT\r\nhost:/\r\n\r\n\x00",
			"CONNECT\r\nheart-beat:10000,20000\r\nhost:/\r\n\r\n\x00"},
		{"each line keeps its EOL",
			"CONNECT\r\nheart-beat:1,1\nhost:/\r\n\r\n\x00",
			"CONNECT\r\nheart-beat:10000,20000\nhost:/\r\n\r\n\x00"},
		{"body untouched, content-length unchanged",
			"CONNECT\ncontent-length:3\nheart-beat:1,1\n\na\x00b\x00",
			"CONNECT\ncontent-length:3\nheart-beat:10000,20000\n\na\x00b\x00"},
		{"no trailing NUL yet is fine",
			"CONNECT\nheart-beat:1,1\n\n",
			"CONNECT\nheart-beat:10000,20000\n\n"},
		{"leading EOLs kept",
			"\n\r\nCONNECT\nhost:/\n\n\x00",
			"\n\r\nCONNECT\nheart-beat:10000,20000\nhost:/\n\n\x00"},
		{"similar names untouched",
			"CONNECT\nheart-beats:1,1\nxheart-beat:2,2\n\n\x00",
			"CONNECT\nheart-beat:10000,20000\nheart-beats:1,1\nxheart-beat:2,2\n\n\x00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := []byte("prefix|")
			got, err := RewriteHeartBeat(prefix, []byte(c.in), hb)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix|"+c.want {
				t.Fatalf("\n got %q\nwant %q", got, "prefix|"+c.want)
			}
			// The result must scan as the same frame with the new value.
			out := scanFresh(t, Limits{}, [][]byte{got[len(prefix):]})
			if out.err != nil {
				t.Fatal(out.err)
			}
		})
	}
	for _, bad := range []string{"", "CONNECT", "CONNECT\nhost:/\n", "CONNECT\nhost\n\n\x00", "CONNECT\n:x\n\n\x00", "CONN\x00ECT\n\n\x00"} {
		dst := []byte("keep")
		got, err := RewriteHeartBeat(dst, []byte(bad), hb)
		if !errors.Is(err, ErrSyntax) || string(got) != "keep" {
			t.Errorf("RewriteHeartBeat(%q) = %q, %v; want ErrSyntax and dst unchanged", bad, got, err)
		}
	}
	buf := make([]byte, 0, 256)
	in := []byte("CONNECT\naccept-version:1.2\nheart-beat:10000, 10000\nhost:/\n\n\x00")
	if n := testing.AllocsPerRun(100, func() { RewriteHeartBeat(buf[:0], in, hb) }); n != 0 {
		t.Errorf("RewriteHeartBeat allocates %v times with a big enough dst", n)
	}
}

func TestAddHeader(t *testing.T) {
	got, err := AddHeader(nil, []byte("DISCONNECT\n\n\x00"), "receipt", "stompgate-1")
	if err != nil || string(got) != "DISCONNECT\nreceipt:stompgate-1\n\n\x00" {
		t.Fatalf("got %q %v", got, err)
	}
	got, err = AddHeader(nil, []byte("DISCONNECT\r\nreceipt:77\r\n\r\n\x00\r\n"), "receipt", "p-1")
	if err != nil || string(got) != "DISCONNECT\r\nreceipt:p-1\r\nreceipt:77\r\n\r\n\x00\r\n" {
		t.Fatalf("got %q %v", got, err)
	}
	if v, ok := HeaderValue(got, "receipt"); !ok || string(v) != "p-1" {
		t.Fatalf("inserted header does not win: %q %v", v, ok)
	}
	got, err = AddHeader(nil, []byte("SEND\ndestination:/a\n\nbody\x00"), "x", "")
	if err != nil || string(got) != "SEND\nx:\ndestination:/a\n\nbody\x00" {
		t.Fatalf("got %q %v", got, err)
	}
	for _, nv := range [][2]string{{"", "v"}, {"a:b", "v"}, {"a\nb", "v"}, {"a", "v\r"}, {"a", "x\ny"}, {"a", "\x00"}} {
		if _, err := AddHeader(nil, []byte("DISCONNECT\n\n\x00"), nv[0], nv[1]); !errors.Is(err, ErrInvalidHeader) {
			t.Errorf("AddHeader(%q, %q) err = %v", nv[0], nv[1], err)
		}
	}
	if _, err := AddHeader(nil, []byte("DISCONNECT\n"), "receipt", "1"); !errors.Is(err, ErrSyntax) {
		t.Errorf("incomplete frame: %v", err)
	}
}

func TestHeaderValue(t *testing.T) {
	frame := []byte("\nMESSAGE\r\na\\cb:1\r\nx:first\r\nx:second\r\n\r\nbody:x:y\x00")
	if v, ok := HeaderValue(frame, "x"); !ok || string(v) != "first" {
		t.Errorf("x = %q %v", v, ok)
	}
	if v, ok := HeaderValue(frame, "a:b"); !ok || string(v) != "1" {
		t.Errorf("escaped name = %q %v", v, ok)
	}
	if _, ok := HeaderValue(frame, "body"); ok {
		t.Error("found a header in the body")
	}
	if _, ok := HeaderValue(frame, "MESSAGE"); ok {
		t.Error("command line taken for a header")
	}
	connect := []byte("CONNECT\na\\cb:1\n\n\x00")
	if _, ok := HeaderValue(connect, "a:b"); ok {
		t.Error("CONNECT names unescaped")
	}
	if v, ok := HeaderValue(connect, `a\cb`); !ok || !bytes.Equal(v, []byte("1")) {
		t.Error("CONNECT raw name not found")
	}
	if _, ok := HeaderValue([]byte("CONNECT\nhost:x\n"), "host"); ok {
		t.Error("incomplete header section accepted")
	}
}
