package springbroker

import (
	"strings"
	"testing"
)

type decoded struct {
	heartbeats int
	frames     []*Frame
}

func decodeAll(t *testing.T, limit int, chunks ...string) (decoded, error) {
	t.Helper()
	d := newBufferingDecoder(limit)
	var out decoded
	for _, c := range chunks {
		msgs, err := d.decode([]byte(c))
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			if m.heartbeat {
				out.heartbeats++
			} else {
				out.frames = append(out.frames, m.frame)
			}
		}
	}
	return out, nil
}

// StompDecoder.decode/decodeMessage/skipEol (StompDecoder.java:107-206).
func TestDecoderHeartbeatsAndEOLs(t *testing.T) {
	send := "SEND\ndestination:/a\n\nhi\x00"
	cases := []struct {
		name       string
		chunks     []string
		heartbeats int
		frames     int
	}{
		{"lone LF is a heart-beat", []string{"\n"}, 1, 0},
		{"lone CRLF is a heart-beat", []string{"\r\n"}, 1, 0},
		{"several EOLs in one message are one heart-beat", []string{"\n\n\r\n"}, 1, 0},
		{"each EOL message is a heart-beat", []string{"\n", "\n", "\n"}, 3, 0},
		{"empty message is nothing", []string{""}, 0, 0},
		{"EOLs after a frame are swallowed", []string{send + "\n\n\r\n"}, 0, 1},
		{"EOLs before a frame are swallowed", []string{"\n\n" + send}, 0, 1},
		{"two frames, EOL between", []string{send + "\n" + send}, 0, 2},
		{"frame split over messages", []string{"SEND\ndestination:/a\n\nh", "i\x00"}, 0, 1},
		{"EOL message while a frame is incomplete is body", []string{"SEND\ndestination:/a\n\nh", "\n", "i\x00"}, 0, 1},
		{"incomplete command line waits", []string{"SEN", "D\ndestination:/a\n\nhi\x00"}, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(t, 64*1024, tc.chunks...)
			if err != nil {
				t.Fatal(err)
			}
			if got.heartbeats != tc.heartbeats || len(got.frames) != tc.frames {
				t.Fatalf("heartbeats=%d frames=%d, want %d and %d", got.heartbeats, len(got.frames), tc.heartbeats, tc.frames)
			}
		})
	}
}

func TestDecoderFrames(t *testing.T) {
	got, err := decodeAll(t, 1024, "SEND\ndestination:/a\na\\cb:c\\nd\\\\e\\rf\ndestination:/b\n\nbody\x00")
	if err != nil {
		t.Fatal(err)
	}
	f := got.frames[0]
	headersEqual(t, f.Headers, "destination:/a", "a:b:c\nd\\e\rf", "destination:/b")
	if d, _ := f.Header("destination"); d != "/a" {
		t.Fatalf("first header wins: %q", d)
	}
	if string(f.Body) != "body" {
		t.Fatalf("body %q", f.Body)
	}

	// CONNECT/STOMP headers are not unescaped (StompDecoder.java:216-220),
	// so an escape that would be illegal elsewhere is fine there.
	got, err = decodeAll(t, 1024, "CONNECT\nlogin:a\\cb\nhost:x\\ty\n\n\x00", "STOMP\nlogin:a\\cb\n\n\x00")
	if err != nil {
		t.Fatal(err)
	}
	headersEqual(t, got.frames[0].Headers, "login:a\\cb", "host:x\\ty")
	headersEqual(t, got.frames[1].Headers, "login:a\\cb")

	// content-length: exactly that many bytes, NULs included.
	got, err = decodeAll(t, 1024, "SEND\ncontent-length:3\n\na\x00b\x00")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.frames[0].Body) != "a\x00b" {
		t.Fatalf("body %q", got.frames[0].Body)
	}
	// An unparsable or negative content-length is ignored (:304-314).
	for _, cl := range []string{"abc", "-1", " 3", "99999999999"} {
		got, err = decodeAll(t, 1024, "SEND\ncontent-length:"+cl+"\n\nhi\x00")
		if err != nil || string(got.frames[0].Body) != "hi" {
			t.Fatalf("content-length %q: %v %v", cl, err, got.frames)
		}
	}
	// A body is fine on SUBSCRIBE when it is empty.
	if _, err = decodeAll(t, 1024, "SUBSCRIBE\nid:1\ndestination:/a\ncontent-length:0\n\n\x00"); err != nil {
		t.Fatal(err)
	}
	// A header line without ':' at the very end of the buffer is not an
	// error yet: the frame is incomplete.
	got, err = decodeAll(t, 1024, "SEND\ndestination:/a\nfoo")
	if err != nil || len(got.frames) != 0 {
		t.Fatalf("%v %v", err, got.frames)
	}
}

// Every decoding error, with Spring's message text.
func TestDecoderErrors(t *testing.T) {
	cases := []struct {
		name   string
		limit  int
		chunks []string
		want   string
	}{
		{"CR at end of message", 1024, []string{"\r"}, `'\r' must be followed by '\n'`},
		{"CR at end of command", 1024, []string{"SEND\r"}, `'\r' must be followed by '\n'`},
		{"CR after frame", 1024, []string{"SEND\n\nx\x00\r"}, `'\r' must be followed by '\n'`},
		{"CR not followed by LF", 1024, []string{"SEND\ra\n\nx\x00"}, `'\r' must be followed by '\n'`},
		{"CR split across messages", 1024, []string{"SEND\ndestination:/a\r", "\n\nx\x00"}, `'\r' must be followed by '\n'`},
		{"content-length not followed by NUL", 1024, []string{"SEND\ncontent-length:2\n\nabc\x00"}, "Frame must be terminated with a null octet"},
		{"body on SUBSCRIBE", 1024, []string{"SUBSCRIBE\nid:1\ndestination:/a\n\nbody\x00"}, "SUBSCRIBE shouldn't have a payload: length=4, headers={}"},
		{"body on CONNECT", 1024, []string{"CONNECT\naccept-version:1.2\n\nx\x00"}, "CONNECT shouldn't have a payload: length=1, headers={}"},
		{"unknown command", 1024, []string{"FOO\n\n\x00"}, "No enum constant org.springframework.messaging.simp.stomp.StompCommand.FOO"},
		{"lower-case command", 1024, []string{"send\n\n\x00"}, "No enum constant org.springframework.messaging.simp.stomp.StompCommand.send"},
		{"header without colon", 1024, []string{"SEND\nfoo\n\n\x00"}, "Illegal header: 'foo'. A header must be of the form <name>:[<value>]."},
		{"header with empty name", 1024, []string{"SEND\n:foo\n\n\x00"}, "Illegal header: ':foo'. A header must be of the form <name>:[<value>]."},
		{"illegal escape", 1024, []string{"SEND\ndestination:/a\\tb\n\n\x00"}, `Illegal escape sequence at index 2: /a\tb`},
		{"trailing backslash", 1024, []string{"SEND\nx:ab\\\n\n\x00"}, `Illegal escape sequence at index 2: ab\`},
		{"bad content-type", 1024, []string{"SEND\ncontent-type:text\n\n\x00"}, `Invalid mime type "text": does not contain '/'`},
		{"empty content-type", 1024, []string{"SEND\ncontent-type:\n\n\x00"}, `Invalid mime type "": 'mimeType' must not be empty`},
		{"buffer limit in one message", 100, []string{"SEND\n\n" + strings.Repeat("x", 100) + "\x00"}, "The configured STOMP buffer size limit of 100 bytes has been exceeded"},
		{"buffer limit over messages", 100, []string{"SEND\n\n" + strings.Repeat("x", 60), strings.Repeat("x", 60)}, "The configured STOMP buffer size limit of 100 bytes has been exceeded"},
		{"content-length over limit", 100, []string{"SEND\ncontent-length:500\n\nab", "c"}, "STOMP 'content-length' header value 500  exceeds configured buffer size limit 100"},
		{"bad content-length in partial frame", 1024, []string{"SEND\ncontent-length:abc\n\nab"}, `For input string: "abc"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll(t, tc.limit, tc.chunks...)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A decode error loses the frames decoded before it in the same buffer.
func TestDecoderErrorDropsEarlierFrames(t *testing.T) {
	d := newBufferingDecoder(1024)
	msgs, err := d.decode([]byte("SEND\n\na\x00FOO\n\n\x00"))
	if err == nil || len(msgs) != 0 {
		t.Fatalf("msgs=%d err=%v", len(msgs), err)
	}
}

// content-length known: BufferingStompDecoder waits for enough bytes.
func TestBufferingDecoderWaitsForContentLength(t *testing.T) {
	d := newBufferingDecoder(1024)
	msgs, err := d.decode([]byte("SEND\ncontent-length:10\n\nab"))
	if err != nil || len(msgs) != 0 || d.expectedLen == nil || *d.expectedLen != 10 {
		t.Fatalf("msgs=%d err=%v expected=%v", len(msgs), err, d.expectedLen)
	}
	msgs, err = d.decode([]byte("cdefghij\x00"))
	if err != nil || len(msgs) != 1 || string(msgs[0].frame.Body) != "abcdefghij" {
		t.Fatalf("msgs=%v err=%v", msgs, err)
	}
}

// StompHeaderAccessor.getHeartbeat (StompHeaderAccessor.java:238-247).
func TestParseHeartbeat(t *testing.T) {
	cases := []struct {
		raw     string
		present bool
		want    [2]int64
		err     string
	}{
		{"", false, [2]int64{0, 0}, ""},
		{"10000,20000", true, [2]int64{10000, 20000}, ""},
		{"10000", true, [2]int64{0, 0}, ""},
		{"", true, [2]int64{0, 0}, ""},
		{"+5,-7", true, [2]int64{5, -7}, ""},
		{"1,2,3", true, [2]int64{}, `Error at index 1 in: "2,3"`},
		{"10000, 10000", true, [2]int64{}, `Error at index 0 in: " 10000"`},
		{" 10000,10000", true, [2]int64{}, `Error at index 0 in: " 10000"`},
		{"10000 ,10000", true, [2]int64{}, `Error at index 5 in: "10000 "`},
		{"10000,", true, [2]int64{}, ""},
		{",5", true, [2]int64{}, ""},
		{"-,5", true, [2]int64{}, `Error at index 1 in: "-"`},
		{"99999999999999999999,1", true, [2]int64{}, `Error at index 18 in: "99999999999999999999"`},
	}
	for _, tc := range cases {
		got, err := parseHeartbeat(tc.raw, tc.present)
		wantErr := tc.err != "" || strings.HasSuffix(tc.raw, ",") || strings.HasPrefix(tc.raw, ",")
		if wantErr {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: err = %v, want %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.raw, got, err, tc.want)
		}
	}
}

func TestParseMimeType(t *testing.T) {
	ok := map[string]string{
		"text/plain":                  "text/plain",
		"TEXT/Plain":                  "text/plain",
		"text/plain; charset=UTF-8":   "text/plain;charset=UTF-8",
		" application/json ;a=b; c=d": "application/json;a=b;c=d",
		`text/plain;x="a;b"`:          `text/plain;x="a;b"`,
		"*":                           "*/*",
	}
	for in, want := range ok {
		got, err := parseMimeType(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"text/":       `Invalid mime type "text/": does not contain subtype after '/'`,
		"*/json":      `Invalid mime type "*/json": wildcard type is legal only in '*/*' (all mime types)`,
		"te xt/plain": `Invalid mime type "te xt/plain": Invalid token character ' ' in token "te xt"`,
	}
	for in, want := range bad {
		if _, err := parseMimeType(in); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// StompEncoder.encode: escaping except for CONNECTED, content-length last for
// SEND/MESSAGE/ERROR and replacing a copied one.
func TestEncodeFrame(t *testing.T) {
	hs := newNativeHeaders([]Header{{"content-length", "99"}, {"a:b", "c\nd\\e\rf"}, {"x", "1"}, {"a:b", "2"}})
	data, sent := encodeFrame("MESSAGE", hs, []byte("hey"))
	want := "MESSAGE\na\\cb:c\\nd\\\\e\\rf\na\\cb:2\nx:1\ncontent-length:3\n\nhey\x00"
	if string(data) != want {
		t.Fatalf("got %q\nwant %q", data, want)
	}
	headersEqual(t, sent.Headers, "a:b:c\nd\\e\rf", "a:b:2", "x:1", "content-length:3")

	hs = newNativeHeaders([]Header{{"version", "1.2"}, {"x", "a:b"}})
	data, _ = encodeFrame("CONNECTED", hs, nil)
	if string(data) != "CONNECTED\nversion:1.2\nx:a:b\n\n\x00" {
		t.Fatalf("got %q", data)
	}
	data, _ = encodeFrame("RECEIPT", newNativeHeaders([]Header{{"receipt-id", "r:1"}}), nil)
	if string(data) != "RECEIPT\nreceipt-id:r\\c1\n\n\x00" {
		t.Fatalf("got %q", data)
	}
}

func TestSelectProtocol(t *testing.T) {
	sup := []string{"v10.stomp", "v11.stomp", "v12.stomp"}
	cases := []struct {
		req  []string
		want string
	}{
		{[]string{"v12.stomp", "v11.stomp", "v10.stomp"}, "v12.stomp"},
		{[]string{"v10.stomp", "v12.stomp"}, "v10.stomp"}, // client order, not highest
		{[]string{"foo", "V11.STOMP"}, "V11.STOMP"},       // lower-cased match, client spelling
		{[]string{"foo"}, ""},
		{nil, ""},
	}
	for _, tc := range cases {
		if got := selectProtocol(tc.req, sup); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.req, got, tc.want)
		}
	}
}
