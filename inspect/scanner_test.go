package inspect

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

type scanCase struct {
	name string
	in   string
	lim  Limits
	want string // normalized events of a whole-chunk scan
	err  error  // error kind expected at the end, if any
	msg  string // exact error message, if checked
}

var scanCases = []scanCase{
	{
		name: "send without content-length",
		in:   "SEND\ndestination:/a\n\nhello\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,21){destination:/a} Body[21,26) FrameEnd[26,27)=27",
	},
	{
		name: "content-length body with NULs",
		in:   "SEND\ndestination:/a\ncontent-length:5\n\nh\x00l\x00o\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,38){destination:/a|content-length:5}cl=5 Body[38,43) FrameEnd[43,44)=44",
	},
	{
		name: "CRLF frame and trailing CRLF",
		in:   "MESSAGE\r\nsubscription:0\r\n\r\nhi\x00\r\n",
		want: "FrameStart(MESSAGE)[0,9) HeadersEnd[9,27){subscription:0} Body[27,29) FrameEnd[29,30)=30 EOL[30,32)",
	},
	{
		name: "several frames with EOLs between",
		in:   "\n\nCONNECT\naccept-version:1.2\nhost:x\n\n\x00\n\nSEND\n\n\x00",
		want: "EOL[0,2) FrameStart(CONNECT)[2,10) HeadersEnd[10,37){accept-version:1.2|host:x} FrameEnd[37,38)=36 EOL[38,40) FrameStart(SEND)[40,45) HeadersEnd[45,46){} FrameEnd[46,47)=7",
	},
	{name: "lone LF", in: "\n", want: "EOL[0,1)"},
	{name: "lone CRLF", in: "\r\n", want: "EOL[0,2)"},
	{name: "mixed EOL run", in: "\n\r\n\n", want: "EOL[0,4)"},
	{
		name: "no headers no body",
		in:   "DISCONNECT\n\n\x00",
		want: "FrameStart(DISCONNECT)[0,11) HeadersEnd[11,12){} FrameEnd[12,13)=13",
	},
	{
		name: "content-length zero",
		in:   "SEND\ncontent-length:0\n\n\x00\n",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,23){content-length:0}cl=0 FrameEnd[23,24)=24 EOL[24,25)",
	},
	{
		name: "STOMP command kept distinct",
		in:   "STOMP\naccept-version:1.1,1.2\n\n\x00",
		want: "FrameStart(STOMP)[0,6) HeadersEnd[6,30){accept-version:1.1,1.2} FrameEnd[30,31)=31",
	},
	{
		name: "unknown command passes",
		in:   "send\n\n\x00",
		want: "FrameStart(UNKNOWN)[0,5) HeadersEnd[5,6){} FrameEnd[6,7)=7",
	},
	{
		name: "first content-length wins",
		in:   "SEND\ncontent-length:2\ncontent-length:5\n\na\x00\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,40){content-length:2|content-length:5}cl=2 Body[40,42) FrameEnd[42,43)=43",
	},
	{
		name: "second content-length not validated",
		in:   "SEND\ncontent-length:1\ncontent-length:x\n\na\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,40){content-length:1|content-length:x}cl=1 Body[40,41) FrameEnd[41,42)=42",
	},
	{
		name: "colons in value and empty value",
		in:   "SEND\ndestination:/a:b:c\nfoo:\n\n\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,30){destination:/a:b:c|foo:} FrameEnd[30,31)=31",
	},
	{
		name: "CRLF and LF lines mixed",
		in:   "SEND\r\na:1\nb:2\r\n\n\x00",
		want: "FrameStart(SEND)[0,6) HeadersEnd[6,16){a:1|b:2} FrameEnd[16,17)=17",
	},
	{
		name: "lone CR inside value is kept",
		in:   "SEND\na:x\ry\n\n\x00",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,12){a:x\ry} FrameEnd[12,13)=13",
	},
	{
		name: "incomplete frame at end",
		in:   "SEND\ndestination:/a\n\nhel",
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,21){destination:/a} Body[21,24)",
	},
	{
		name: "pending CR at end",
		in:   "\n\r",
		want: "EOL[0,2)",
	},

	// errors
	{name: "content-length body not followed by NUL", in: "SEND\ncontent-length:2\n\nabc\x00", err: ErrSyntax,
		msg: "frame not terminated by NUL after content-length bytes"},
	{name: "content-length not a number", in: "SEND\ncontent-length:x\n\n\x00", err: ErrSyntax, msg: "invalid content-length"},
	{name: "content-length with space", in: "SEND\ncontent-length: 5\n\nhello\x00", err: ErrSyntax},
	{name: "content-length negative", in: "SEND\ncontent-length:-1\n\n\x00", err: ErrSyntax},
	{name: "content-length empty", in: "SEND\ncontent-length:\n\n\x00", err: ErrSyntax},
	{name: "CR without LF between frames", in: "\rSEND\n\n\x00", err: ErrSyntax, msg: "CR not followed by LF"},
	{name: "CR without LF after frame", in: "SEND\n\n\x00\r\r\n", err: ErrSyntax},
	{name: "NUL between frames", in: "SEND\n\n\x00\x00", err: ErrSyntax, msg: "NUL octet outside a frame"},
	{name: "NUL in command", in: "SE\x00ND\n\n\x00", err: ErrSyntax, msg: "NUL octet in frame header"},
	{name: "NUL in header", in: "SEND\nfoo:b\x00r\n\n\x00", err: ErrSyntax},
	{name: "frame without blank line", in: "SEND\nfoo:bar\x00", err: ErrSyntax},
	{name: "header line without colon", in: "SEND\nfoo\n\n\x00", err: ErrSyntax, msg: "header line without colon"},
	{name: "header with empty name", in: "SEND\n:foo\n\n\x00", err: ErrSyntax, msg: "header line with empty name"},

	// limits
	{
		name: "frame exactly at limit without content-length",
		in:   "SEND\n\n12345\x00", lim: Limits{MaxFrameBytes: 12},
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,6){} Body[6,11) FrameEnd[11,12)=12",
	},
	{name: "frame over limit without content-length", in: "SEND\n\n123456\x00", lim: Limits{MaxFrameBytes: 12},
		err: ErrFrameTooLarge, msg: "frame exceeds 12 bytes"},
	{name: "frame over limit without NUL yet", in: "SEND\n\n1234567890", lim: Limits{MaxFrameBytes: 12}, err: ErrFrameTooLarge},
	{
		name: "frame exactly at limit with content-length",
		in:   "SEND\ncontent-length:3\n\n123\x00", lim: Limits{MaxFrameBytes: 27},
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,23){content-length:3}cl=3 Body[23,26) FrameEnd[26,27)=27",
	},
	{name: "frame over limit with content-length", in: "SEND\ncontent-length:4\n\n1234\x00", lim: Limits{MaxFrameBytes: 27},
		err: ErrFrameTooLarge, msg: "frame exceeds 27 bytes"},
	{name: "huge content-length", in: "SEND\ncontent-length:99999999999999999999999999\n\n", err: ErrFrameTooLarge},
	{
		name: "header section exactly at limit",
		in:   "SEND\na:1\n\n\x00", lim: Limits{MaxHeaderBytes: 10},
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,10){a:1} FrameEnd[10,11)=11",
	},
	{name: "header section over limit", in: "SEND\na:12\n\n\x00", lim: Limits{MaxHeaderBytes: 10},
		err: ErrHeaderTooLarge, msg: "header section exceeds 10 bytes"},
	{name: "endless command line", in: strings.Repeat("X", 100), lim: Limits{MaxHeaderBytes: 50}, err: ErrHeaderTooLarge},
	// The first offending byte decides the error, whatever the chunking
	// (found by FuzzScanner, testdata/fuzz/FuzzScanner/7f968ee32d38bc7b).
	{name: "NUL beyond header limit", in: "SEND\nx:aaaaaaaaaaaa\x00", lim: Limits{MaxHeaderBytes: 10}, err: ErrHeaderTooLarge},
	{name: "NUL within header limit", in: "SEND\nx:a\x00aaaaaaaaaaaa", lim: Limits{MaxHeaderBytes: 10}, err: ErrSyntax},
	{name: "LF right at header limit", in: "SEND\nx:\n\n\x00", lim: Limits{MaxHeaderBytes: 9}, err: nil,
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,9){x:} FrameEnd[9,10)=10"},
	{name: "header section over frame limit", in: "SEND\na:12\n\n\x00", lim: Limits{MaxFrameBytes: 10}, err: ErrFrameTooLarge},
	{
		name: "headers exactly at count limit",
		in:   "SEND\na:1\na:2\n\n\x00", lim: Limits{MaxHeaders: 2},
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,14){a:1|a:2} FrameEnd[14,15)=15",
	},
	{name: "too many headers", in: "SEND\na:1\na:2\na:3\n\n\x00", lim: Limits{MaxHeaders: 2},
		err: ErrTooManyHeaders, msg: "frame has more than 2 headers"},
	{
		name: "limits apply per frame",
		in:   "SEND\n\n123\x00SEND\n\n456\x00", lim: Limits{MaxFrameBytes: 10},
		want: "FrameStart(SEND)[0,5) HeadersEnd[5,6){} Body[6,9) FrameEnd[9,10)=10 FrameStart(SEND)[10,15) HeadersEnd[15,16){} Body[16,19) FrameEnd[19,20)=10",
	},
}

func checkCase(t *testing.T, tc scanCase, chunks [][]byte, whole scanResult) {
	t.Helper()
	r := scanFresh(t, tc.lim, chunks)
	in := []byte(tc.in)
	if tc.err == nil {
		if r.err != nil {
			t.Fatalf("chunks %q: unexpected error %v", chunks, r.err)
		}
		if string(r.out) != tc.in {
			t.Fatalf("chunks %q: output %q differs from input", chunks, r.out)
		}
		if got, want := fmtEvents(normalize(r.events)), fmtEvents(normalize(whole.events)); got != want {
			t.Fatalf("chunks %q:\n got %s\nwant %s", chunks, got, want)
		}
		return
	}
	if !errors.Is(r.err, tc.err) || r.err.Error() != whole.err.Error() {
		t.Fatalf("chunks %q: error %v, want %v", chunks, r.err, whole.err)
	}
	if len(r.out) > len(in) || string(r.out) != tc.in[:len(r.out)] {
		t.Fatalf("chunks %q: output %q is not a prefix of the input", chunks, r.out)
	}
	if got, want := fmtEvents(structural(r.events)), fmtEvents(structural(whole.events)); got != want {
		t.Fatalf("chunks %q:\n got %s\nwant %s", chunks, got, want)
	}
}

// TestScanCases checks each case whole, then split at every offset into
// two and (for short inputs) three chunks, then byte by byte: the events
// must be identical once chunking is normalized away.
func TestScanCases(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			whole := scanFresh(t, tc.lim, [][]byte{in})
			if tc.err != nil {
				if !errors.Is(whole.err, tc.err) {
					t.Fatalf("error %v, want kind %v", whole.err, tc.err)
				}
				if tc.msg != "" && whole.err.Error() != tc.msg {
					t.Fatalf("message %q, want %q", whole.err.Error(), tc.msg)
				}
				var e *Error
				if !errors.As(whole.err, &e) || e.Kind != tc.err {
					t.Fatalf("error %T does not expose its kind", whole.err)
				}
				if strings.ContainsAny(e.Error(), ":\r\n") {
					t.Fatalf("message %q cannot go into an ERROR header as is", e.Error())
				}
			} else {
				if whole.err != nil {
					t.Fatalf("unexpected error %v", whole.err)
				}
				if got := fmtEvents(normalize(whole.events)); got != tc.want {
					t.Fatalf("\n got %s\nwant %s", got, tc.want)
				}
			}
			for i := 0; i <= len(in); i++ {
				checkCase(t, tc, splitAt(in, i), whole)
			}
			if len(in) <= 64 {
				for i := 0; i <= len(in); i++ {
					for j := i; j <= len(in); j++ {
						checkCase(t, tc, splitAt(in, i, j), whole)
					}
				}
			}
			checkCase(t, tc, bytewise(in), whole)
		})
	}
}

func TestEventRangesWithinChunk(t *testing.T) {
	// A frame spread over three chunks: ranges are per chunk and the
	// Partial events carry the head bytes that precede FrameStart and
	// HeadersEnd.
	r := scanFresh(t, Limits{}, [][]byte{[]byte("\nSE"), []byte("ND\ndest"), []byte("ination:/a\n\nbo"), []byte("dy\x00\n")})
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := fmtEvents(r.events)
	want := "EOL[0,1) Partial[1,3) FrameStart(SEND)[3,6) Partial[6,10) HeadersEnd[10,22){destination:/a} Body[22,24) Body[24,26) FrameEnd[26,27)=26 EOL[27,28)"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestSplitCRLF(t *testing.T) {
	s := new(Scanner)
	s.Feed([]byte("\r"))
	ev, err := s.Next()
	if err != nil || ev.Kind != EOL || ev.Start != 0 || ev.End != 1 {
		t.Fatalf("got %+v %v, want EOL [0,1)", ev, err)
	}
	if ev, _ := s.Next(); ev.Kind != NeedMore {
		t.Fatalf("got %v, want NeedMore", ev.Kind)
	}
	s.Feed([]byte("\nSEND"))
	ev, err = s.Next()
	if err != nil || ev.Kind != EOL || ev.End != 1 {
		t.Fatalf("got %+v %v, want EOL [0,1)", ev, err)
	}
	// An empty chunk between the halves changes nothing.
	s.Reset()
	s.Feed([]byte("\r"))
	s.Next()
	s.Next()
	s.Feed(nil)
	if ev, err := s.Next(); err != nil || ev.Kind != NeedMore {
		t.Fatalf("empty chunk: %+v %v", ev, err)
	}
	s.Feed([]byte("X"))
	if _, err := s.Next(); !errors.Is(err, ErrSyntax) {
		t.Fatalf("CR then X: %v, want ErrSyntax", err)
	}
}

func TestStickyError(t *testing.T) {
	s := new(Scanner)
	s.Feed([]byte("SEND\n:x\n\n\x00"))
	var first error
	for {
		_, err := s.Next()
		if err != nil {
			first = err
			break
		}
	}
	s.Feed([]byte("SEND\n\n\x00"))
	for range 3 {
		if ev, err := s.Next(); err != first || ev != (Event{}) {
			t.Fatalf("after error: %+v %v", ev, err)
		}
	}
	s.Reset()
	s.Feed([]byte("SEND\n\n\x00"))
	if ev, err := s.Next(); err != nil || ev.Kind != FrameStart {
		t.Fatalf("after Reset: %+v %v", ev, err)
	}
}

func TestEmptyChunk(t *testing.T) {
	var s Scanner
	s.Feed(nil)
	if ev, err := s.Next(); err != nil || ev != (Event{Kind: NeedMore}) {
		t.Fatalf("%+v %v", ev, err)
	}
	if s.InFrame() {
		t.Fatal("InFrame before any byte")
	}
}

func TestInFrame(t *testing.T) {
	var s Scanner
	s.Feed([]byte("SEND\n\nab"))
	for {
		ev, _ := s.Next()
		if ev.Kind == NeedMore {
			break
		}
	}
	if !s.InFrame() {
		t.Fatal("InFrame false in the middle of a body")
	}
	s.Feed([]byte("\x00\n"))
	for {
		ev, _ := s.Next()
		if ev.Kind == NeedMore {
			break
		}
	}
	if s.InFrame() {
		t.Fatal("InFrame true after the NUL")
	}
}

func TestHeaderLookup(t *testing.T) {
	frame := "MESSAGE\n" +
		"a\\cb:first\\c1\n" + // name "a:b"
		"a\\cb:second\n" +
		"x:1\n" +
		"x:2\n" +
		"new\\nline:v\n" +
		"cr\\rname:w\n" +
		"esc:a\\\\b\\tc\n" +
		"\n\x00"
	var s Scanner
	s.Feed([]byte(frame))
	for {
		ev, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == HeadersEnd {
			break
		}
	}
	check := func(name, want string, wantOK bool) {
		t.Helper()
		v, ok := s.Header(name)
		if ok != wantOK || string(v) != want {
			t.Fatalf("Header(%q) = %q,%v; want %q,%v", name, v, ok, want, wantOK)
		}
	}
	// Unknown version: 1.2 rules.
	check("a:b", "first\\c1", true)
	check("a\\cb", "", false)
	check("x", "1", true)
	check("new\nline", "v", true)
	check("cr\rname", "w", true)
	check("missing", "", false)
	if v, ok, err := s.AppendHeader(nil, "a:b"); err != nil || !ok || string(v) != "first:1" {
		t.Fatalf("AppendHeader = %q %v %v", v, ok, err)
	}
	if _, ok, err := s.AppendHeader(nil, "esc"); !ok || !errors.Is(err, ErrSyntax) {
		t.Fatalf("undefined escape: %v %v", ok, err)
	}
	s.SetVersion(V11)
	check("cr\rname", "", false) // \r is undefined in 1.1
	check("new\nline", "v", true)
	s.SetVersion(V10)
	if s.Version() != V10 {
		t.Fatalf("Version() = %v", s.Version())
	}
	if v, ok, err := s.AppendHeader([]byte("x"), "missing"); ok || err != nil || string(v) != "x" {
		t.Fatalf("AppendHeader(missing) = %q %v %v", v, ok, err)
	}
	check("a:b", "", false)
	check("a\\cb", "first\\c1", true)
	if v, _, err := s.AppendHeader(nil, "a\\cb"); err != nil || string(v) != "first\\c1" {
		t.Fatalf("1.0 AppendHeader = %q %v", v, err)
	}

	var names []string
	for n, v := range s.Headers() {
		names = append(names, string(n)+"="+string(v))
	}
	if len(names) != 7 || names[0] != "a\\cb=first\\c1" || names[3] != "x=2" {
		t.Fatalf("Headers = %q", names)
	}
	// Break out of the iteration early.
	for range s.Headers() {
		break
	}

	s.Feed([]byte("\n"))
	if _, ok := s.Header("x"); ok {
		t.Fatal("Header still answers after Feed")
	}
	for range s.Headers() {
		t.Fatal("Headers yields after Feed")
	}
}

func TestConnectHeadersNotUnescaped(t *testing.T) {
	for _, cmd := range []string{"CONNECT", "STOMP", "CONNECTED"} {
		var s Scanner
		s.SetVersion(V12)
		s.Feed([]byte(cmd + "\nlogin:a\\cb\npass\\cw:x\n\n\x00"))
		for {
			ev, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind == HeadersEnd {
				break
			}
		}
		v, ok, err := s.AppendHeader(nil, "login")
		if err != nil || !ok || string(v) != "a\\cb" {
			t.Fatalf("%s: login = %q %v %v", cmd, v, ok, err)
		}
		if _, ok := s.Header("pass:w"); ok {
			t.Fatalf("%s: name was unescaped", cmd)
		}
		if _, ok := s.Header("pass\\cw"); !ok {
			t.Fatalf("%s: raw name not found", cmd)
		}
	}
}

func TestContentLengthAccessor(t *testing.T) {
	var s Scanner
	s.Feed([]byte("SEND\ncontent-length:12\n\nhello world!\x00"))
	for {
		ev, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == HeadersEnd || ev.Kind == Body || ev.Kind == FrameEnd {
			if n, ok := s.ContentLength(); !ok || n != 12 {
				t.Fatalf("at %v ContentLength = %d %v", ev.Kind, n, ok)
			}
		}
		if ev.Kind == NeedMore {
			break
		}
	}
}

func TestHeaderBufferReused(t *testing.T) {
	// A header section spanning chunks is copied once; the buffer then
	// serves later frames without allocating.
	s := new(Scanner)
	c1 := []byte("SEND\ndestination:/queue/a\nrec")
	c2 := []byte("eipt:1\n\nbody\x00")
	run := func() {
		for _, c := range [][]byte{c1, c2} {
			s.Feed(c)
			for {
				ev, err := s.Next()
				if err != nil {
					t.Fatal(err)
				}
				if ev.Kind == HeadersEnd {
					if v, ok := s.Header("receipt"); !ok || string(v) != "1" {
						t.Fatalf("receipt = %q %v", v, ok)
					}
				}
				if ev.Kind == NeedMore {
					break
				}
			}
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocs per split frame after warm-up", n)
	}
}

func TestBigHeaderBufferReleased(t *testing.T) {
	s := new(Scanner)
	big := "SEND\nx:" + strings.Repeat("y", 3*maxRetainedBuf) + "\n\n\x00"
	r := scanChunks(t, s, splitAt([]byte(big), 10), false)
	if r.err != nil || len(r.frames) != 1 {
		t.Fatal(r.err, len(r.frames))
	}
	if cap(s.buf) > maxRetainedBuf {
		t.Fatalf("kept a %d-byte header buffer after the frame", cap(s.buf))
	}
}

func TestScannerSize(t *testing.T) {
	// Two scanners exist per proxied session; keep them small.
	if n := unsafe.Sizeof(Scanner{}); n > 200 {
		t.Fatalf("Scanner is %d bytes", n)
	}
	t.Logf("sizeof(Scanner) = %d bytes", unsafe.Sizeof(Scanner{}))
}

func TestNoAllocs(t *testing.T) {
	in := []byte("SEND\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:5\n\nhello\x00\n")
	s := new(Scanner)
	chunks := splitAt(in, 7, 30, 60)
	n := testing.AllocsPerRun(200, func() {
		for _, c := range chunks {
			s.Feed(c)
			for {
				ev, err := s.Next()
				if err != nil {
					t.Fatal(err)
				}
				if ev.Kind == HeadersEnd {
					s.Header("destination")
					for range s.Headers() {
					}
				}
				if ev.Kind == NeedMore {
					break
				}
			}
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per frame", n)
	}
}

func TestCommandString(t *testing.T) {
	for c := CmdUnknown; c <= CmdError; c++ {
		if c != CmdUnknown && ParseCommand([]byte(c.String())) != c {
			t.Errorf("round trip of %v", c)
		}
	}
	if Command(200).String() != "UNKNOWN" || !CmdStomp.IsConnect() || !CmdConnect.IsConnect() || CmdConnected.IsConnect() {
		t.Error("Command helpers")
	}
	if EventKind(99).String() != "EventKind(99)" || FrameEnd.String() != "FrameEnd" {
		t.Error("EventKind.String")
	}
}

func TestUnescapeEscape(t *testing.T) {
	cases := []struct {
		raw  string
		v    Version
		want string
		bad  bool
	}{
		{`a\cb\nc\\d\re`, V12, "a:b\nc\\d\re", false},
		{`a\cb\nc\\d\re`, VersionUnknown, "a:b\nc\\d\re", false},
		{`a\re`, V11, "", true},
		{`a\cb\nc\\d`, V11, "a:b\nc\\d", false},
		{`a\t`, V12, "", true},
		{`a\`, V12, "", true},
		{`a\cb\t`, V10, `a\cb\t`, false},
		{"plain", V12, "plain", false},
	}
	for _, c := range cases {
		got, err := Unescape(nil, []byte(c.raw), c.v)
		if c.bad {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Unescape(%q,%v) err = %v, want ErrSyntax", c.raw, c.v, err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("Unescape(%q,%v) = %q,%v want %q", c.raw, c.v, got, err, c.want)
		}
	}
	for _, v := range []Version{V11, V12} {
		val := "a:b\\c\nd"
		esc := AppendEscaped(nil, val, v)
		back, err := Unescape(nil, esc, v)
		if err != nil || string(back) != val {
			t.Errorf("%v round trip %q -> %q -> %q %v", v, val, esc, back, err)
		}
	}
	if got := string(AppendEscaped(nil, "a\rb", V12)); got != `a\rb` {
		t.Errorf("1.2 CR = %q", got)
	}
	if got := string(AppendEscaped(nil, "a\rb\x00", V11)); got != "a b " {
		t.Errorf("1.1 CR = %q", got)
	}
	if got := string(AppendEscaped(nil, "a:b\nc\\", V10)); got != "a:b c\\" {
		t.Errorf("1.0 = %q", got)
	}
}

func TestHeaderFloodBounded(t *testing.T) {
	// A peer that never ends its header section costs at most the header
	// limit, however it spreads the bytes over messages.
	s := new(Scanner)
	s.Feed([]byte("SEND\nx:"))
	for {
		if ev, _ := s.Next(); ev.Kind == NeedMore {
			break
		}
	}
	chunk := []byte(strings.Repeat("a", 1000))
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		s.Feed(chunk)
		for {
			var ev Event
			ev, err = s.Next()
			if err != nil || ev.Kind == NeedMore {
				break
			}
		}
	}
	if !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if c := cap(s.buf); c > 2*DefaultMaxHeaderBytes {
		t.Fatalf("header buffer capacity %d", c)
	}
}
