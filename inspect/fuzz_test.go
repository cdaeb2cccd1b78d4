package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzLimits are small so that the fuzzer reaches every limit quickly.
var fuzzLimits = Limits{MaxHeaderBytes: 256, MaxHeaders: 8, MaxFrameBytes: 1024}

// fuzzChunks cuts data according to cuts: each byte is the length of the
// next chunk (modulo 64, so empty chunks occur), the rest is the last chunk.
func fuzzChunks(data, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c%64), len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return append(out, data)
}

// FuzzScanner feeds arbitrary input under arbitrary chunking. The harness
// fails on a panic, a range that is not contiguous or not inside its chunk,
// an event that makes no progress, or a non-sticky error. On top, the test
// checks that the output is the input (or a prefix of it up to the first
// error), that chunking does not change the outcome, that the header buffer
// stays within the limit, and that the frames agree with the reference
// parser.
func FuzzScanner(f *testing.F) {
	for _, tc := range scanCases {
		f.Add([]byte(tc.in), []byte{})
		f.Add([]byte(tc.in), []byte{3, 1, 7})
	}
	f.Add([]byte("CONNECT\naccept-version:1.2\nheart-beat:10000,10000\n\n\x00\n"), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		if len(cuts) > 4096 {
			cuts = cuts[:4096]
		}
		chunks := fuzzChunks(data, cuts)
		whole := scanFresh(t, fuzzLimits, [][]byte{data})
		split := scanFresh(t, fuzzLimits, chunks)
		for _, r := range []scanResult{whole, split} {
			if !bytes.HasPrefix(data, r.out) || (r.err == nil && len(r.out) != len(data)) {
				t.Fatalf("output %q does not reproduce input %q (err %v)", r.out, data, r.err)
			}
			if r.maxBuf > 2*fuzzLimits.MaxHeaderBytes+64 {
				t.Fatalf("header buffer grew to %d", r.maxBuf)
			}
			if r.err != nil {
				var e *Error
				if !errors.As(r.err, &e) || strings.ContainsAny(e.Msg, ":\r\n") {
					t.Fatalf("bad error %#v", r.err)
				}
			}
		}
		if (whole.err == nil) != (split.err == nil) || (whole.err != nil && whole.err.Error() != split.err.Error()) {
			t.Fatalf("whole: %v, split: %v", whole.err, split.err)
		}
		if whole.err == nil {
			if a, b := fmtEvents(normalize(whole.events)), fmtEvents(normalize(split.events)); a != b {
				t.Fatalf("events differ\nwhole %s\nsplit %s", a, b)
			}
		} else if a, b := fmtEvents(structural(whole.events)), fmtEvents(structural(split.events)); a != b {
			t.Fatalf("events differ\nwhole %s\nsplit %s", a, b)
		}
		compareWithOracle(t, data, scanFresh(t, Limits{}, chunks))
		checkRestMatchesNext(t, data, chunks)
		for _, f := range whole.frames {
			checkRewrites(t, f)
		}
	})
}

// checkRewrites applies RewriteHeartBeat and AddHeader to a frame the
// scanner accepted and checks that the result scans as the same frame with
// exactly the intended header change.
func checkRewrites(t *testing.T, f sframe) {
	t.Helper()
	rescan := func(b []byte) sframe {
		t.Helper()
		r := scanFresh(t, Limits{}, [][]byte{b})
		if r.err != nil || len(r.frames) != 1 || len(r.out) != len(b) {
			t.Fatalf("rewritten frame %q does not scan as one frame: %v", b, r.err)
		}
		g := r.frames[0]
		if g.cmd != f.cmd || !bytes.Equal(g.body, f.body) {
			t.Fatalf("rewrite of %q changed command or body: %q", f.raw, b)
		}
		return g
	}
	rw, err := RewriteHeartBeat(nil, f.raw, HeartBeat{Send: 1500 * time.Millisecond})
	if err != nil {
		t.Fatalf("RewriteHeartBeat(%q): %v", f.raw, err)
	}
	var want [][2]string
	at := -1
	for _, h := range f.headers {
		if h[0] == "heart-beat" {
			if at < 0 {
				at = len(want)
				want = append(want, [2]string{"heart-beat", "1500,0"})
			}
			continue
		}
		want = append(want, h)
	}
	if at < 0 {
		want = append([][2]string{{"heart-beat", "1500,0"}}, want...)
	}
	if got := rescan(rw).headers; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RewriteHeartBeat(%q) headers %q, want %q", f.raw, got, want)
	}
	add, err := AddHeader(nil, f.raw, "receipt", "gate-1")
	if err != nil {
		t.Fatalf("AddHeader(%q): %v", f.raw, err)
	}
	want = append([][2]string{{"receipt", "gate-1"}}, f.headers...)
	if got := rescan(add).headers; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AddHeader(%q) headers %q, want %q", f.raw, got, want)
	}
	if v, ok := HeaderValue(add, "receipt"); !ok || string(v) != "gate-1" {
		t.Fatalf("HeaderValue after AddHeader = %q %v", v, ok)
	}
}

// naiveHeartBeat is the reference for ParseHeartBeat.
func naiveHeartBeat(s string) (x, y int64, ok bool) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return 0, 0, false
	}
	var v [2]int64
	for i, p := range parts {
		p = strings.Trim(p, " \t")
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return 0, 0, false
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n > maxHeartBeatMillis {
			return 0, 0, false
		}
		v[i] = n
	}
	return v[0], v[1], true
}

func FuzzParseHeartBeat(f *testing.F) {
	for _, s := range []string{"0,0", "10000,10000", "10000, 10000", " 1 ,\t2 ", "", ",", "1,2,3", "-1,0", "9223372036854,0", "9223372036855,0", "1e3,0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := ParseHeartBeat(data)
		x, y, ok := naiveHeartBeat(string(data))
		if ok != (err == nil) {
			t.Fatalf("ParseHeartBeat(%q) err %v, reference ok %v", data, err, ok)
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error kind %v", err)
			}
			return
		}
		if hb.Send != msDuration(x) || hb.Receive != msDuration(y) {
			t.Fatalf("ParseHeartBeat(%q) = %v, reference %d,%d", data, hb, x, y)
		}
		canon := AppendHeartBeat(nil, hb)
		if string(canon) != strconv.FormatInt(x, 10)+","+strconv.FormatInt(y, 10) {
			t.Fatalf("canonical form of %q is %q", data, canon)
		}
		again, err := ParseHeartBeat(canon)
		if err != nil || again != hb {
			t.Fatalf("round trip %q -> %v -> %q -> %v %v", data, hb, canon, again, err)
		}
	})
}

func msDuration(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
