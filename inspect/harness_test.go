package inspect

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// rec is an event with its range translated to stream offsets, plus what
// the scanner exposed at that moment.
type rec struct {
	Kind     EventKind
	Cmd      Command
	Start    int // stream offsets
	End      int
	FrameLen int
	Headers  string // HeadersEnd: raw lines joined by "|"
	CL       int    // HeadersEnd: content-length or -1
}

// sframe is a frame reassembled from the events.
type sframe struct {
	cmd     Command
	raw     []byte // command through NUL
	headers [][2]string
	body    []byte
}

type scanResult struct {
	events []rec
	frames []sframe
	out    []byte // concatenation of every event range
	eolLF  int    // LF octets reported in EOL events
	maxBuf int    // largest header buffer capacity seen
	err    error
	s      *Scanner
}

// scanChunks feeds chunks to s and checks the per-chunk invariants: ranges
// are contiguous from 0, non-empty except NeedMore, NeedMore ends the
// chunk, and progress is made on every call.
func scanChunks(t testing.TB, s *Scanner, chunks [][]byte, clobber bool) scanResult {
	t.Helper()
	var r scanResult
	r.s = s
	base := 0
	var cur *sframe
	for ci, c := range chunks {
		s.Feed(c)
		prev := 0
		for n := 0; ; n++ {
			if n > len(c)+1 {
				t.Fatalf("chunk %d: more than %d events for %d bytes (no progress?)", ci, n, len(c))
			}
			ev, err := s.Next()
			if err != nil {
				r.maxBuf = max(r.maxBuf, cap(s.buf))
				r.err = err
				if ev != (Event{}) {
					t.Fatalf("non-zero event %+v with error", ev)
				}
				if _, err2 := s.Next(); err2 != err {
					t.Fatalf("error is not sticky: %v then %v", err, err2)
				}
				if s.Err() != err {
					t.Fatalf("Err() = %v, want %v", s.Err(), err)
				}
				return r
			}
			if ev.Start != prev {
				t.Fatalf("chunk %d: event %v starts at %d, want %d", ci, ev.Kind, ev.Start, prev)
			}
			if ev.Kind == NeedMore {
				if ev.Start != len(c) || ev.End != len(c) {
					t.Fatalf("chunk %d: NeedMore [%d,%d) for len %d", ci, ev.Start, ev.End, len(c))
				}
				r.maxBuf = max(r.maxBuf, cap(s.buf))
				if clobber {
					for i := range c {
						c[i] = 0xEE
					}
				}
				break
			}
			if ev.End <= ev.Start || ev.End > len(c) {
				t.Fatalf("chunk %d: bad range %v [%d,%d) len %d", ci, ev.Kind, ev.Start, ev.End, len(c))
			}
			prev = ev.End
			seg := c[ev.Start:ev.End]
			r.out = append(r.out, seg...)
			rc := rec{Kind: ev.Kind, Cmd: ev.Command, Start: base + ev.Start, End: base + ev.End, CL: -1}
			if ev.Kind == FrameEnd {
				rc.FrameLen = s.FrameLen()
			}
			switch ev.Kind {
			case EOL:
				if strings.Trim(string(seg), "\r\n") != "" {
					t.Fatalf("EOL event holds %q", seg)
				}
				r.eolLF += bytes.Count(seg, []byte{'\n'})
				if cur != nil {
					t.Fatalf("EOL inside a frame")
				}
			case Partial, FrameStart:
				if cur == nil {
					cur = &sframe{}
				}
				cur.raw = append(cur.raw, seg...)
				if ev.Kind == FrameStart {
					cur.cmd = ev.Command
					if s.Command() != ev.Command {
						t.Fatalf("Command() = %v, event says %v", s.Command(), ev.Command)
					}
				}
			case HeadersEnd:
				cur.raw = append(cur.raw, seg...)
				var lines []string
				seen := map[string]bool{}
				for name, value := range s.Headers() {
					cur.headers = append(cur.headers, [2]string{string(name), string(value)})
					lines = append(lines, string(name)+":"+string(value))
					if !seen[string(name)] && bytes.IndexByte(name, '\\') < 0 {
						seen[string(name)] = true
						v, ok := s.Header(string(name))
						if !ok || string(v) != string(value) {
							t.Fatalf("Header(%q) = %q,%v, want first value %q", name, v, ok, value)
						}
					}
				}
				rc.Headers = strings.Join(lines, "|")
				if n, ok := s.ContentLength(); ok {
					rc.CL = n
				}
			case Body:
				cur.raw = append(cur.raw, seg...)
				cur.body = append(cur.body, seg...)
			case FrameEnd:
				cur.raw = append(cur.raw, seg...)
				if s.FrameLen() != len(cur.raw) {
					t.Fatalf("FrameLen %d, reassembled %d", s.FrameLen(), len(cur.raw))
				}
				r.frames = append(r.frames, *cur)
				cur = nil
			}
			r.events = append(r.events, rc)
		}
		base += len(c)
	}
	return r
}

// normalize removes the traces of chunking: Partial ranges are merged into
// the event that completes them, and adjacent Body or EOL ranges are
// merged. For one input every chunking must normalize to the same list.
func normalize(evs []rec) []rec {
	var out []rec
	pending := -1 // start of a run of Partial events
	for _, e := range evs {
		if e.Kind == Partial {
			if pending < 0 {
				pending = e.Start
			}
			continue
		}
		if pending >= 0 {
			e.Start = pending
			pending = -1
		}
		if n := len(out); n > 0 && (e.Kind == Body || e.Kind == EOL) && out[n-1].Kind == e.Kind && out[n-1].End == e.Start {
			out[n-1].End = e.End
			continue
		}
		out = append(out, e)
	}
	return out
}

// structural keeps the events whose existence cannot depend on chunking
// even when the scan ends in an error.
func structural(evs []rec) []rec {
	var out []rec
	for _, e := range normalize(evs) {
		switch e.Kind {
		case FrameStart, HeadersEnd, FrameEnd:
			out = append(out, e)
		}
	}
	return out
}

func (e rec) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.Kind == FrameStart {
		fmt.Fprintf(&b, "(%v)", e.Cmd)
	}
	fmt.Fprintf(&b, "[%d,%d)", e.Start, e.End)
	switch e.Kind {
	case HeadersEnd:
		fmt.Fprintf(&b, "{%s}", e.Headers)
		if e.CL >= 0 {
			fmt.Fprintf(&b, "cl=%d", e.CL)
		}
	case FrameEnd:
		fmt.Fprintf(&b, "=%d", e.FrameLen)
	}
	return b.String()
}

func fmtEvents(evs []rec) string {
	s := make([]string, len(evs))
	for i, e := range evs {
		s[i] = e.String()
	}
	return strings.Join(s, " ")
}

// splitAt cuts in at the given increasing offsets.
func splitAt(in []byte, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, in[prev:c])
		prev = c
	}
	return append(out, in[prev:])
}

func bytewise(in []byte) [][]byte {
	out := make([][]byte, len(in))
	for i := range in {
		out[i] = in[i : i+1]
	}
	return out
}

// copyChunks gives every chunk its own backing array, so that reading past
// a chunk or keeping a reference to an old one shows up (the harness
// overwrites old chunks below).
func copyChunks(chunks [][]byte) [][]byte {
	out := make([][]byte, len(chunks))
	for i, c := range chunks {
		out[i] = append(make([]byte, 0, len(c)), c...)
	}
	return out
}

// scanFresh scans copies of chunks with a new scanner and overwrites each
// chunk once it is used up, as a proxy reusing its read buffer would, so a
// scanner that kept a reference to an old chunk gets caught.
func scanFresh(t testing.TB, l Limits, chunks [][]byte) scanResult {
	t.Helper()
	return scanChunks(t, NewScanner(l), copyChunks(chunks), true)
}
